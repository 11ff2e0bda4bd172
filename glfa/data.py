"""The training data: images of a folder, each resized to a square and randomly cropped, with
unreadable files skipped, and the seeded, rank-aware loaders that feed the training loop.

Training folders can be large and messy: images that cannot be decoded are skipped (each
reported once, counted in shared memory across loader workers) and replaced by the next
readable one. Each crop depends only on ``(seed, rank, draw)``, whichever worker decodes it.
"""
import os
import sys
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from glfa.distributed import Process, check_same_listing
from glfa.errors import UserError
from glfa.images import UnreadableImage, list_images, load_rgb
from glfa.signals import ignore_stop_signals
from sampler import InfiniteSampler, SeededSampler


def training_transform(image_size: int = 512, crop_size: int = 256) -> Callable:
    """The reference's training transform: resize to a square, random crop, to tensor."""
    return transforms.Compose([
        transforms.Resize((image_size, image_size)),
        transforms.RandomCrop(crop_size),
        transforms.ToTensor(),
    ])


class ImageFolderDataset(Dataset):
    """The images under a folder, each transformed; unreadable files are skipped.

    A file that fails to decode is reported once (a warning on stderr) and marked in a
    shared-memory mask, so every loader worker skips it from then on; the next readable
    file stands in for it. ``skipped`` counts them.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable, draft_size: int | None = None):
        self.root = Path(root)
        self.paths = list_images(root)
        if not self.paths:
            raise UserError(f"no image files in {root}")
        self.transform = transform
        self.draft_size = draft_size
        self.bad = torch.zeros(len(self.paths), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def skipped(self) -> int:
        return int(self.bad.sum())

    def check_readable(self) -> None:
        """Stop before training unless at least one image decodes (scans until one does)."""
        for index in range(len(self.paths)):
            if self._try_load(index) is not None:
                return
        raise UserError(f"none of the {len(self.paths)} image files in {self.root} can be read")

    def _try_load(self, index: int) -> Image.Image | None:
        if self.bad[index]:
            return None
        try:
            return load_rgb(self.paths[index], self.draft_size)
        except UnreadableImage as err:
            if not self.bad[index]:
                self.bad[index] = True
                print(f"warning: skipping unreadable image {err}", file=sys.stderr)
            return None

    def __getitem__(self, index: int) -> torch.Tensor:
        for step in range(len(self.paths)):
            image = self._try_load((index + step) % len(self.paths))
            if image is not None:
                return self.transform(image)
        raise RuntimeError(f"no readable image left in {self.root}")


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


def make_loader(root: str | os.PathLike, image_size: int, crop_size: int, batch_size: int, workers: int,
                process: Process, seed: int, start: int) -> tuple[DataLoader, ImageFolderDataset]:
    """An endless loader of ``(indexes, crops)`` batches from ``root`` for this rank, starting
    after its first ``start`` draws; stops early if nothing there is readable."""
    images = ImageFolderDataset(root, training_transform(image_size, crop_size),
                                draft_size=image_size)
    images.check_readable()
    check_same_listing(images.root, images.paths, process)
    sampler = SeededSampler(InfiniteSampler(len(images), seed, process.rank, process.world_size, start))
    loader = DataLoader(SeededCrops(images), batch_size=batch_size, sampler=sampler,
                        num_workers=workers, pin_memory=process.device.type == "cuda",
                        persistent_workers=workers > 0, drop_last=True,
                        worker_init_fn=ignore_stop_signals)
    return loader, images
