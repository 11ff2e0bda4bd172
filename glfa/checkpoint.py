"""The one loader and saver of weights and training states as files (safely, atomically, with
clear errors), used by training, testing and evaluation; what a training state holds is
``glfa.trainingstate``'s.

Reference layout: ``decoder_iter_N.pth.tar`` and ``lct_iter_N.pth.tar`` hold plain
state dicts. Decoder keys are the child indexes of the full 29-child layout (a photo-mode
file from the reference code may hold all 29 children; photo mode takes ``[10:]``). The
transform's keys are ``cnet.*``, ``snet.*``, ``uncompress.*`` for SCT and LCT alike. An
encoder file may hold more layers than the mode needs, never fewer.
"""
import json
import os
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

import torch
from torch import Tensor, nn

from glfa.errors import UserError
from glfa.paths import MODELS_DIR, REPO_ROOT
from net import ModeSpec, build_decoder, build_encoder, build_transform, parse_mode


TEMPORARY_NAME = re.compile(r"^\..+\.tmp\d+$")  # ``atomic_write``'s temporary files


class CheckpointError(UserError):
    """A checkpoint file that is missing, unreadable or does not fit the model."""


def load_state_dict(path: str | os.PathLike, what: str = "state dict of weights") -> dict[str, Tensor]:
    """Read a file of tensors safely (``weights_only``), stripping DataParallel's ``module.``;
    ``what`` names the expected content in errors."""
    state = safe_load(path)
    if isinstance(state, dict) and state.get("format") == TRAINING_STATE_FORMAT:
        raise CheckpointError(f"{path} is a training state (train.py --resume takes it), not a {what}")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def save_state_dict(module: nn.Module | dict[str, Tensor], path: str | os.PathLike) -> None:
    """Write a module's weights as plain CPU tensors, atomically (temporary file, then rename)."""
    state = module.state_dict() if isinstance(module, nn.Module) else module
    atomic_save({k: v.detach().cpu().contiguous() for k, v in state.items()}, path)


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    atomic_write(path, lambda file: torch.save(obj, file))


def save_json(obj: object, path: str | os.PathLike) -> None:
    """``obj`` as indented JSON, written like ``atomic_write``."""
    atomic_write(path, lambda file: file.write(json.dumps(obj, indent=2).encode() + b"\n"))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place. When that
    fails (a full disk…), the temporary file is removed, ``path`` is left as it was, and the
    failure is a ``CheckpointError``; an interruption also removes the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # on disk before the rename, so a power cut cannot leave an empty file
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, (OSError, RuntimeError)):  # torch.save reports a failed write as a RuntimeError
            cause = err if isinstance(err, OSError) else err.__context__
            reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(err)
            raise CheckpointError(f"could not write {path}: {reason}; it was left as it was") from None
        raise


def safe_load(path: str | os.PathLike) -> object:
    """``torch.load(weights_only=True)`` on CPU; a missing or unreadable file is a ``CheckpointError``."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder: give a checkpoint file in it (such as decoder_iter_N.pth.tar)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}{_missing_file_hint(path)}")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols in junk files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (not a PyTorch file, or it holds "
                              "Python objects, which are never loaded)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, ImportError,
            IndexError, KeyError, TypeError, struct.error):
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt, truncated or not a "
                              "PyTorch file)") from None


def _missing_file_hint(path: Path) -> str:
    """What to do about a missing file where the defaults and the README look: ``models/`` and
    ``experiments/`` of this repository."""
    where = path.resolve()
    if where.is_relative_to(MODELS_DIR):
        return ("; python -m models.download fetches models/vgg_normalised.pth, the encoder of art mode (it "
                "serves photo mode too, given with --vgg)")
    if where.is_relative_to(REPO_ROOT / "experiments") and where.name.endswith(".pth.tar"):
        return ("; train.py writes decoder_iter_N.pth.tar and lct_iter_N.pth.tar into its --save_dir, and "
                "without --decoder and --LCT the shipped photo model in experiments/photo/ is used")
    return ""


TRAINING_STATE_FORMAT = "glfa-training-state-1"


def save_training_state(state: dict, path: str | os.PathLike) -> None:
    """Write a training state (weights, optimiser, iteration, arguments; see glfa/trainingstate.py)
    atomically. It must hold only tensors and plain Python values, so it loads back with
    ``weights_only``."""
    atomic_save({"format": TRAINING_STATE_FORMAT, **state}, path)


def load_training_state(path: str | os.PathLike) -> dict:
    """Read a file written by ``save_training_state``, safely (``weights_only``)."""
    state = safe_load(path)
    if not isinstance(state, dict) or state.get("format") != TRAINING_STATE_FORMAT:
        raise CheckpointError(f"{path} is not a training state written by train.py "
                              "(decoder/transform weights cannot be resumed from)")
    return state


def fit_weights(module: nn.Module, state: dict[str, Tensor], path: str | os.PathLike, what: str,
                hint: str = "") -> None:
    """Copy the keys ``module`` needs from ``state``, once ``check_weights`` passes them."""
    check_weights(module.state_dict(), state, path, what, hint)
    module.load_state_dict({k: state[k] for k in module.state_dict()})


def check_weights(expected: dict[str, Tensor], state: dict[str, Tensor], path: str | os.PathLike, what: str,
                  hint: str = "") -> None:
    """``state`` must hold every key of ``expected`` with its shape and finite values: a clear
    error for missing, misshapen or non-finite (NaN, inf: a damaged file) ones."""
    missing = [k for k in expected if k not in state]
    if missing:
        layers = sorted({k.split(".")[0] if k[0].isdigit() else k.rsplit(".", 1)[0] for k in missing},
                        key=lambda s: (len(s), s))
        raise CheckpointError(f"{path} is not a {what}: missing layers {', '.join(layers[:8])}{hint}")
    for key, value in expected.items():
        if not isinstance(state[key], Tensor) or state[key].shape != value.shape:
            shape = tuple(state[key].shape) if isinstance(state[key], Tensor) else type(state[key]).__name__
            raise CheckpointError(f"{path} does not fit the {what}: {key} has shape {shape}, "
                                  f"expected {tuple(value.shape)}{hint}")
        check_finite_tensor(state[key], path, f"{what} weight {key}")


def check_finite_tensor(tensor: Tensor, path: str | os.PathLike, what: str) -> None:
    """A floating-point tensor read from ``path`` must hold no NaN or inf (bit rot, a diverged run)."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(f"{path} is damaged: its {what} holds non-finite values (NaN or inf)")


