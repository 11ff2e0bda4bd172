"""The training state, from writing it to continuing from it: what it holds, which one ``--resume``
takes, whether it fits the run that resumes it, and how a run is restored from it.

A state is a ``weights_only``-safe dict (``glfa.checkpoint`` reads and writes it as a file):
``ENTRIES`` with their types, the optional ``metadata`` (the record of what produced it,
``glfa.provenance``) and, with ``--ema``, the weight ``average``.
"""
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from glfa.checkpoint import (CheckpointError, check_finite_tensor, fit_weights, load_training_state,
                             save_training_state)
from glfa.config import TrainConfig, resume_differences
from glfa.distributed import Process
from glfa.errors import UserError
from glfa.model import contrastive_of
from glfa.runfolder import RunFolder
from glfa.schedule import WeightAverage
from net import EncoderDecoder

# The entries of a training state and their types (``metadata`` and ``average`` are optional).
ENTRIES = {"iteration": int, "draws": int, "world_size": int, "decoder": dict, "transform": dict,
           "heads": dict, "optimizer": dict, "scaler": dict, "args": dict}


class Resumable(Protocol):
    """The run a training state is taken from and restored into (``glfa.train.Trainer``)."""

    config: TrainConfig
    process: Process
    network: EncoderDecoder
    trained: dict[str, nn.Module]       # the decoder and, when transferring, the transform
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    average: WeightAverage | None
    record: dict                        # ``glfa.provenance.run_record`` on rank 0, empty elsewhere
    iteration: int
    draws: int                          # images each rank has taken from each loader
    elapsed_before: float               # the wall and CPU seconds of the runs this one continues
    cpu_before: float


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def training_state(run: Resumable, metadata: dict) -> dict:
    """Everything a resumed run needs, as tensors and plain values (``weights_only``-safe), with
    ``metadata``, the record of what produced it."""
    contrastive = contrastive_of(run.network)
    state = {
        "iteration": run.iteration,
        "draws": run.draws,
        "world_size": run.process.world_size,
        "decoder": cpu_weights(run.network.decoder),
        "transform": cpu_weights(run.trained["transform"]) if "transform" in run.trained else {},
        "heads": cpu_weights(contrastive) if contrastive is not None else {},
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        "args": run.config.as_record(),
        "metadata": metadata,
    }
    if run.average is not None:
        state["average"] = run.average.state_dict()
    return state


def write_training_state(run: Resumable, metadata: dict, path: Path) -> None:
    """``run``'s training state, written to ``path`` atomically."""
    save_training_state(training_state(run, metadata), path)


