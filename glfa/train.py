"""The training loop behind ``train.py``: data, model, optimiser, schedule, logging, saving.

One process (``python train.py``) or one process per GPU under ``torchrun``: then the
network is wrapped in DistributedDataParallel (gradients averaged over ranks), each rank draws
its own share of every pass over the images, the logged losses are averaged over ranks, and
rank 0 alone writes logs, grids and checkpoints.

Rank 0 holds ``train.lock`` in ``--save_dir`` while the run lasts, so a second run there is
refused. Every ``--save_model_interval`` iterations, at the end, on Ctrl-C or SIGTERM, and when
the loss stays non-finite, rank 0 writes a training state ``training_state_iter_N.pth``
(weights, optimiser, grad scaler, iteration, sampler position, arguments, and the record of what
produced it, also written as ``iter_N.json``) next to the reference-format weights; ``--resume``
continues from it exactly. No RNG state needs saving: the data order is a
function of (seed, pass), each crop of (seed, rank, draw) and the contrastive anchors of
(seed, rank, iteration), so a resumed run makes the same random choices as an uninterrupted one.

Debugging aid: with the environment variable ``TRAIN_SAMPLE_LOG=DIR`` every rank appends one
line per iteration to ``DIR/samples_rank<R>.txt``: the iteration, then the content and the
style dataset indexes of its batch.
"""
import argparse
import contextlib
import copy
import fcntl
import hashlib
import itertools
import json
import math
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torchvision
from tensorboardX import SummaryWriter
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torchvision.utils import save_image
from tqdm import tqdm

from glfa.checkpoint import (CheckpointError, atomic_write, check_finite, check_training_state, fit_weights,
                             load_decoder, load_encoder, load_training_state, load_transform, remove_temporary_files,
                             save_json, save_state_dict, save_training_state)
from glfa.cli import UserError, autocast, autocast_dtype, configure_backends, resolve_device
from glfa.data import ImageFolderDataset, training_transform
from glfa.paths import REPO_ROOT
from net import EncoderDecoder, LossWeights, StyleTransferNet, build_network, parse_mode, total_loss
from sampler import ITERATION_STREAM, InfiniteSampler, SeededSampler, mixed_seed

EMA_FOLDER = "ema"  # --ema's averaged weights, named like the raw ones
STATE_NAME = re.compile(r"training_state_iter_(\d+)\.pth")
# Arguments a training state must share with the run resuming it (they fix what is trained).
RESUME_MUST_MATCH = ("training_mode", "transform", "contrastive", "num_l", "objective")
# What a training state written before an argument existed was trained with.
RESUME_DEFAULTS = {"objective": "transfer"}
# Arguments that may change on resume; a change is pointed out.
RESUME_MAY_CHANGE = ("content_dir", "style_dir", "image_size", "crop_size", "lr", "lr_decay", "batch_size",
                     "content_weight", "style_weight", "wce_weight", "kl_weight", "pixel_weight", "tau", "num_s", "seed",
                     "amp", "lr_schedule", "min_lr", "warmup_iters", "max_iter")


Result = TypeVar("Result")


class TrainingDiverged(UserError):
    """The loss stayed non-finite for ``--max_nonfinite`` iterations in a row, or for every step of a run."""


# --------------------------------------------------------------------------------------------
# Schedule, losses, seeds
# --------------------------------------------------------------------------------------------

LR_SCHEDULES = ("reference", "cosine", "linear")


def learning_rate(base_lr: float, lr_decay: float, iteration: int, schedule: str = "reference",
                  max_iter: int = 1, min_lr: float = 0.0, warmup_iters: int = 0) -> float:
    """The learning rate at ``iteration`` (counted from 0).

    ``reference``: ``lr / (1 + lr_decay · iteration)``, which hardly decays over a short budget.
    ``cosine`` and ``linear`` fall from ``lr`` to ``min_lr`` at ``max_iter``, so a short run ends
    low. ``warmup_iters`` ramps any schedule up linearly from ``lr / warmup_iters`` first (a
    fresh optimiser on warm-started weights takes its first steps gently).
    """
    if schedule == "reference":
        rate = base_lr / (1.0 + lr_decay * iteration)
    else:
        progress = min(iteration / max(max_iter - 1, 1), 1.0)
        fall = (1 + math.cos(math.pi * progress)) / 2 if schedule == "cosine" else 1 - progress
        rate = min_lr + (base_lr - min_lr) * fall
    if iteration < warmup_iters:
        rate *= (iteration + 1) / warmup_iters
    return rate


