"""The training loop behind ``train.py``: the run's optimiser, data and files around the network
(``glfa.model``), and the loop that trains it (learning rate → batch → losses → backward → step →
log → save).

One process (``python train.py``) or one process per GPU under ``torchrun`` (``glfa.distributed``):
then the network is wrapped in DistributedDataParallel, each rank draws its own share of every
pass over the images, the logged losses are averaged over ranks, and rank 0 alone writes.

Rank 0 holds the run folder's lock while the run lasts. Every ``--save_model_interval``
iterations, at the end, on Ctrl-C or SIGTERM, and when the loss stays non-finite, it writes a
training state (weights, optimiser, grad scaler, weight average, iteration, sampler position,
settings, and the record of what produced it, also written as ``iter_N.json``) next to the
reference-format weights; ``--resume`` continues from it exactly. No RNG state needs saving: the
data order is a function of (seed, pass), each crop of (seed, rank, draw) and the contrastive
anchors of (seed, rank, iteration), so a resumed run makes the same random choices as an
uninterrupted one.

Debugging aid: with the environment variable ``TRAIN_SAMPLE_LOG=DIR`` every rank appends one
line per iteration to ``DIR/samples_rank<R>.txt``: the iteration, then the content and the
style dataset indexes of its batch.
"""
import contextlib
import itertools
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Iterator

import torch
from tensorboardX import SummaryWriter
from torch import Tensor
from torchvision.utils import save_image
from tqdm import tqdm

from glfa.checkpoint import CheckpointError, atomic_write, save_json, save_state_dict
from glfa.config import TrainConfig
from glfa.data import make_loader
from glfa.device import autocast_dtype, configure_backends
from glfa.distributed import Process, end_process, from_main, global_values, start_process, wait_for_all
from glfa.errors import UserError
from glfa.model import build_training_network, forward_backward, trained_modules, wrap_for_training
from glfa.provenance import run_record
from glfa.runfolder import RunFolder
from glfa.schedule import WeightAverage, iteration_seed, learning_rate, seed_everything
from glfa.signals import StopSignals
from glfa.trainingstate import read_resume_state, restore_training_state, write_training_state


class TrainingDiverged(UserError):
    """The loss stayed non-finite for ``--max_nonfinite`` iterations in a row, or for every step of a run."""


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