def _fits(module: nn.Module, state: dict[str, Tensor]) -> bool:
    """Whether ``state`` holds every weight of ``module`` with its shape."""
    return all(k in state and state[k].shape == v.shape for k, v in module.state_dict().items())


def load_encoder(path: str | os.PathLike, mode: str | ModeSpec) -> nn.Sequential:
    """The frozen VGG encoder for ``mode`` from ``vgg_normalised.pth`` (or a file of its first layers)."""
    spec = parse_mode(mode)
    encoder = build_encoder(spec)
    needs = "relu4_1 (art mode)" if spec.name == "art" else "relu3_1"
    state = load_state_dict(path, "VGG encoder (--vgg takes models/vgg_normalised_conv3_1.pth or vgg_normalised.pth)")
    fit_weights(encoder, state, path, f"VGG encoder reaching {needs}")
    return encoder


def load_decoder(path: str | os.PathLike, mode: str | ModeSpec) -> nn.Sequential:
    """A decoder for ``mode``; a full 29-child file also serves photo mode."""
    spec = parse_mode(mode)
    decoder = build_decoder(spec)
    state = load_state_dict(path, "decoder: use the decoder_iter_N.pth.tar written beside it")
    if transform_mode(_transform_names(state)) is not None:
        hint = "; it holds a transform (LCT/SCT): are --decoder and --LCT swapped?"
    elif spec.name == "art":
        hint = " (is it a photo-mode decoder? use --training_mode/--testing_mode photo)"
    else:
        hint = ""
    fit_weights(decoder, state, path, f"{spec.name}-mode decoder", hint)
    return decoder


def transform_mode(state: dict[str, Tensor]) -> str | None:
    """The mode a transform state dict was trained in, read from its first content conv."""
    weight = state.get("cnet.0.weight")
    if weight is None or weight.dim() != 4:
        return None
    return {256: "photo", 512: "art"}.get(weight.shape[1])


# The GLFA training code names the transform's branches ``cConv``/``sConv``; this code (like CCPL) ``cnet``/``snet``.
_GLFA_TRANSFORM_PREFIXES = {"cConv": "cnet", "sConv": "snet"}


def load_transform(path: str | os.PathLike, mode: str | ModeSpec, kind: str = "lct") -> nn.Module:
    """An LCT or SCT for ``mode`` from a ``cnet/snet/uncompress`` state dict (either kind's file,
    or the GLFA code's ``cConv/sConv/uncompress`` names)."""
    spec = parse_mode(mode)
    state = _transform_names(load_state_dict(path, "transform: use the lct_iter_N.pth.tar written beside it"))
    found = transform_mode(state)
    if found is None:
        swapped = "; it holds a decoder: are --decoder and --LCT swapped?" if _fits(build_decoder(spec), state) else ""
        raise CheckpointError(f"{path} is not an LCT/SCT checkpoint (no cnet.0.weight){swapped}")
    if found != spec.name:
        raise CheckpointError(f"{path} holds a {found}-mode transform, but the mode is {spec.name}")
    transform = build_transform(kind, spec)
    fit_weights(transform, state, path, f"{spec.name}-mode {kind.upper()}")
    return transform


def _transform_names(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A transform state dict with the GLFA code's branch names renamed to this code's."""
    return {_GLFA_TRANSFORM_PREFIXES.get(k.split(".", 1)[0], k.split(".", 1)[0]) + k[k.find("."):]: v
            for k, v in state.items()}