def loss_weights(args: argparse.Namespace) -> LossWeights:
    """The objective's weights from the flags. ``--wce_weight`` weights the contrastive InfoNCE and
    ``--kl_weight`` WCE's KL term relative to it, as in METHOD."""
    return LossWeights(content=args.content_weight, style=args.style_weight, nce=args.wce_weight,
                       kl=args.wce_weight * args.kl_weight, pixel=args.pixel_weight)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def iteration_seed(seed: int, rank: int, iteration: int) -> int:
    """The seed of the global RNG (contrastive anchors) for one iteration on one rank."""
    return mixed_seed(seed, rank, iteration, ITERATION_STREAM)


def check_args(args: argparse.Namespace) -> None:
    """Refuse flag combinations that cannot train, before any work is done."""
    spec = parse_mode(args.training_mode)
    if args.num_l > len(spec.channels):
        raise UserError(f"--num_l {args.num_l} exceeds the {len(spec.channels)} encoder layers of {spec.name} mode")
    if args.crop_size < spec.min_side:
        raise UserError(f"--crop_size must be at least {spec.min_side} in {spec.name} mode, got {args.crop_size}")
    if args.image_size < args.crop_size:
        raise UserError(f"--image_size ({args.image_size}) must be at least --crop_size ({args.crop_size})")
    if args.objective == "reconstruction" and args.init_transform:
        raise UserError("--init_transform has nothing to start: --objective reconstruction trains the decoder alone")
    if args.ema and not 0 < args.ema < 1:
        raise UserError(f"--ema must be between 0 and 1 (a decay such as 0.999), got {args.ema}")


# --------------------------------------------------------------------------------------------
# Processes: one, or one per GPU under torchrun
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Process:
    """This process's place in the run: its rank, the number of ranks, its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start_process(device_name: str | None) -> Process:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL with one
    GPU per rank (``LOCAL_RANK``), gloo on the CPU. A plain run is rank 0 of 1."""
    device = resolve_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Process(0, 1, device)
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                            "use --nproc_per_node up to the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(dist.get_rank(), dist.get_world_size(), device)


def end_process(process: Process) -> None:
    if process.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wait_for_all(process: Process) -> None:
    """Let ranks leave together, so the launcher does not stop rank 0 while it is saving."""
    if process.distributed:
        dist.barrier()


def from_main(process: Process, work: Callable[[], Result]) -> Result:
    """``work()`` on rank 0, its result sent to every rank (nodes need not share a disk); a
    ``UserError`` there stops every rank with the same message."""
    result, error = None, None
    if process.is_main:
        try:
            result = work()
        except UserError as err:
            error = str(err)
    if process.distributed:
        box = [result, error]
        dist.broadcast_object_list(box, src=0)
        result, error = box
    if error:
        raise UserError(error)
    return result


class RunLock:
    """``train.lock`` in ``--save_dir``: one training run per folder, so that no run prunes or
    overwrites another's files. The lock is the kernel's (``flock``), so a run that dies in any
    way releases it; the file names the holder's host and PID, for the message that refuses a
    second run and for the warning when a dead run's file is taken over."""

    NAME = "train.lock"

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / self.NAME
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


def claim_save_dir(lock: RunLock) -> None:
    """Hold ``--save_dir``'s lock, then remove the temporary files of runs killed while saving."""
    lock.acquire()
    removed = remove_temporary_files(lock.path.parent)
    if removed:
        print(f"note: removed {removed} temporary file(s) left in {lock.path.parent} by a run killed while saving")


