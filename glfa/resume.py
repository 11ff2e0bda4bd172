"""Continuing a run, and the record of what produced it: which training state ``--resume``
takes, whether it fits the run that resumes it, and the provenance each save writes beside its
files (commit, library versions, settings, the encoder's fingerprint)."""
import hashlib
import os
import platform
import subprocess
from pathlib import Path

import torch
import torchvision
from torch import Tensor

from glfa.checkpoint import CheckpointError, check_finite_tensor, check_training_state, load_training_state
from glfa.config import TrainConfig, resume_differences
from glfa.errors import UserError
from glfa.paths import REPO_ROOT
from glfa.runfolder import RunFolder


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
    return state, str(path)


def check_resume_settings(saved: dict, config: TrainConfig, path: Path) -> None:
    """Refuse a state trained with another model; point out settings that changed."""
    clashes, changes = resume_differences(saved, config)
    if clashes:
        described = ", ".join(f"--{name} {then} (now {now})" for name, then, now in clashes)
        raise UserError(f"cannot resume from {path}: it was trained with {described}; "
                        "use the same flags or a new --save_dir")
    for name, then, now in changes:
        print(f"note: resuming with --{name} {now} (the saved run used {then})")


def note_encoder_change(state: dict, config: TrainConfig, vgg_sha256: str) -> None:
    """Point out an encoder file other than the saved run's (its fingerprint, or its path in older states)."""
    saved_vgg, metadata = state["args"].get("vgg"), state.get("metadata", {})
    changed = metadata["vgg_sha256"] != vgg_sha256 if "vgg_sha256" in metadata else saved_vgg != config.vgg
    if changed:
        print(f"note: resuming with --vgg {config.vgg}, another encoder than the saved run's ({saved_vgg}): "
              "the decoder was trained on other features")


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


def git_commit(folder: Path = REPO_ROOT) -> str:
    """The commit checked out in ``folder`` when it is the top of a git checkout, else ``"unknown"``."""
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel", "HEAD"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = done.stdout.split("\n")
    if done.returncode != 0 or len(lines) < 2 or Path(lines[0]).resolve() != Path(folder).resolve():
        return "unknown"
    return lines[1]


def git_modified(folder: Path = REPO_ROOT) -> list[str] | None:
    """Tracked files of ``folder``'s checkout that differ from its commit (a run started from an
    uncommitted tree says which files the commit does not account for), None outside git."""
    if git_commit(folder) == "unknown":
        return None
    try:
        done = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted(line[3:] for line in done.stdout.splitlines() if line.strip()) if done.returncode == 0 else None


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, hexadecimal."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_record(config: TrainConfig, vgg: str | os.PathLike) -> dict:
    """What produces this run's saves: the code's commit and the tracked files changed since, the
    library versions, the settings and the encoder file's fingerprint (each save adds its
    iteration, files and elapsed time)."""
    return {"git_commit": git_commit(), "git_modified": git_modified(),
            "versions": {"python": platform.python_version(), "torch": str(torch.__version__),
                         "torchvision": str(torchvision.__version__)},  # plain str: torch's is a subclass
            "args": config.as_record(), "vgg_sha256": file_sha256(vgg)}
