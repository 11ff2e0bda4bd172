"""A training run's folder and every name in it: the reference-format weights, the training
states and their records, the progress grids, the weight average and the run's lock. Training
writes through it; the commands, evaluation, the ablation and the shipped-model lookup read
through it, so a file name is spelled in one place.

    decoder_iter_N.pth.tar, lct_iter_N.pth.tar (or sct_)   the weights (reference format)
    training_state_iter_N.pth                              everything --resume needs
    iter_N.json                                            the record of what produced save N
    grid_iter_N.png                                        content, style and result rows
    ema/decoder_iter_N.pth.tar, ema/lct_iter_N.pth.tar     --ema's averaged weights
    train.lock                                             held while a run trains here
"""
import fcntl
import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from glfa.checkpoint import TEMPORARY_NAME
from glfa.errors import UserError
from glfa.paths import SHIPPED_DIR
from net import ModeSpec, parse_mode

CHECKPOINT_NAME = re.compile(r"^(decoder|lct|sct)_iter_(\d+)\.pth\.tar$")
STATE_NAME = re.compile(r"^training_state_iter_(\d+)\.pth$")
TRANSFORM_KINDS = ("lct", "sct")


@dataclass(frozen=True)
class SavedModel:
    """One saved model of a run: its iteration, decoder and transform files, and the transform's kind."""

    iteration: int
    decoder: Path
    transform: Path
    kind: str