class StopSignals:
    """Ctrl-C and SIGTERM become a request to stop after the current iteration (``received``
    holds the signal); the default handlers come back at once, so a second signal stops hard."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "StopSignals":
        self.received = 0
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def __exit__(self, *exc: object) -> None:
        self._restore()


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave Ctrl-C/SIGTERM to the main process, which stops them after saving."""
    for sig in StopSignals.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

class SeededCrops(Dataset):
    """The training images keyed by ``(index, draw_seed)``: yields ``(index, image)`` whose random
    crop comes from ``draw_seed``, whichever worker decodes it."""

    def __init__(self, images: ImageFolderDataset):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, Tensor]:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return index, self.images[index]


def make_loader(root: str, args: argparse.Namespace, process: Process, seed: int,
                start: int) -> tuple[DataLoader, ImageFolderDataset]:
    """An endless loader of ``(indexes, crops)`` batches from ``root`` for this rank, starting
    after its first ``start`` draws; stops early if nothing there is readable."""
    images = ImageFolderDataset(root, training_transform(args.image_size, args.crop_size),
                                draft_size=args.image_size)
    images.check_readable()
    check_same_listing(images, process)
    sampler = SeededSampler(InfiniteSampler(len(images), seed, process.rank, process.world_size, start))
    loader = DataLoader(SeededCrops(images), batch_size=args.batch_size, sampler=sampler,
                        num_workers=args.n_threads, pin_memory=process.device.type == "cuda",
                        persistent_workers=args.n_threads > 0, drop_last=True,
                        worker_init_fn=_ignore_stop_signals)
    return loader, images


def check_same_listing(images: ImageFolderDataset, process: Process) -> None:
    """Ranks split one sorted file list by index, so every rank must list the same files."""
    if not process.distributed:
        return
    mine = (len(images.paths), zlib.crc32("\n".join(map(str, images.paths)).encode()))
    everyone: list = [None] * process.world_size
    dist.all_gather_object(everyone, mine)
    if any(listing != mine for listing in everyone):
        raise UserError(f"the ranks see different files in {images.root} ({sorted({n for n, _ in everyone})} "
                        "files); every node needs the same folder")


# --------------------------------------------------------------------------------------------
# Network and optimiser
# --------------------------------------------------------------------------------------------

def build_training_network(args: argparse.Namespace, device: torch.device) -> StyleTransferNet:
    """The network for ``args``, encoder weights loaded, on ``device``.

    Projection heads of layers the contrastive loss does not use (``--num_l`` below the mode's
    layer count) are frozen: they never get a gradient, and DDP would wait for one.
    """
    network = build_network(args.training_mode, args.transform, args.contrastive, args.num_s, args.num_l, args.tau,
                            encoder=load_encoder(args.vgg, args.training_mode), objective=args.objective)
    if contrastive_of(network) is not None:
        heads = network.contrastive.heads
        heads[:len(heads) - args.num_l].requires_grad_(False)
    network = network.to(device)
    if args.channels_last:
        network = network.to(memory_format=torch.channels_last)
    return network


def contrastive_of(network: EncoderDecoder) -> nn.Module | None:
    """The network's contrastive loss module (with its projection heads), None when it has none."""
    return getattr(network, "contrastive", None)


def transform_of(network: EncoderDecoder) -> nn.Module | None:
    """The network's transform, None for the reconstruction objective."""
    return getattr(network, "transform", None)


def init_weights(network: EncoderDecoder, decoder: str | None, transform: str | None, mode: str, kind: str) -> None:
    """``--init_decoder``/``--init_transform``: start from existing weights (reference-format files,
    loaded and checked like any checkpoint); the optimiser and the iteration count start afresh."""
    if decoder:
        network.decoder.load_state_dict(load_decoder(decoder, mode).state_dict())
    if transform:
        network.transform.load_state_dict(load_transform(transform, mode, kind).state_dict())


def trainable_parameters(network: StyleTransferNet) -> list[nn.Parameter]:
    """Decoder, transform and (used) projection heads; never the encoder."""
    return [p for p in network.parameters() if p.requires_grad]


