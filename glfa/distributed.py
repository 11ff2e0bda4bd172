"""Processes of a run: one, or one per GPU under ``torchrun``. Each rank trains on its own share of
the data; rank 0 alone reads and writes files, and what it finds is sent to the others."""
import os
import zlib
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from glfa.device import resolve_device
from glfa.errors import UserError

Result = TypeVar("Result")


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


def check_same_listing(root: os.PathLike, paths: list, process: Process) -> None:
    """Ranks split one sorted file list by index, so every rank must list the same files."""
    if not process.distributed:
        return
    mine = (len(paths), zlib.crc32("\n".join(map(str, paths)).encode()))
    everyone: list = [None] * process.world_size
    dist.all_gather_object(everyone, mine)
    if any(listing != mine for listing in everyone):
        raise UserError(f"the ranks see different files in {root} ({sorted({n for n, _ in everyone})} "
                        "files); every node needs the same folder")


def global_values(losses: dict[str, Tensor], stop: bool, process: Process) -> tuple[dict[str, float], bool]:
    """The loss terms averaged over ranks, and whether any rank was asked to stop (one all-reduce)."""
    device = losses["total"].device
    numbers = torch.stack([*(v.detach().float() for v in losses.values()), torch.tensor(float(stop), device=device)])
    if process.distributed:
        dist.all_reduce(numbers)
    *sums, stops = numbers.tolist()
    return {name: total / process.world_size for name, total in zip(losses, sums)}, stops > 0
