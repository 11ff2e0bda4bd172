"""The training loop behind ``train.py``: data, model, optimiser, schedule, logging, saving.

One process (``python train.py``) or one process per GPU under ``torchrun``: then the
network is wrapped in DistributedDataParallel (gradients averaged over ranks), each rank draws
its own share of every pass over the images, the logged losses are averaged over ranks, and
rank 0 alone writes logs, grids and checkpoints.

Every ``--save_model_interval`` iterations, at the end, on Ctrl-C or SIGTERM, and when the loss
stays non-finite, rank 0 writes a training state ``training_state_iter_N.pth`` (weights,
optimiser, grad scaler, iteration, sampler position, arguments) next to the reference-format
weights; ``--resume`` continues from it exactly. No RNG state needs saving: the data order is a
function of (seed, pass), each crop of (seed, rank, draw) and the contrastive anchors of
(seed, rank, iteration), so a resumed run makes the same random choices as an uninterrupted one.

Debugging aid: with the environment variable ``TRAIN_SAMPLE_LOG=DIR`` every rank appends one
line per iteration to ``DIR/samples_rank<R>.txt``: the iteration, then the content and the
style dataset indexes of its batch.
"""
import argparse
import math
import os
import random
import re
import signal
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tensorboardX import SummaryWriter
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torchvision.utils import save_image
from tqdm import tqdm

from glfa.checkpoint import load_encoder, load_training_state, save_state_dict, save_training_state
from glfa.cli import UserError, autocast, autocast_dtype, configure_backends, resolve_device
from glfa.data import ImageFolderDataset, training_transform
from net import LossWeights, StyleTransferNet, build_network, parse_mode, total_loss
from sampler import ITERATION_STREAM, InfiniteSampler, SeededSampler, mixed_seed

STATE_NAME = re.compile(r"training_state_iter_(\d+)\.pth")
# Arguments a training state must share with the run resuming it (they fix what is trained).
RESUME_MUST_MATCH = ("training_mode", "transform", "contrastive", "num_l")
# Arguments that may change on resume; a change is pointed out.
RESUME_MAY_CHANGE = ("content_dir", "style_dir", "image_size", "crop_size", "lr", "lr_decay", "batch_size",
                     "content_weight", "style_weight", "wce_weight", "kl_weight", "tau", "num_s", "seed", "amp")


class TrainingDiverged(UserError):
    """The loss stayed non-finite for ``--max_nonfinite`` iterations in a row."""


# --------------------------------------------------------------------------------------------
# Schedule, losses, seeds
# --------------------------------------------------------------------------------------------

def learning_rate(base_lr: float, lr_decay: float, iteration: int) -> float:
    """The reference schedule: ``lr / (1 + lr_decay · iteration)`` (``iteration`` counts from 0)."""
    return base_lr / (1.0 + lr_decay * iteration)


def loss_weights(args: argparse.Namespace) -> LossWeights:
    """The objective's weights from ``--content_weight``, ``--style_weight``, ``--wce_weight``, ``--kl_weight``."""
    return LossWeights(args.content_weight, args.style_weight, args.wce_weight, args.kl_weight)


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
                            encoder=load_encoder(args.vgg, args.training_mode))
    if network.contrastive is not None:
        heads = network.contrastive.heads
        heads[:len(heads) - args.num_l].requires_grad_(False)
    network = network.to(device)
    if args.channels_last:
        network = network.to(memory_format=torch.channels_last)
    return network


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

def save_checkpoints(network: StyleTransferNet, save_dir: Path, transform: str, iteration: int) -> None:
    """The reference-format weights: ``decoder_iter_N.pth.tar`` and ``<transform>_iter_N.pth.tar``."""
    save_state_dict(network.decoder, save_dir / f"decoder_iter_{iteration}.pth.tar")
    save_state_dict(network.transform, save_dir / f"{transform}_iter_{iteration}.pth.tar")