def wrap_for_training(network: StyleTransferNet, args: argparse.Namespace, process: Process) -> nn.Module:
    """DistributedDataParallel across ranks, then ``torch.compile`` when asked."""
    model: nn.Module = network
    if process.distributed:
        device_ids = [process.device.index] if process.device.type == "cuda" else None
        model = DistributedDataParallel(network, device_ids=device_ids)
    return torch.compile(model) if args.compile else model


# --------------------------------------------------------------------------------------------
# Checkpoints and training states
# --------------------------------------------------------------------------------------------

def save_checkpoints(weights: dict[str, dict[str, Tensor]], save_dir: Path, transform: str,
                     iteration: int) -> list[str]:
    """The reference-format weights: ``decoder_iter_N.pth.tar`` and, when ``weights`` holds a
    transform, ``<transform>_iter_N.pth.tar``; returns the names written."""
    names = {"decoder": f"decoder_iter_{iteration}.pth.tar", "transform": f"{transform}_iter_{iteration}.pth.tar"}
    written = []
    for part, state in weights.items():
        save_state_dict(state, save_dir / names[part])
        written.append(names[part])
    return written


class WeightAverage:
    """``--ema``: an exponential moving average of the decoder's and the transform's weights,
    ``average ← decay·average + (1 − decay)·weights`` after every optimiser step, saved beside
    the raw weights (in ``ema/``) and in the training state."""

    def __init__(self, modules: dict[str, nn.Module], decay: float):
        self.modules, self.decay = modules, decay
        self.average = {name: {k: v.detach().clone().float() for k, v in module.state_dict().items()}
                        for name, module in modules.items()}

    @torch.no_grad()
    def update(self) -> None:
        for name, module in self.modules.items():
            average = self.average[name]
            for key, value in module.state_dict().items():
                average[key].lerp_(value.float(), 1 - self.decay)

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        return {name: {k: v.cpu() for k, v in weights.items()} for name, weights in self.average.items()}

    def load_state_dict(self, state: dict[str, dict[str, Tensor]], path: str) -> None:
        """The average saved in a training state, its shapes and values checked."""
        for name, module in self.modules.items():
            holder = copy.deepcopy(module)
            fit_weights(holder, state.get(name, {}), path, f"averaged {name}")
            self.average[name] = {k: v.detach().clone().float() for k, v in holder.state_dict().items()}


def save_grid(content: Tensor, style: Tensor | None, result: Tensor, path: Path) -> None:
    """Rows of content, style (none when reconstructing) and result images for a quick look at progress."""
    rows = torch.cat([image for image in (content, style, result.float().clamp(0, 1)) if image is not None]).cpu()
    atomic_write(path, lambda file: save_image(rows, file, nrow=content.shape[0], format="png"))


def training_states(save_dir: Path) -> list[tuple[int, Path]]:
    """The ``training_state_iter_N.pth`` files in ``save_dir`` as ``(N, path)``, oldest first."""
    if not save_dir.is_dir():
        return []
    found = ((STATE_NAME.fullmatch(p.name), p) for p in save_dir.iterdir())
    return sorted((int(match[1]), p) for match, p in found if match)


def prune_training_states(save_dir: Path, keep_last: int, iteration: int) -> None:
    """Delete all but the newest ``keep_last`` training states up to ``iteration`` (0 keeps all).
    Later ones (an earlier run's, in the same folder) and reference-format weights are never touched."""
    if keep_last:
        reached = [path for number, path in training_states(save_dir) if number <= iteration]
        for path in reached[:-keep_last]:
            path.unlink(missing_ok=True)


def last_written_state(save_dir: Path) -> tuple[Path, list[Path]] | None:
    """``--resume auto``: the training state written last in ``save_dir`` (after resuming an older
    state, that of the new run, not the abandoned run's higher-numbered ones), and those
    higher-numbered ones; None when there is none."""
    states = training_states(save_dir)
    if not states:
        return None
    number, path = max(states, key=lambda state: (state[1].stat().st_mtime_ns, state[0]))
    return path, [later for n, later in states if n > number]