class RunFolder:
    """The files of one training run's folder (``--save_dir``), by iteration."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- names ---------------------------------------------------------------------------------

    def decoder(self, iteration: int) -> Path:
        return self.path / f"decoder_iter_{iteration}.pth.tar"

    def transform(self, iteration: int, kind: str) -> Path:
        return self.path / f"{kind}_iter_{iteration}.pth.tar"

    def state(self, iteration: int) -> Path:
        return self.path / f"training_state_iter_{iteration}.pth"

    def record(self, iteration: int) -> Path:
        return self.path / f"iter_{iteration}.json"

    def grid(self, iteration: int) -> Path:
        return self.path / f"grid_iter_{iteration}.png"

    @property
    def averaged(self) -> "RunFolder":
        """``ema/``: the weight average's files, named like the raw ones."""
        return RunFolder(self.path / "ema")

    @property
    def lock_path(self) -> Path:
        return self.path / "train.lock"

    # -- what is there -------------------------------------------------------------------------

    def weights(self) -> dict[int, dict[str, Path]]:
        """The reference-format weights: ``{N: {"decoder": path, "lct": path, …}}``."""
        found: dict[int, dict[str, Path]] = {}
        for path in self.path.iterdir() if self.path.is_dir() else ():
            match = CHECKPOINT_NAME.match(path.name)
            if match:
                found.setdefault(int(match.group(2)), {})[match.group(1)] = path
        return found

    def models(self, kinds: tuple[str, ...] = TRANSFORM_KINDS) -> list[SavedModel]:
        """Every iteration with a decoder and one transform of ``kinds``, oldest first; an
        iteration with both an LCT and an SCT file is ambiguous (a ``UserError``)."""
        models = []
        for iteration, files in sorted(self.weights().items()):
            present = [kind for kind in kinds if kind in files]
            if "decoder" not in files or not present:
                continue
            if len(present) > 1:
                raise UserError(f"both lct_ and sct_ checkpoints at iteration {iteration} in {self.path}: "
                                "name the files explicitly")
            models.append(SavedModel(iteration, files["decoder"], files[present[0]], present[0]))
        return models

    def latest_model(self, kinds: tuple[str, ...] = TRANSFORM_KINDS) -> SavedModel | None:
        """The model of the last iteration saved complete (decoder and transform), or None."""
        models = self.models(kinds)
        return models[-1] if models else None

    def training_states(self) -> list[tuple[int, Path]]:
        """The ``training_state_iter_N.pth`` files as ``(N, path)``, oldest first."""
        if not self.path.is_dir():
            return []
        found = ((STATE_NAME.match(p.name), p) for p in self.path.iterdir())
        return sorted((int(match[1]), p) for match, p in found if match)

    def last_written_state(self) -> tuple[Path, list[Path]] | None:
        """``--resume auto``: the training state written last (after resuming an older state, that of
        the new run, not the abandoned run's higher-numbered ones), and those higher-numbered
        ones; None when there is none."""
        states = self.training_states()
        if not states:
            return None
        number, path = max(states, key=lambda state: (state[1].stat().st_mtime_ns, state[0]))
        return path, [later for n, later in states if n > number]

    def read_record(self, iteration: int) -> dict | None:
        """``iter_N.json`` as a dict, or None when it is missing or not a readable JSON object."""
        try:
            record = json.loads(self.record(iteration).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    # -- housekeeping --------------------------------------------------------------------------

    def prune_states(self, keep_last: int, iteration: int) -> None:
        """Delete all but the newest ``keep_last`` training states up to ``iteration`` (0 keeps all).
        Later ones (an earlier run's, in the same folder) and reference-format weights are never touched."""
        if keep_last:
            reached = [path for number, path in self.training_states() if number <= iteration]
            for path in reached[:-keep_last]:
                path.unlink(missing_ok=True)

    def remove_temporary_files(self) -> int:
        """Delete the temporary files that runs killed while saving left here; returns how many.
        Only call it while holding the lock, so that no other run writes here."""
        orphans = [p for p in self.path.iterdir() if TEMPORARY_NAME.match(p.name)] if self.path.is_dir() else []
        for path in orphans:
            path.unlink(missing_ok=True)
        return len(orphans)

    def lock(self) -> "RunLock":
        """The folder's lock, not yet held (``claim`` takes it)."""
        return RunLock(self.lock_path)

    def claim(self, lock: "RunLock") -> None:
        """Hold the folder's ``lock``, then remove the temporary files of runs killed while saving."""
        lock.acquire()
        removed = self.remove_temporary_files()
        if removed:
            print(f"note: removed {removed} temporary file(s) left in {self.path} by a run killed while saving")


class RunLock:
    """``train.lock`` in ``--save_dir``: one training run per folder, so that no run prunes or
    overwrites another's files. The lock is the kernel's (``flock``), so a run that dies in any
    way releases it; the file names the holder's host and PID, for the message that refuses a
    second run and for the warning when a dead run's file is taken over."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        """Hold the lock, or refuse with a ``UserError`` naming the run that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe_holder(os.read(fd, 4096))
                os.close(fd)
                raise UserError(f"--save_dir {self.path.parent} is in use by another training run ({holder}); "
                                "wait for it to end, or choose another --save_dir") from None
            if self._still_there(fd):  # not unlinked by a holder releasing it meanwhile
                break
            os.close(fd)
        previous = os.read(fd, 4096)
        if previous.strip():
            print(f"warning: taking over {self.path}, left by a run that is gone ({_describe_holder(previous)})",
                  file=sys.stderr)
        os.ftruncate(fd, 0)
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self.fd = fd

    def _still_there(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the file and let go (nothing when not held)."""
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


def _describe_holder(content: bytes) -> str:
    """``PID 123 on host h, started …`` from a lock file's content."""
    try:
        holder = json.loads(content)
        started = f", started {holder['started']}" if holder.get("started") else ""
        return f"PID {holder['pid']} on host {holder['host']}{started}"
    except (ValueError, TypeError, KeyError, AttributeError):
        return "its PID and host unknown"


def shipped_model(folder: Path = SHIPPED_DIR) -> tuple[Path, Path]:
    """The shipped photo model: ``decoder_iter_N.pth.tar`` and ``lct_iter_N.pth.tar`` in
    ``experiments/photo/`` for the highest N that has both."""
    model = RunFolder(folder).latest_model(("lct",))
    if model is None:
        raise UserError(f"the shipped model is missing: {folder} holds no decoder_iter_N.pth.tar with a matching "
                        "lct_iter_N.pth.tar; give --decoder and --LCT (checkpoints written by train.py)")
    return model.decoder, model.transform


def model_files(decoder: str | Path | None, transform: str | Path | None,
                mode: str | ModeSpec = "photo") -> tuple[Path, Path]:
    """The decoder and transform files to load: those given, the shipped model's for the others
    (photo mode only; art mode needs both given)."""
    if decoder is not None and transform is not None:
        return Path(decoder), Path(transform)
    if parse_mode(mode).name != "photo":
        raise UserError("no model ships for art mode: give --decoder and --LCT (checkpoints written by "
                        "train.py --training_mode art)")
    shipped_decoder, shipped_transform = shipped_model()
    return Path(decoder or shipped_decoder), Path(transform or shipped_transform)
