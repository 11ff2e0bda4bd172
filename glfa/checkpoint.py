"""The one way to save and load weights, used by training, testing and evaluation.

Reference layout (METHOD.md): ``decoder_iter_N.pth.tar`` and ``lct_iter_N.pth.tar`` hold plain
state dicts. Decoder keys are the child indexes of the full 29-child layout (a photo-mode
file from the reference code may hold all 29 children; photo mode takes ``[10:]``). The
transform's keys are ``cnet.*``, ``snet.*``, ``uncompress.*`` for SCT and LCT alike. An
encoder file may hold more layers than the mode needs, never fewer.
"""
import os
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from glfa.cli import UserError
from net import ModeSpec, build_decoder, build_encoder, build_transform, parse_mode


CHECKPOINT_NAME = re.compile(r"^(decoder|lct|sct)_iter_(\d+)\.pth\.tar$")


class CheckpointError(UserError):
    """A checkpoint file that is missing, unreadable or does not fit the model."""


def checkpoints_by_iteration(folder: Path) -> dict[int, dict[str, Path]]:
    """The reference-format weights in a training folder: ``{N: {"decoder": path, "lct": path, …}}``
    for every ``decoder_iter_N.pth.tar``, ``lct_iter_N.pth.tar`` and ``sct_iter_N.pth.tar``."""
    found: dict[int, dict[str, Path]] = {}
    for path in folder.iterdir():
        match = CHECKPOINT_NAME.match(path.name)
        if match:
            found.setdefault(int(match.group(2)), {})[match.group(1)] = path
    return found


def load_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a file of tensors safely (``weights_only``), stripping DataParallel's ``module.``."""
    state = _safe_load(path)
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as file:
        torch.save(obj, file)
        file.flush()
        os.fsync(file.fileno())  # on disk before the rename, so a power cut cannot leave an empty file
    os.replace(tmp, path)


def _safe_load(path: str | os.PathLike) -> object:
    """``torch.load(weights_only=True)`` on CPU; a missing or unreadable file is a ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
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


TRAINING_STATE_FORMAT = "glfa-training-state-1"


def save_training_state(state: dict, path: str | os.PathLike) -> None:
    """Write a training state (weights, optimiser, iteration, arguments; see glfa/train.py)
    atomically. It must hold only tensors and plain Python values, so it loads back with
    ``weights_only``."""
    atomic_save({"format": TRAINING_STATE_FORMAT, **state}, path)


def load_training_state(path: str | os.PathLike) -> dict:
    """Read a file written by ``save_training_state``, safely (``weights_only``)."""
    state = _safe_load(path)
    if not isinstance(state, dict) or state.get("format") != TRAINING_STATE_FORMAT:
        raise CheckpointError(f"{path} is not a training state written by train.py "
                              "(decoder/transform weights cannot be resumed from)")
    return state


def _fit(module: nn.Module, state: dict[str, Tensor], path: str | os.PathLike, what: str,
         hint: str = "") -> None:
    """Copy the keys ``module`` needs from ``state``, with a clear error for missing or misshapen ones."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        layers = sorted({k.split(".")[0] if k[0].isdigit() else k.rsplit(".", 1)[0] for k in missing},
                        key=lambda s: (len(s), s))
        raise CheckpointError(f"{path} is not a {what}: missing layers {', '.join(layers[:8])}{hint}")
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise CheckpointError(f"{path} does not fit the {what}: {key} has shape "
                                  f"{tuple(state[key].shape)}, expected {tuple(value.shape)}{hint}")
    module.load_state_dict({k: state[k] for k in expected})


def load_encoder(path: str | os.PathLike, mode: str | ModeSpec) -> nn.Sequential:
    """The frozen VGG encoder for ``mode`` from ``vgg_normalised.pth`` (or a file of its first layers)."""
    spec = parse_mode(mode)
    encoder = build_encoder(spec)
    needs = "relu4_1 (art mode)" if spec.name == "art" else "relu3_1"
    _fit(encoder, load_state_dict(path), path, f"VGG encoder reaching {needs}")
    return encoder


def load_decoder(path: str | os.PathLike, mode: str | ModeSpec) -> nn.Sequential:
    """A decoder for ``mode``; a full 29-child file also serves photo mode."""
    spec = parse_mode(mode)
    decoder = build_decoder(spec)
    hint = " (is it a photo-mode decoder? use --training_mode/--testing_mode photo)" if spec.name == "art" else ""
    _fit(decoder, load_state_dict(path), path, f"{spec.name}-mode decoder", hint)
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
    state = {_GLFA_TRANSFORM_PREFIXES.get(k.split(".", 1)[0], k.split(".", 1)[0]) + k[k.find("."):]: v
             for k, v in load_state_dict(path).items()}
    found = transform_mode(state)
    if found is None:
        raise CheckpointError(f"{path} is not an LCT/SCT checkpoint (no cnet.0.weight)")
    if found != spec.name:
        raise CheckpointError(f"{path} holds a {found}-mode transform, but the mode is {spec.name}")
    transform = build_transform(kind, spec)
    _fit(transform, state, path, f"{spec.name}-mode {kind.upper()}")
    return transform
