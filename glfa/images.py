"""Images in and out: listing image files, decoding any file to RGB, resizing to a working size,
and converting between PIL images and tensors. The one place where the commands, the training
data and the Python API read and convert images. Tensors are ``(3, H, W)`` in [0, 1].

Listing is one recursive, sorted walk; files whose extension is not an image's are ignored.
Greyscale, palette, RGBA, CMYK and 16-bit images become 8-bit RGB; EXIF orientation is honoured.
"""
import os
import sys
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps
from torch import Tensor
from torchvision import transforms

from glfa.errors import UserError

# What the Python API takes as an image, and how far a float tensor may stray outside [0, 1]
# (rounding in a conversion; clamped back): well under an 8-bit grey level.
EXPECTED_INPUT = "a PIL image or a (3, H, W) tensor of floats in [0, 1] (or uint8 in 0-255)"
RANGE_TOLERANCE = 1e-3
# The EXIF tag that says how a stored picture turns upright (ImageOps.exif_transpose applies it).
ORIENTATION_TAG = 0x0112
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


def resize_to_tensor(image: Image.Image, size: int = 0, crop: bool = False, max_size: int = 0,
                     long_side: int = 0) -> Tensor:
    """An RGB image as a tensor, its shorter side resized to ``size`` (0 keeps it) and, with
    ``crop``, centre-cropped to a ``size`` square. Without ``crop``, ``max_size`` (0: none) caps
    the longer side of the resized image, which then keeps its aspect ratio with a shorter
    side below ``size``. ``long_side`` instead resizes the longer side to exactly that."""
    steps = []
    if long_side:
        width, height = image.size
        scale = long_side / max(width, height)
        steps.append(transforms.Resize((max(1, round(height * scale)), max(1, round(width * scale)))))
    elif size:
        width, height = resized_size(image, size)
        if max_size and not crop and max(width, height) > max_size:
            scale = max_size / max(width, height)
            steps.append(transforms.Resize((max(1, round(height * scale)), max(1, round(width * scale)))))
        else:
            steps.append(transforms.Resize(size))
        if crop:
            steps.append(transforms.CenterCrop(size))
    return transforms.Compose(steps + [transforms.ToTensor()])(image)


def resized_size(image: Image.Image, size: int) -> tuple[int, int]:
    """``(width, height)`` of ``image`` once its shorter side is ``size`` (torchvision's rounding)."""
    width, height = image.size
    return (size, int(size * height / width)) if width <= height else (int(size * width / height), size)


def read_image(path: str | os.PathLike, size: int = 0, crop: bool = False, draft: bool = False,
               long_side: int = 0) -> Tensor:
    """A file the user named (unreadable: a user error) at ``size`` or ``long_side`` (see
    ``resize_to_tensor``). ``draft`` decodes JPEGs far larger than ``size`` at a reduced scale
    first, which is faster."""
    return resize_to_tensor(read_image_or_fail(path, (size or None) if draft else None), size, crop,
                            long_side=long_side)


def as_tensor(image: Image.Image | Tensor, what: str = "the image") -> Tensor:
    """An image given to the Python API as a float32 ``(3, H, W)`` tensor in [0, 1].

    A PIL image (any mode) is turned upright by its EXIF orientation, as the commands read files.
    A tensor must be ``(3, H, W)``: uint8 is read as 0-255, float16, bfloat16 and float64 become
    float32; any other dtype is a ``TypeError``. NaN or infinite values, and floats outside
    [0, 1] by more than ``RANGE_TOLERANCE`` (a 0-255 or a normalised image), are a ``ValueError``
    naming ``what``: such input would give a wrong image, not an error, further on.
    """
    if isinstance(image, Image.Image):
        return transforms.functional.to_tensor(to_rgb(ImageOps.exif_transpose(image)))
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise TypeError(f"{what}: expected {EXPECTED_INPUT}, got {_describe(image)}")
    if image.dtype == torch.uint8:
        return image.float() / 255
    if not image.is_floating_point():
        raise TypeError(f"{what}: expected {EXPECTED_INPUT}, got a {str(image.dtype).removeprefix('torch.')} tensor")
    image = image.float()
    if image.numel() == 0:
        return image                                # too small for any mode: the size check says so
    if not torch.isfinite(image).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    low, high = (value.item() for value in torch.aminmax(image))
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(f"{what} holds values from {low:.4g} to {high:.4g}; expected floats in [0, 1] "
                         "(divide a 0-255 image by 255; undo a mean/std normalisation)")
    return image.clamp(0, 1)


def _describe(value: object) -> str:
    """What a value that is not an image tensor is, for an error message."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def to_pil(image: Tensor) -> Image.Image:
    """A ``(3, H, W)`` tensor in [0, 1] as an 8-bit RGB image."""
    array = (image.detach().cpu().float().clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array, "RGB")


# zlib level of the PNGs written: a quarter of the default level 6's time for a file about a
# fifth larger (a 1080p video frame: about 0.2 s instead of 0.8 s on one CPU core).
PNG_LEVEL = 1


def save_image_file(image: Tensor, path: str | os.PathLike) -> None:
    """Write a ``(3, H, W)`` image in [0, 1] to ``path`` (the format from its extension; PNGs at
    ``PNG_LEVEL``, other formats at Pillow's defaults). A write that fails (a full disk often
    fails only as the file is closed) removes its partial file, so no truncated image is left
    looking like a result; an ``OSError`` is raised naming ``path``."""
    png = Path(path).suffix.lower() == ".png"
    try:
        to_pil(image).save(path, **({"compress_level": PNG_LEVEL} if png else {}))
    except OSError as err:
        Path(path).unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror or str(err), err.filename or str(path)) from None
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


class InputFiles:
    """The files a command reads, known by identity (device and inode), so that no output is
    written over one, whatever spelling of its path the output has (``..``, links, letter case)."""

    def __init__(self, paths: Iterable[str | os.PathLike | None]):
        """``paths``: the files read (None, a map an image lacks, is passed over)."""
        self.identities = {identity for path in paths if path is not None
                           and (identity := _file_identity(path)) is not None}

    def check(self, outputs: Iterable[str | os.PathLike], flag: str = "--output") -> None:
        """A ``UserError`` naming the first of ``outputs`` that is one of the files read."""
        for output in outputs:
            if _file_identity(output) in self.identities:
                raise UserError(f"{output} is one of the files this run reads: writing a result there would "
                                f"destroy it; choose another {flag}")


def _file_identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(device, inode)`` of an existing file (links followed), None for a missing one."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def thumbnail(image: Tensor, height: int = 128) -> Tensor:
    """A copy ``height`` px tall (contact sheets and previews need not hold full-size images)."""
    width = max(1, round(image.shape[-1] * height / image.shape[-2]))
    return F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)
