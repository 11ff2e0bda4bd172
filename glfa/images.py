"""Images at a working size and between PIL and tensors: the one place where the commands and
the Python API resize, read and convert images. Tensors are ``(3, H, W)`` in [0, 1]."""
import os

import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision import transforms

from glfa.data import read_image_or_fail, to_rgb


def resize_to_tensor(image: Image.Image, size: int = 0, crop: bool = False, max_size: int = 0) -> Tensor:
    """An RGB image as a tensor, its shorter side resized to ``size`` (0 keeps it) and, with
    ``crop``, centre-cropped to a ``size`` square. Without ``crop``, ``max_size`` (0: none) caps
    the longer side of the resized image, which then keeps its aspect ratio with a shorter
    side below ``size``."""
    steps = []
    if size:
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


def read_image(path: str | os.PathLike, size: int = 0, crop: bool = False, draft: bool = False) -> Tensor:
    """A file the user named (unreadable: a user error) at ``size`` (see ``resize_to_tensor``).
    ``draft`` decodes JPEGs far larger than ``size`` at a reduced scale first, which is faster."""
    return resize_to_tensor(read_image_or_fail(path, (size or None) if draft else None), size, crop)


def as_tensor(image: Image.Image | Tensor) -> Tensor:
    """A PIL image (any mode) or a ``(3, H, W)`` tensor in [0, 1], as such a tensor."""
    if isinstance(image, Image.Image):
        return transforms.functional.to_tensor(to_rgb(image))
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise TypeError(f"expected a PIL image or a (3, H, W) tensor, got {getattr(image, 'shape', type(image))}")
    return image


def to_pil(image: Tensor) -> Image.Image:
    """A ``(3, H, W)`` tensor in [0, 1] as an 8-bit RGB image."""
    array = (image.detach().cpu().float().clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array, "RGB")


def thumbnail(image: Tensor, height: int = 128) -> Tensor:
    """A copy ``height`` px tall (contact sheets and previews need not hold full-size images)."""
    width = max(1, round(image.shape[-1] * height / image.shape[-2]))
    return F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)
