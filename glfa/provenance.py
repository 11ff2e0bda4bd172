"""The record of what produced a run's saves: the code's commit and the tracked files changed
since, the library versions, the settings and the encoder file's fingerprint."""
import hashlib
import os
import platform
import subprocess
from pathlib import Path

import torch
import torchvision

from glfa.config import TrainConfig
from glfa.paths import REPO_ROOT


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