def _cpu(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------------
# The record of what produced a save
# --------------------------------------------------------------------------------------------

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


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, hexadecimal."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_record(args: argparse.Namespace) -> dict:
    """What produces this run's saves: the code's commit, the library versions, the arguments and
    the encoder file's fingerprint (each save adds its iteration, files and elapsed time)."""
    return {"git_commit": git_commit(),
            "versions": {"python": platform.python_version(), "torch": str(torch.__version__),
                         "torchvision": str(torchvision.__version__)},  # plain str: torch's is a subclass
            "args": dict(vars(args)), "vgg_sha256": file_sha256(args.vgg)}


def check_resume_args(saved: dict, args: argparse.Namespace, path: Path) -> None:
    """Refuse a state trained with another model; point out settings that changed."""
    saved = {**RESUME_DEFAULTS, **saved}
    clashes = [f"--{key} {saved.get(key)} (now {getattr(args, key)})"
               for key in RESUME_MUST_MATCH if saved.get(key) != getattr(args, key)]
    if clashes:
        raise UserError(f"cannot resume from {path}: it was trained with {', '.join(clashes)}; "
                        "use the same flags or a new --save_dir")
    for key in RESUME_MAY_CHANGE:
        if key in saved and saved[key] != getattr(args, key):
            print(f"note: resuming with --{key} {getattr(args, key)} (the saved run used {saved[key]})")


def read_resume_state(args: argparse.Namespace) -> tuple[dict, str] | None:
    """The training state ``--resume`` names (``auto``: the one written last in ``--save_dir``,
    if any) and its path."""
    how = ""
    if not args.resume:
        earlier = training_states(Path(args.save_dir))
        if earlier:
            print(f"note: {args.save_dir} holds training states of an earlier run (up to iteration "
                  f"{earlier[-1][0]}); this run starts afresh and overwrites them as it reaches them")
        return None
    if args.resume == "auto":
        found = last_written_state(Path(args.save_dir))
        if found is None:
            print(f"no training state in {args.save_dir}: starting from scratch")
            return None
        path, abandoned = found
        how = ", the training state written last"
        if abandoned:
            how += (f" ({', '.join(p.name for p in abandoned)}: numbered higher, from the run abandoned when an "
                    "older state was resumed; left alone)")
    else:
        path = Path(args.resume)
    state = load_training_state(path)
    check_training_state(state, path)
    check_resume_args(state["args"], args, path)
    print(f"resuming from {path} at iteration {state['iteration']}{how}")
    return state, str(path)


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
            check_finite(value, path, f"optimizer {name} of parameter {index}")


# --------------------------------------------------------------------------------------------
# One step
# --------------------------------------------------------------------------------------------

def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               content: Tensor, style: Tensor, weights: LossWeights,
               amp_dtype: torch.dtype | None) -> tuple[dict[str, Tensor], Tensor]:
    """Forward and backward. Returns the loss terms (``total`` last) and the stylised batch;
    the optimiser step is the caller's, once it knows the losses are finite on every rank."""
    with autocast(content.device, amp_dtype):
        losses, result = model(content, style)
    loss = total_loss(losses, weights)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    return {**losses, "total": loss}, result


def global_values(losses: dict[str, Tensor], stop: bool, process: Process) -> tuple[dict[str, float], bool]:
    """The loss terms averaged over ranks, and whether any rank was asked to stop (one all-reduce)."""
    device = losses["total"].device
    numbers = torch.stack([*(v.detach().float() for v in losses.values()), torch.tensor(float(stop), device=device)])
    if process.distributed:
        dist.all_reduce(numbers)
    *sums, stops = numbers.tolist()
    return {name: total / process.world_size for name, total in zip(losses, sums)}, stops > 0


def all_finite(values: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in values.values())


def _terms(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items())


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

