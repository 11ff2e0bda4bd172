"""Reading images: recursive listing, robust decoding to RGB, and the training dataset.

Training folders can be large and messy. Listing is one recursive, sorted walk; files whose
extension is not an image's are ignored; images that cannot be decoded are skipped (each
reported once, counted in shared memory across loader workers) and replaced by the next
readable one. Greyscale, palette, RGBA, CMYK and 16-bit images become 8-bit RGB.
"""
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps
from torch.utils.data import Dataset
from torchvision import transforms

from glfa.cli import UserError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
ImageFile.LOAD_TRUNCATED_IMAGES = False


class UnreadableImage(Exception):
    """An image file that cannot be decoded."""


def list_images(root: str | os.PathLike) -> list[Path]:
    """Every file with an image extension under ``root``, recursively, sorted.

    One ``os.scandir`` walk, so a hundred thousand files list in well under a second. Linked
    folders are followed, each real folder once (a link loop cannot recurse forever); a
    sub-folder that cannot be opened, or an entry that cannot be examined (a link to itself), is
    reported and left out.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"folder not found: {root}")
    if root.is_file():
        return [root] if root.suffix.lower() in IMAGE_EXTENSIONS else []
    found: list[str] = []
    pending = [str(root)]
    seen = {_folder_id(root.stat())}
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)  # the same folder wins every run
        except OSError as err:
            print(f"warning: skipping folder {folder}: {err.strerror or err}", file=sys.stderr)
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=True):
                    folder_id = _folder_id(entry.stat(follow_symlinks=True))
                    if folder_id not in seen:
                        seen.add(folder_id)
                        pending.append(entry.path)
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(entry.path)
            except OSError as err:  # a link to itself, or an entry removed meanwhile
                print(f"warning: skipping {entry.path}: {err.strerror or err}", file=sys.stderr)
    return [Path(p) for p in sorted(found)]


def _folder_id(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB: 16-bit and float greyscale are rescaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_rgb(path: str | os.PathLike, draft_size: int | None = None) -> Image.Image:
    """Decode an image file fully as RGB, honouring EXIF orientation.

    ``draft_size`` lets JPEG decoding downscale by 1/2, 1/4 or 1/8 while keeping both sides
    at least that size, which makes large photos far cheaper to read. Raises
    ``UnreadableImage`` for anything that is not a complete, decodable image.
    """
    try:
        with Image.open(path) as image:
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UnreadableImage(f"{path}: {err}") from None


def read_image_or_fail(path: str | os.PathLike, draft_size: int | None = None) -> Image.Image:
    """``load_rgb`` for files the user named: an unreadable one is a user error."""
    if Path(path).is_dir():
        raise UserError(f"{path} is a folder, not an image")
    if not Path(path).is_file():
        raise UserError(f"image not found: {path}")
    try:
        return load_rgb(path, draft_size)
    except UnreadableImage as err:
        raise UserError(f"cannot read image {err}") from None


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
