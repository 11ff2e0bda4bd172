"""Edge-aware smoothing of a result (``--smooth``): a guided filter with the content photo as guide,
as FastPhotoStyle and PCA-KD finish their results. It removes the decoder's small artifacts and
raises the structural similarity at a small cost in style."""
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from function import guided_filter
from glfa.tiles import spans

# The lowest --smooth_eps: below it the filter's 3×3 determinants (about eps³ in flat regions)
# leave fp32's range, and the output is the noisy result itself anyway.
MIN_SMOOTH_EPS = 1e-6
# The highest: from about 1 up the filter is already a plain box blur of the result, and far
# beyond (about 1e19) its fp32 determinants overflow into a black image.
MAX_SMOOTH_EPS = 1e3


@dataclass(frozen=True)
class Smoothing:
    """Edge-aware smoothing of a result by a guided filter (He et al.) with the content photo as
    guide. ``radius`` is the window's half-width in pixels of the result (fixed, not scaled with
    the image, so tiles agree with the whole); ``eps`` (on [0, 1] intensities, squared) is the
    guide's local variance below which the result is flattened: larger smooths more.
    The defaults were first chosen on the eight test pairs and re-checked on validation photos
    (docs/stylizing.md, "Smoothing")."""

    radius: int = 8
    eps: float = 1e-3

    def __post_init__(self):
        if isinstance(self.radius, bool) or not isinstance(self.radius, int) or self.radius < 1:
            raise ValueError(f"Smoothing radius must be a positive integer, got {self.radius!r}")
        if not (isinstance(self.eps, (int, float)) and not isinstance(self.eps, bool)
                and MIN_SMOOTH_EPS <= self.eps <= MAX_SMOOTH_EPS):
            raise ValueError(f"Smoothing eps must be a number from {MIN_SMOOTH_EPS:g} to {MAX_SMOOTH_EPS:g}, "
                             f"got {self.eps!r}")

    @property
    def reach(self) -> int:
        """How far, in pixels, an output pixel depends on the inputs: a box filter of box filters."""
        return 2 * self.radius

    def __call__(self, guide: Tensor, result: Tensor) -> Tensor:
        """``result`` ``(N, C, H, W)`` smoothed with ``guide`` ``(N, 3, H, W)``, in fp32, clamped to [0, 1]."""
        return guided_filter(guide, result, self.radius, self.eps).clamp(0, 1)


def smoothing_option(smooth: "Smoothing | bool | None") -> Smoothing | None:
    """A ``smooth=`` argument as a ``Smoothing`` or None: True is the default ``Smoothing()``,
    False and None are none."""
    if smooth is None or smooth is False:
        return None
    if smooth is True:
        return Smoothing()
    if isinstance(smooth, Smoothing):
        return smooth
    raise TypeError(f"smooth must be a Smoothing, True, False or None, got {type(smooth).__name__}")


def smooth_tiled(guide: Tensor, result: Tensor, smoothing: Smoothing, tile: int,
                 progress: tqdm | None = None) -> Tensor:
    """``smoothing(guide, result)`` of ``(1, C, H, W)`` images computed in tiles of at most
    ``tile`` px (0: whole), each grown by the filter's reach and cropped back, so the tiles
    equal the whole. ``progress`` counts the tiles."""
    if not tile:
        return smoothing(guide, result)
    height, width = result.shape[-2:]
    smoothed = torch.empty_like(result, dtype=torch.float32)
    for y0, y1, hy0, hy1 in spans(height, tile, smoothing.reach):
        for x0, x1, hx0, hx1 in spans(width, tile, smoothing.reach):
            part = smoothing(guide[..., hy0:hy1, hx0:hx1], result[..., hy0:hy1, hx0:hx1])
            smoothed[..., y0:y1, x0:x1] = part[..., y0 - hy0:y1 - hy0, x0 - hx0:x1 - hx0]
            if progress is not None:
                progress.update()
    return smoothed