class Trainer:
    """One training run: network, optimiser, data streams, and where progress is written."""

    def __init__(self, args: argparse.Namespace, process: Process):
        self.args, self.process = args, process
        self.save_dir, device = Path(args.save_dir), process.device
        seed_everything(args.seed)
        resumed = from_main(process, lambda: read_resume_state(args))

        self.network = build_training_network(args, device)
        init_weights(self.network, args.init_decoder, args.init_transform, args.training_mode, args.transform)
        self.trained = {name: module for name, module in (("decoder", self.network.decoder),
                                                           ("transform", transform_of(self.network)))
                        if module is not None}
        self.average = WeightAverage(self.trained, args.ema) if args.ema else None
        self.record = run_record(args) if process.is_main else {}
        self.network.train()
        self.optimizer = torch.optim.Adam(trainable_parameters(self.network), lr=args.lr)
        self.weights = loss_weights(args)
        self.amp_dtype = autocast_dtype(args.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.iteration, self.draws, self.saved_iteration = 0, 0, -1
        self.elapsed_before = 0.0  # the training time of the runs this one continues
        self.steps_taken = 0
        if resumed:
            self.restore(*resumed)
        self.model = wrap_for_training(self.network, args, process)

        self.content_loader, self.content_images = make_loader(args.content_dir, args, process, args.seed, self.draws)
        self.style_loader, self.style_images = (make_loader(args.style_dir, args, process, args.seed + 1, self.draws)
                                                if args.objective == "transfer" else (None, None))
        self.nonfinite_in_row = 0
        self.sample_log = None
        if os.environ.get("TRAIN_SAMPLE_LOG"):
            Path(os.environ["TRAIN_SAMPLE_LOG"]).mkdir(parents=True, exist_ok=True)
            self.sample_log = Path(os.environ["TRAIN_SAMPLE_LOG"]) / f"samples_rank{process.rank}.txt"

    # -- state ---------------------------------------------------------------------------------

    def state(self, metadata: dict) -> dict:
        """Everything a resumed run needs, as tensors and plain values (``weights_only``-safe),
        with ``metadata``, the record of what produced it."""
        contrastive, transform = contrastive_of(self.network), transform_of(self.network)
        state = {
            "iteration": self.iteration,
            "draws": self.draws,  # images each rank has taken from each loader
            "world_size": self.process.world_size,
            "decoder": _cpu(self.network.decoder),
            "transform": _cpu(transform) if transform is not None else {},
            "heads": _cpu(contrastive) if contrastive is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "args": dict(vars(self.args)),
            "metadata": metadata,
        }
        if self.average is not None:
            state["average"] = self.average.state_dict()
        return state

    def restore(self, state: dict, path: str) -> None:
        """Continue from a training state, its weights and moments checked (shapes, finite values)."""
        fit_weights(self.network.decoder, state["decoder"], path, "decoder")
        if transform_of(self.network) is not None:
            fit_weights(self.network.transform, state["transform"], path, f"{self.args.transform.upper()} transform")
        if contrastive_of(self.network) is not None:
            fit_weights(self.network.contrastive, state["heads"], path, "projection heads")
        if self.average is not None and "average" in state:
            self.average.load_state_dict(state["average"], path)
        elif self.average is not None:
            self.average = WeightAverage(self.trained, self.args.ema)
            print(f"note: {path} holds no weight average; --ema starts one at iteration {state['iteration']}")
        check_optimizer_state(self.optimizer, state["optimizer"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"] and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.iteration, self.draws = state["iteration"], state["draws"]
        metadata = state.get("metadata", {})
        self.elapsed_before = float(metadata.get("elapsed_seconds", 0.0))
        if state["world_size"] != self.process.world_size and self.process.is_main:
            print(f"note: resuming with {self.process.world_size} process(es) instead of {state['world_size']}: "
                  "the data order is not the one the saved run would have followed")
        if self.process.is_main:
            self.note_encoder_change(state)

    def note_encoder_change(self, state: dict) -> None:
        """Point out an encoder file other than the saved run's (its fingerprint, or its path in older states)."""
        saved_vgg, metadata = state["args"].get("vgg"), state.get("metadata", {})
        if "vgg_sha256" in metadata:
            changed = metadata["vgg_sha256"] != self.record["vgg_sha256"]
        else:
            changed = saved_vgg != self.args.vgg
        if changed:
            print(f"note: resuming with --vgg {self.args.vgg}, another encoder than the saved run's ({saved_vgg}): "
                  "the decoder was trained on other features")

    def metadata(self, files: list[str]) -> dict:
        """The record of this save: iteration, training time so far (all runs), files, and ``run_record``."""
        elapsed = self.elapsed_before + time.monotonic() - self.started
        return {"iteration": self.iteration, "elapsed_seconds": round(elapsed, 3), "files": files, **self.record}

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """A failed save (a full disk…) ends the run with one line saying how to continue."""
        try:
            yield
        except CheckpointError as err:
            raise UserError(f"{err}; once that is fixed, continue with --resume auto") from None

    def save_state(self, written: tuple[str, ...] = ()) -> Path:
        """Write this iteration's training state and ``iter_N.json``, the record of the save (which
        also wrote the files ``written``), on rank 0, once; prune old states."""
        path = self.save_dir / f"training_state_iter_{self.iteration}.pth"
        if self.process.is_main and self.saved_iteration != self.iteration:
            metadata = self.metadata([*written, path.name])
            with self.saving():
                save_training_state(self.state(metadata), path)
                save_json(metadata, self.save_dir / f"iter_{self.iteration}.json")
            prune_training_states(self.save_dir, self.args.keep_last, self.iteration)
            self.saved_iteration = self.iteration
        return path

    def save(self, content: Tensor, style: Tensor, result: Tensor) -> None:
        """Reference-format weights, a grid, a training state and the record of the save (rank 0)."""
        if self.process.is_main:
            grid = f"grid_iter_{self.iteration}.png"
            with self.saving():
                written = save_checkpoints({name: module.state_dict() for name, module in self.trained.items()},
                                           self.save_dir, self.args.transform, self.iteration)
                if self.average is not None:
                    averaged = save_checkpoints(self.average.state_dict(), self.save_dir / EMA_FOLDER,
                                                self.args.transform, self.iteration)
                    written += [f"{EMA_FOLDER}/{name}" for name in averaged]
                save_grid(content, style, result, self.save_dir / grid)
            path = self.save_state((*written, grid))
            tqdm.write(f"iteration {self.iteration}: saved weights, grid and {path.name} "
                       f"(record: iter_{self.iteration}.json)")

    # -- loop ----------------------------------------------------------------------------------

    def run(self) -> int:
        """Train up to ``--max_iter``; the exit status: 0, or 128 + signal after a graceful stop."""
        args, process = self.args, self.process
        if self.iteration >= args.max_iter:
            if process.is_main:
                print(f"already at iteration {self.iteration}, --max_iter is {args.max_iter}: nothing to do")
            return 0
        if process.is_main:
            self.save_dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(args.log_dir, purge_step=self.iteration + 1) if process.is_main else None
        progress = tqdm(initial=self.iteration, total=args.max_iter, desc="train", dynamic_ncols=True,
                        disable=not process.is_main)
        batches = zip(self.content_loader, self.style_loader or itertools.repeat((None, None)))
        first = self.iteration + 1
        self.started = self.last_logged = time.monotonic()
        try:
            with StopSignals() as signals:
                for (content_index, content), (style_index, style) in batches:
                    self.iteration += 1
                    self.draws += args.batch_size
                    self.log_samples(content_index, style_index)
                    content, style = self.to_device(content), self.to_device(style)
                    values, result, stop = self.step(content, style, signals)
                    progress.update()
                    if writer is not None:
                        self.log(writer, progress, values)
                    if self.iteration % args.save_model_interval == 0 or self.iteration == args.max_iter:
                        self.save(content, style, result)
                    if stop:
                        return self.stop(signals.received or signal.SIGTERM)
                    if self.iteration >= args.max_iter:
                        break
        finally:
            progress.close()
            if writer is not None:
                writer.close()
        if self.steps_taken == 0:
            raise TrainingDiverged(f"every step of this run was skipped (non-finite loss at iterations {first} to "
                                   f"{self.iteration}): nothing was trained; lower --lr or check the data")
        self.report_skipped_images()
        wait_for_all(process)
        return 0

    def step(self, content: Tensor, style: Tensor, signals: StopSignals) -> tuple[dict[str, float], Tensor, bool]:
        """One iteration: schedule, seeded forward/backward, and the optimiser step unless a
        loss term is non-finite on some rank. Returns the rank-averaged terms, the stylised
        batch and whether any rank was asked to stop (up to the end of this iteration's backward)."""
        args = self.args
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(args.lr, args.lr_decay, self.iteration - 1, args.lr_schedule, args.max_iter,
                                        args.min_lr, args.warmup_iters)
        torch.manual_seed(iteration_seed(args.seed, self.process.rank, self.iteration))
        losses, result = train_step(self.model, self.optimizer, self.scaler, content, style, self.weights,
                                    self.amp_dtype)
        values, stop = global_values(losses, bool(signals.received), self.process)
        if all_finite(values):
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.average is not None:
                self.average.update()
            self.nonfinite_in_row = 0
            self.steps_taken += 1
        else:
            self.skip_nonfinite(values)
        return values, result, stop

    def skip_nonfinite(self, values: dict[str, float]) -> None:
        """Report a skipped step; after ``--max_nonfinite`` in a row, save and stop."""
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_row += 1
        limit = self.args.max_nonfinite
        if self.process.is_main:
            tqdm.write(f"warning: non-finite loss at iteration {self.iteration} ({_terms(values)}): "
                       f"step skipped ({self.nonfinite_in_row} in a row, the run stops at {limit})",
                       file=sys.stderr)
        if self.nonfinite_in_row >= limit:
            path = self.save_state()
            wait_for_all(self.process)
            raise TrainingDiverged(f"the loss was non-finite for {limit} iterations in a row (up to iteration "
                                   f"{self.iteration}); training state saved to {path}; lower --lr or check "
                                   f"the data, then continue with --resume {path}")

    def stop(self, signum: int) -> int:
        """A graceful stop: save a training state, tell the user how to continue."""
        path = self.save_state()
        if self.process.is_main:
            name = signal.Signals(signum).name
            tqdm.write(f"stopped by {name} at iteration {self.iteration}; training state saved to {path}; "
                       "continue with --resume auto", file=sys.stderr)
        wait_for_all(self.process)
        return 128 + signum

    # -- helpers -------------------------------------------------------------------------------

    def to_device(self, images: Tensor | None) -> Tensor | None:
        if images is None:
            return None
        images = images.to(self.process.device, non_blocking=True)
        if self.args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def log(self, writer: SummaryWriter, progress: tqdm, values: dict[str, float]) -> None:
        for name, value in values.items():
            writer.add_scalar(f"loss/{name}", value, self.iteration)
        writer.add_scalar("lr", self.optimizer.param_groups[0]["lr"], self.iteration)
        now = time.monotonic()
        writer.add_scalar("time/step_seconds", now - self.last_logged, self.iteration)
        self.last_logged = now
        progress.set_postfix({k: f"{v:.3g}" for k, v in values.items()})

    def log_samples(self, content_index: Tensor, style_index: Tensor) -> None:
        """``TRAIN_SAMPLE_LOG``: this rank's dataset indexes for the iteration."""
        if self.sample_log is not None:
            with open(self.sample_log, "a") as file:
                styles = " ".join(map(str, style_index.tolist())) if style_index is not None else "-"
                file.write(f"{self.iteration} {' '.join(map(str, content_index.tolist()))} | {styles}\n")

    def report_skipped_images(self) -> None:
        skipped = sum(images.skipped for images in (self.content_images, self.style_images) if images is not None)
        if skipped:
            print(f"rank {self.process.rank}: skipped {skipped} unreadable image(s) during training")


def train(args: argparse.Namespace) -> int:
    """Train for ``args.max_iter`` iterations (continuing a training state with ``args.resume``).

    Returns the exit status: 0 when done, 128 + signal number after a graceful stop.
    """
    check_args(args)
    process = start_process(args.device)
    lock = RunLock(args.save_dir)
    try:
        configure_backends(process.device)
        from_main(process, lambda: claim_save_dir(lock))
        return Trainer(args, process).run()
    finally:
        lock.release()
        end_process(process)