def cpu_weights(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------------
# Finding and checking
# --------------------------------------------------------------------------------------------

def read_resume_state(config: TrainConfig) -> tuple[dict, str] | None:
    """The training state ``--resume`` names (``auto``: the one written last in ``--save_dir``,
    if any) and its path, checked against ``config``."""
    folder = RunFolder(config.save_dir)
    how = ""
    if not config.resume:
        earlier = folder.training_states()
        if earlier:
            print(f"note: {config.save_dir} holds training states of an earlier run (up to iteration "
                  f"{earlier[-1][0]}); this run starts afresh and overwrites them as it reaches them")
        return None
    if config.resume == "auto":
        found = folder.last_written_state()
        if found is None:
            if config.freeze_decoder and not config.init_decoder:
                raise UserError(f"--freeze_decoder keeps the decoder as it starts, but --resume auto found no training "
                                f"state in {config.save_dir} and no --init_decoder is given: a random decoder would "
                                "stay random")
            print(f"no training state in {config.save_dir}: starting from scratch")
            return None
        path, abandoned = found
        how = ", the training state written last"
        if abandoned:
            how += (f" ({', '.join(p.name for p in abandoned)}: numbered higher, from the run abandoned when an "
                    "older state was resumed; left alone)")
    else:
        path = Path(config.resume)
    state = load_training_state(path)
    check_training_state(state, path)
    check_resume_settings(state["args"], config, path)
    print(f"resuming from {path} at iteration {state['iteration']}{how}")
    starts = [flag for flag, given in (("--init_decoder", config.init_decoder),
                                       ("--init_transform", config.init_transform)) if given]
    if starts:
        print(f"note: {' and '.join(starts)} not used: the run continues from the weights of {path}")
    return state, str(path)


def check_training_state(state: dict, path: str | Path) -> None:
    """A training state to resume must hold every entry with its type (a damaged file otherwise);
    the weights' shapes and values are checked as they are restored."""
    for key, kind in ENTRIES.items():
        if key not in state:
            raise CheckpointError(f"{path} is damaged: it has no {key!r}")
        value = state[key]
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
            expected = "a non-negative integer" if kind is int else "a dict"
            raise CheckpointError(f"{path} is damaged: its {key!r} is {value!r:.40}, expected {expected}")
    for key in ("decoder", "transform", "heads"):
        wrong = [name for name, value in state[key].items() if not isinstance(value, Tensor)]
        if wrong:
            raise CheckpointError(f"{path} is damaged: its {key} weight {wrong[0]!r} is not a tensor")
    optimizer = state["optimizer"]
    if not (isinstance(optimizer.get("state"), dict) and isinstance(optimizer.get("param_groups"), list)):
        raise CheckpointError(f"{path} is damaged: its optimizer state has no 'state' and 'param_groups'")
    if not isinstance(state.get("metadata", {}), dict):
        raise CheckpointError(f"{path} is damaged: its 'metadata' is not a dict")


def check_resume_settings(saved: dict, config: TrainConfig, path: Path) -> None:
    """Refuse a state trained with another model; point out settings that changed."""
    clashes, changes = resume_differences(saved, config)
    if clashes:
        described = ", ".join(f"--{name} {then} (now {now})" for name, then, now in clashes)
        raise UserError(f"cannot resume from {path}: it was trained with {described}; "
                        "use the same flags or a new --save_dir")
    for name, then, now in changes:
        print(f"note: resuming with --{name} {now} (the saved run used {then})")


# --------------------------------------------------------------------------------------------
# Restoring
# --------------------------------------------------------------------------------------------

def restore_training_state(run: Resumable, state: dict, path: str) -> None:
    """Continue ``run`` from a training state, its weights and moments checked (shapes, finite values)."""
    fit_weights(run.network.decoder, state["decoder"], path, "decoder")
    if "transform" in run.trained:
        fit_weights(run.trained["transform"], state["transform"], path, f"{run.config.transform.upper()} transform")
    if contrastive_of(run.network) is not None:
        fit_weights(run.network.contrastive, state["heads"], path, "projection heads")
    if run.average is not None and "average" in state:
        run.average.load_state_dict(state["average"], path)
    elif run.average is not None:
        run.average = WeightAverage(run.trained, run.config.ema)
        print(f"note: {path} holds no weight average; --ema starts one at iteration {state['iteration']}")
    check_optimizer_state(run.optimizer, state["optimizer"], path)
    run.optimizer.load_state_dict(state["optimizer"])
    if state["scaler"] and run.scaler.is_enabled():
        run.scaler.load_state_dict(state["scaler"])
    run.iteration, run.draws = state["iteration"], state["draws"]
    metadata = state.get("metadata", {})
    run.elapsed_before = float(metadata.get("elapsed_seconds", 0.0))
    run.cpu_before = float(metadata.get("cpu_seconds", 0.0))
    if state["world_size"] != run.process.world_size and run.process.is_main:
        print(f"note: resuming with {run.process.world_size} process(es) instead of {state['world_size']}: "
              "the data order is not the one the saved run would have followed")
    if run.process.is_main:
        note_encoder_change(state, run.config, run.record["vgg_sha256"])


def check_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict, path: str) -> None:
    """A saved Adam state must fit the parameters: groups of the same sizes, finite moments of their shapes."""
    groups = saved["param_groups"]
    sizes = [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in groups]
    expected = [len(g["params"]) for g in optimizer.param_groups]
    if sizes != expected:
        raise CheckpointError(f"{path} does not fit the network: its optimizer state covers parameter groups of "
                              f"{sizes} parameters, the network has {expected}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, param in zip((i for g in groups for i in g["params"]), params):
        moments = saved["state"].get(index, {})
        if not isinstance(moments, dict):
            raise CheckpointError(f"{path} is damaged: its optimizer state of parameter {index} is not a dict")
        for name, value in moments.items():
            if name == "step":
                continue
            if not isinstance(value, Tensor) or value.shape != param.shape:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise CheckpointError(f"{path} does not fit the network: optimizer {name} of parameter {index} "
                                      f"has shape {shape}, expected {tuple(param.shape)}")
            check_finite_tensor(value, path, f"optimizer {name} of parameter {index}")


def note_encoder_change(state: dict, config: TrainConfig, vgg_sha256: str) -> None:
    """Point out an encoder file other than the saved run's (its fingerprint, or its path in older states)."""
    saved_vgg, metadata = state["args"].get("vgg"), state.get("metadata", {})
    changed = metadata["vgg_sha256"] != vgg_sha256 if "vgg_sha256" in metadata else saved_vgg != config.vgg
    if changed:
        print(f"note: resuming with --vgg {config.vgg}, another encoder than the saved run's ({saved_vgg}): "
              "the decoder was trained on other features")