class Trainer:
    """One training run: network, optimiser, data streams, and the run folder it writes;
    ``amp_dtype`` is the autocast precision (``autocast_dtype``, checked by ``train`` first)."""

    def __init__(self, config: TrainConfig, process: Process, amp_dtype: torch.dtype | None):
        self.config, self.process = config, process
        self.folder, device = RunFolder(config.save_dir), process.device
        seed_everything(config.seed)
        resumed = from_main(process, lambda: read_resume_state(config))

        self.network = build_training_network(config, device).train()
        self.trained = trained_modules(self.network)
        self.average = WeightAverage(self.trained, config.ema) if config.ema else None
        self.record = run_record(config, config.vgg) if process.is_main else {}
        self.optimizer = torch.optim.Adam([p for p in self.network.parameters() if p.requires_grad], lr=config.lr)
        self.weights = config.loss_weights
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.iteration, self.draws, self.saved_iteration = 0, 0, -1
        self.elapsed_before = self.cpu_before = 0.0  # the wall and CPU seconds of the runs this one continues
        self.steps_taken = self.nonfinite_in_row = 0
        if resumed:
            restore_training_state(self, *resumed)
        self.model = wrap_for_training(self.network, config.compile, process)
        loader = (config.image_size, config.crop_size, config.batch_size, config.n_threads, process)
        self.content_loader, self.content_images = make_loader(config.content_dir, *loader, config.seed, self.draws)
        self.style_loader, self.style_images = (make_loader(config.style_dir, *loader, config.seed + 1, self.draws)
                                                if config.objective == "transfer" else (None, None))
        log_folder = os.environ.get("TRAIN_SAMPLE_LOG")
        self.sample_log = Path(log_folder) / f"samples_rank{process.rank}.txt" if log_folder else None

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Train up to ``--max_iter``; the exit status: 0, or 128 + signal after a graceful stop."""
        config = self.config
        if self.iteration >= config.max_iter:
            if self.process.is_main:
                print(f"already at iteration {self.iteration}, --max_iter is {config.max_iter}: nothing to do")
            return 0
        first = self.iteration + 1
        with self.progress_log() as log, StopSignals() as signals:
            for content, style in self.batches():
                self.set_learning_rate()
                torch.manual_seed(iteration_seed(config.seed, self.process.rank, self.iteration))
                losses, result = forward_backward(self.model, self.optimizer, self.scaler, content, style,
                                                  self.weights, self.amp_dtype)
                values, stop = global_values(losses, bool(signals.received) or self.out_of_time(), self.process)
                self.step_if_finite(values)
                log(values)
                timed_out = stop and not signals.received
                if self.iteration % config.save_model_interval == 0 or self.iteration == config.max_iter or timed_out:
                    self.save(content, style, result)
                if timed_out:
                    print(f"--time_limit {config.time_limit:g} minutes reached at iteration {self.iteration}; "
                          "continue with --resume auto")
                    break
                if stop:
                    return self.stop(signals.received or signal.SIGTERM)
                if self.iteration >= config.max_iter:
                    break
        if self.steps_taken == 0:
            raise TrainingDiverged(f"every step of this run was skipped (non-finite loss at iterations {first} to "
                                   f"{self.iteration}): nothing was trained; lower --lr or check the data")
        self.report_skipped_images()
        if self.process.is_main:
            seconds = time.monotonic() - self.started
            print(f"trained iterations {first} to {self.iteration} in {seconds:.1f} s: "
                  f"{1000 * seconds / (self.iteration - first + 1):.1f} ms an iteration")
        wait_for_all(self.process)
        return 0

    def out_of_time(self) -> bool:
        """Whether ``--time_limit`` minutes of this run's training have passed."""
        return bool(self.config.time_limit) and time.monotonic() - self.started > 60 * self.config.time_limit

    def batches(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        """The next iteration's content and style batches on the device (style None when reconstructing)."""
        styles = self.style_loader if self.style_loader is not None else itertools.repeat((None, None))
        for (content_index, content), (style_index, style) in zip(self.content_loader, styles):
            self.iteration += 1
            self.draws += self.config.batch_size
            self.log_samples(content_index, style_index)
            yield self.to_device(content), self.to_device(style)

    def set_learning_rate(self) -> None:
        config = self.config
        rate = learning_rate(config.lr, config.lr_decay, self.iteration - 1, config.lr_schedule, config.max_iter,
                             config.min_lr, config.warmup_iters)
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def step_if_finite(self, values: dict[str, float]) -> None:
        """The optimiser step (and the weight average's), unless a loss term is non-finite on some rank."""
        if not all(math.isfinite(v) for v in values.values()):
            self.skip_nonfinite(values)
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.average is not None:
            self.average.update()
        self.nonfinite_in_row = 0
        self.steps_taken += 1

    def skip_nonfinite(self, values: dict[str, float]) -> None:
        """Report a skipped step; after ``--max_nonfinite`` in a row, save and stop."""
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_row += 1
        limit = self.config.max_nonfinite
        if self.process.is_main:
            terms = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            tqdm.write(f"warning: non-finite loss at iteration {self.iteration} ({terms}): "
                       f"step skipped ({self.nonfinite_in_row} in a row, the run stops at {limit})", file=sys.stderr)
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
            tqdm.write(f"stopped by {signal.Signals(signum).name} at iteration {self.iteration}; training state "
                       f"saved to {path}; continue with --resume auto", file=sys.stderr)
        wait_for_all(self.process)
        return 128 + signum

    # -- logging -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def progress_log(self) -> Iterator:
        """A progress bar and, on rank 0, TensorBoard scalars: ``log(values)`` once per iteration
        records the loss terms, the learning rate and the step time."""
        is_main = self.process.is_main
        if is_main:
            self.folder.path.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(self.config.log_dir, purge_step=self.iteration + 1) if is_main else None
        progress = tqdm(initial=self.iteration, total=self.config.max_iter, desc="train", dynamic_ncols=True,
                        disable=not is_main)
        self.started = last = time.monotonic()
        self.cpu_started = time.process_time()

        def log(values: dict[str, float]) -> None:
            nonlocal last
            progress.update()
            if writer is None:
                return
            now = time.monotonic()
            for name, value in values.items():
                writer.add_scalar(f"loss/{name}", value, self.iteration)
            writer.add_scalar("lr", self.optimizer.param_groups[0]["lr"], self.iteration)
            writer.add_scalar("time/step_seconds", now - last, self.iteration)
            progress.set_postfix({k: f"{v:.3g}" for k, v in values.items()})
            last = now

        try:
            yield log
        finally:
            progress.close()
            if writer is not None:
                writer.close()

    def log_samples(self, content_index: Tensor, style_index: Tensor | None) -> None:
        """``TRAIN_SAMPLE_LOG``: this rank's dataset indexes for the iteration."""
        if self.sample_log is not None:
            self.sample_log.parent.mkdir(parents=True, exist_ok=True)
            styles = " ".join(map(str, style_index.tolist())) if style_index is not None else "-"
            with open(self.sample_log, "a") as file:
                file.write(f"{self.iteration} {' '.join(map(str, content_index.tolist()))} | {styles}\n")

    def report_skipped_images(self) -> None:
        skipped = sum(images.skipped for images in (self.content_images, self.style_images) if images is not None)
        if skipped:
            print(f"rank {self.process.rank}: skipped {skipped} unreadable image(s) during training")

    def to_device(self, images: Tensor | None) -> Tensor | None:
        if images is None:
            return None
        images = images.to(self.process.device, non_blocking=True)
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    # -- state ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """A failed save (a full disk…) ends the run with one line saying how to continue."""
        try:
            yield
        except CheckpointError as err:
            raise UserError(f"{err}; once that is fixed, continue with --resume auto") from None

    def save_state(self, written: tuple[str, ...] = ()) -> Path:
        """Write this iteration's training state and its record ``iter_N.json`` (which also names the
        files ``written``), on rank 0, once; prune old states."""
        path = self.folder.state(self.iteration)
        if self.process.is_main and self.saved_iteration != self.iteration:
            elapsed = self.elapsed_before + time.monotonic() - self.started
            cpu = self.cpu_before + time.process_time() - self.cpu_started
            metadata = {"iteration": self.iteration, "elapsed_seconds": round(elapsed, 3), "cpu_seconds": round(cpu, 3),
                        "files": [*written, path.name], **self.record}
            with self.saving():
                write_training_state(self, metadata, path)
                save_json(metadata, self.folder.record(self.iteration))
            self.folder.prune_states(self.config.keep_last, self.iteration)
            self.saved_iteration = self.iteration
        return path

    def save(self, content: Tensor, style: Tensor | None, result: Tensor) -> None:
        """Reference-format weights (and the averaged ones), a grid, a training state and its record (rank 0)."""
        if not self.process.is_main:
            return
        with self.saving():
            written = save_weights(self.folder, {name: m.state_dict() for name, m in self.trained.items()},
                                   self.config.transform, self.iteration)
            if self.average is not None:
                written += save_weights(self.folder.averaged, self.average.state_dict(), self.config.transform,
                                        self.iteration)
            save_grid(content, style, result, self.folder.grid(self.iteration))
        names = [str(path.relative_to(self.folder.path)) for path in (*written, self.folder.grid(self.iteration))]
        path = self.save_state(tuple(names))
        tqdm.write(f"iteration {self.iteration}: saved weights, grid and {path.name} "
                   f"(record: {self.folder.record(self.iteration).name})")


def save_weights(folder: RunFolder, weights: dict[str, dict[str, Tensor]], kind: str, iteration: int) -> list[Path]:
    """The reference-format weights: ``decoder_iter_N.pth.tar`` and, when ``weights`` holds a
    transform, ``<kind>_iter_N.pth.tar``; returns the files written."""
    paths = {"decoder": folder.decoder(iteration), "transform": folder.transform(iteration, kind)}
    for part, state in weights.items():
        save_state_dict(state, paths[part])
    return [paths[part] for part in weights]


def save_grid(content: Tensor, style: Tensor | None, result: Tensor, path: Path) -> None:
    """Rows of content, style (none when reconstructing) and result images for a quick look at progress."""
    rows = torch.cat([image for image in (content, style, result.float().clamp(0, 1)) if image is not None]).cpu()
    atomic_write(path, lambda file: save_image(rows, file, nrow=content.shape[0], format="png"))


def train(config: TrainConfig) -> int:
    """Train for ``config.max_iter`` iterations (continuing a training state with ``config.resume``).

    Returns the exit status: 0 when done, 128 + signal number after a graceful stop.
    """
    process = start_process(config.device)
    folder = RunFolder(config.save_dir)
    lock = folder.lock()
    try:
        amp_dtype = autocast_dtype(config.amp, process.device)     # refused before anything is loaded or written
        configure_backends(process.device)
        from_main(process, lambda: folder.claim(lock))
        return Trainer(config, process, amp_dtype).run()
    finally:
        lock.release()
        end_process(process)