def save_grid(content: Tensor, style: Tensor, result: Tensor, path: Path) -> None:
    """Rows of content, style and result images for a quick look at progress."""
    rows = torch.cat([content, style, result.float().clamp(0, 1)]).cpu()
    save_image(rows, path, nrow=content.shape[0])


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


def _cpu(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def check_resume_args(saved: dict, args: argparse.Namespace, path: Path) -> None:
    """Refuse a state trained with another model; point out settings that changed."""
    clashes = [f"--{key} {saved.get(key)} (now {getattr(args, key)})"
               for key in RESUME_MUST_MATCH if saved.get(key) != getattr(args, key)]
    if clashes:
        raise UserError(f"cannot resume from {path}: it was trained with {', '.join(clashes)}; "
                        "use the same flags or a new --save_dir")
    for key in RESUME_MAY_CHANGE:
        if key in saved and saved[key] != getattr(args, key):
            print(f"note: resuming with --{key} {getattr(args, key)} (the saved run used {saved[key]})")


def read_resume_state(args: argparse.Namespace) -> dict | None:
    """The training state ``--resume`` names (``auto``: the newest in ``--save_dir``, if any)."""
    if not args.resume:
        earlier = training_states(Path(args.save_dir))
        if earlier:
            print(f"note: {args.save_dir} holds training states of an earlier run (up to iteration "
                  f"{earlier[-1][0]}); this run starts afresh and overwrites them as it reaches them")
        return None
    if args.resume == "auto":
        states = training_states(Path(args.save_dir))
        if not states:
            print(f"no training state in {args.save_dir}: starting from scratch")
            return None
        path = states[-1][1]
    else:
        path = Path(args.resume)
    state = load_training_state(path)
    check_resume_args(state["args"], args, path)
    print(f"resuming from {path} at iteration {state['iteration']}")
    return state


def load_resume_state(args: argparse.Namespace, process: Process) -> dict | None:
    """``read_resume_state`` on rank 0, sent to every rank (nodes need not share a disk);
    an error stops every rank with the same message."""
    state, error = None, None
    if process.is_main:
        try:
            state = read_resume_state(args)
        except UserError as err:
            error = str(err)
    if process.distributed:
        box = [state, error]
        dist.broadcast_object_list(box, src=0)
        state, error = box
    if error:
        raise UserError(error)
    return state


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
        resumed = load_resume_state(args, process)

        self.network = build_training_network(args, device)
        self.network.train()
        self.optimizer = torch.optim.Adam(trainable_parameters(self.network), lr=args.lr)
        self.weights = loss_weights(args)
        self.amp_dtype = autocast_dtype(args.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.iteration, self.draws, self.saved_iteration = 0, 0, -1
        if resumed:
            self.restore(resumed)
        self.model = wrap_for_training(self.network, args, process)

        self.content_loader, self.content_images = make_loader(args.content_dir, args, process, args.seed, self.draws)
        self.style_loader, self.style_images = make_loader(args.style_dir, args, process, args.seed + 1, self.draws)
        self.nonfinite_in_row = 0
        self.sample_log = None
        if os.environ.get("TRAIN_SAMPLE_LOG"):
            Path(os.environ["TRAIN_SAMPLE_LOG"]).mkdir(parents=True, exist_ok=True)
            self.sample_log = Path(os.environ["TRAIN_SAMPLE_LOG"]) / f"samples_rank{process.rank}.txt"

    # -- state ---------------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything a resumed run needs, as tensors and plain values (``weights_only``-safe)."""
        contrastive = self.network.contrastive
        return {
            "iteration": self.iteration,
            "draws": self.draws,  # images each rank has taken from each loader
            "world_size": self.process.world_size,
            "decoder": _cpu(self.network.decoder),
            "transform": _cpu(self.network.transform),
            "heads": _cpu(contrastive) if contrastive is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "args": dict(vars(self.args)),
        }

    def restore(self, state: dict) -> None:
        self.network.decoder.load_state_dict(state["decoder"])
        self.network.transform.load_state_dict(state["transform"])
        if self.network.contrastive is not None:
            self.network.contrastive.load_state_dict(state["heads"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"] and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.iteration, self.draws = state["iteration"], state["draws"]
        if state["world_size"] != self.process.world_size and self.process.is_main:
            print(f"note: resuming with {self.process.world_size} process(es) instead of {state['world_size']}: "
                  "the data order is not the one the saved run would have followed")

    def save_state(self) -> Path:
        """Write this iteration's training state (rank 0, once) and prune old ones."""
        path = self.save_dir / f"training_state_iter_{self.iteration}.pth"
        if self.process.is_main and self.saved_iteration != self.iteration:
            save_training_state(self.state(), path)
            prune_training_states(self.save_dir, self.args.keep_last, self.iteration)
            self.saved_iteration = self.iteration
        return path

    def save(self, content: Tensor, style: Tensor, result: Tensor) -> None:
        """Reference-format weights, a grid and a training state (rank 0)."""
        if self.process.is_main:
            save_checkpoints(self.network, self.save_dir, self.args.transform, self.iteration)
            save_grid(content, style, result, self.save_dir / f"grid_iter_{self.iteration}.png")
            path = self.save_state()
            tqdm.write(f"iteration {self.iteration}: saved weights, grid and {path.name}")

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
        batches = zip(self.content_loader, self.style_loader)
        try:
            with StopSignals() as signals:
                for (content_index, content), (style_index, style) in batches:
                    self.iteration += 1
                    self.draws += args.batch_size
                    self.log_samples(content_index, style_index)
                    content, style = self.to_device(content), self.to_device(style)
                    values, result, stop = self.step(content, style, bool(signals.received))
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
        self.report_skipped_images()
        wait_for_all(process)
        return 0

    def step(self, content: Tensor, style: Tensor, stop_requested: bool) -> tuple[dict[str, float], Tensor, bool]:
        """One iteration: schedule, seeded forward/backward, and the optimiser step unless a
        loss term is non-finite on some rank. Returns the rank-averaged terms, the stylised
        batch and whether any rank was asked to stop."""
        args = self.args
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(args.lr, args.lr_decay, self.iteration - 1)
        torch.manual_seed(iteration_seed(args.seed, self.process.rank, self.iteration))
        losses, result = train_step(self.model, self.optimizer, self.scaler, content, style, self.weights,
                                    self.amp_dtype)
        values, stop = global_values(losses, stop_requested, self.process)
        if all_finite(values):
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.nonfinite_in_row = 0
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

    def to_device(self, images: Tensor) -> Tensor:
        images = images.to(self.process.device, non_blocking=True)
        if self.args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def log(self, writer: SummaryWriter, progress: tqdm, values: dict[str, float]) -> None:
        for name, value in values.items():
            writer.add_scalar(f"loss/{name}", value, self.iteration)
        writer.add_scalar("lr", self.optimizer.param_groups[0]["lr"], self.iteration)
        progress.set_postfix({k: f"{v:.3g}" for k, v in values.items()})

    def log_samples(self, content_index: Tensor, style_index: Tensor) -> None:
        """``TRAIN_SAMPLE_LOG``: this rank's dataset indexes for the iteration."""
        if self.sample_log is not None:
            with open(self.sample_log, "a") as file:
                file.write(f"{self.iteration} {' '.join(map(str, content_index.tolist()))} | "
                           f"{' '.join(map(str, style_index.tolist()))}\n")

    def report_skipped_images(self) -> None:
        skipped = self.content_images.skipped + self.style_images.skipped
        if skipped:
            print(f"rank {self.process.rank}: skipped {skipped} unreadable image(s) during training")


def train(args: argparse.Namespace) -> int:
    """Train for ``args.max_iter`` iterations (continuing a training state with ``args.resume``).

    Returns the exit status: 0 when done, 128 + signal number after a graceful stop.
    """
    check_args(args)
    process = start_process(args.device)
    try:
        configure_backends(process.device)
        return Trainer(args, process).run()
    finally:
        end_process(process)
