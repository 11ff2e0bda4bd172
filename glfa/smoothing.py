"""The guided-filter finish of a result (``--smooth``, on by default in photo mode), with the content
photo as guide, as FastPhotoStyle and PCA-KD finish theirs: exact at the result's size, tile by
tile, or fitted at a working size and applied to the full-size photo (the fast guided filter);
then its tone step, which widens a washed-out result's large-scale tonal range to the style's."""
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from function import apply_affine, box_filter, guided_filter, guided_filter_coefficients, luma
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
    guide's local variance below which the result is flattened: larger smooths more. ``tone``:
    then the tone step (``tone_offset``), which lifts the veil of a result whose tonal range is
    narrower than the style's.
    The defaults were first chosen on the eight test pairs and re-checked on validation photos
    (docs/stylizing.md, "Smoothing"); the tone step was chosen on validation photos."""

    radius: int = 8
    eps: float = 1e-3
    tone: bool = True

    def __post_init__(self):
        if isinstance(self.radius, bool) or not isinstance(self.radius, int) or self.radius < 1:
            raise ValueError(f"Smoothing radius must be a positive integer, got {self.radius!r}")
        if not (isinstance(self.eps, (int, float)) and not isinstance(self.eps, bool)
                and MIN_SMOOTH_EPS <= self.eps <= MAX_SMOOTH_EPS):
            raise ValueError(f"Smoothing eps must be a number from {MIN_SMOOTH_EPS:g} to {MAX_SMOOTH_EPS:g}, "
                             f"got {self.eps!r}")
        if not isinstance(self.tone, bool):
            raise ValueError(f"Smoothing tone must be True or False, got {self.tone!r}")

    @property
    def reach(self) -> int:
        """How far, in pixels, an output pixel depends on the inputs: a box filter of box filters."""
        return 2 * self.radius

    def __call__(self, guide: Tensor, result: Tensor) -> Tensor:
        """``result`` ``(N, C, H, W)`` smoothed with ``guide`` ``(N, 3, H, W)``, in fp32, clamped to [0, 1]."""
        return guided_filter(guide, result, self.radius, self.eps).clamp(0, 1)

    def models(self, guide: Tensor, result: Tensor) -> Tensor:
        """The filter's per-pixel affine colour models of ``result`` on ``guide``,
        ``(N, 4, C, H, W)`` (``function.guided_filter_coefficients``)."""
        return guided_filter_coefficients(guide, result, self.radius, self.eps)


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
    return _tiled(smoothing, guide, result, smoothing.reach, tile, progress)


def models_tiled(guide: Tensor, result: Tensor, smoothing: Smoothing, tile: int,
                 progress: tqdm | None = None) -> Tensor:
    """``smoothing.models(guide, result)`` of ``(1, C, H, W)`` images, in tiles like ``smooth_tiled``."""
    if not tile:
        return smoothing.models(guide, result)
    return _tiled(lambda g, r: smoothing.models(g, r).flatten(1, 2), guide, result, smoothing.reach, tile,
                  progress).view(1, guide.shape[1] + 1, result.shape[1], *result.shape[-2:])


def _tiled(fn, guide: Tensor, result: Tensor, halo: int, tile: int, progress: tqdm | None) -> Tensor:
    """``fn(guide, result)`` (a map whose pixels depend on inputs at most ``halo`` away) in tiles."""
    height, width = result.shape[-2:]
    out = None
    for y0, y1, hy0, hy1 in spans(height, tile, halo):
        for x0, x1, hx0, hx1 in spans(width, tile, halo):
            part = fn(guide[..., hy0:hy1, hx0:hx1], result[..., hy0:hy1, hx0:hx1])
            if out is None:
                out = part.new_empty(*part.shape[:-2], height, width)
            out[..., y0:y1, x0:x1] = part[..., y0 - hy0:y1 - hy0, x0 - hx0:x1 - hx0]
            if progress is not None:
                progress.update()
    return out


# The smallest working size that is not 0 (the default is ``StylizeOptions.working_size``).
MIN_WORKING_SIZE = 64


def check_working_size(working_size: int) -> int:
    """``working_size``: 0 (the network at the photo's own size) or at least ``MIN_WORKING_SIZE`` px."""
    if isinstance(working_size, bool) or not isinstance(working_size, numbers.Integral):
        raise TypeError(f"working_size must be an integer, got {type(working_size).__name__}")
    if working_size != 0 and working_size < MIN_WORKING_SIZE:
        raise ValueError(f"working_size must be 0 (the photo's own size) or at least {MIN_WORKING_SIZE} px, "
                         f"got {working_size}")
    return int(working_size)


def working_copy(content: Tensor, working_size: int) -> Tensor:
    """A ``(1, 3, H, W)`` photo scaled down (antialiased) so its long side is ``working_size``;
    the photo itself when it is no larger (never enlarged)."""
    height, width = content.shape[-2:]
    if max(height, width) <= working_size:
        return content
    scale = working_size / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(content, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


# Rows of the full-size photo finished at a time: the upsampled models of a strip take
# 4 × 3 × STRIP_ROWS × width floats (about 25 MB for a 4000-px-wide photo).
STRIP_ROWS = 128


def bilinear_taps(size_in: int, size_out: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """For each of ``size_out`` output positions, the two input positions it interpolates and the
    weight of the second: bilinear upsampling with half-pixel centres, as ``F.interpolate(...,
    mode="bilinear", align_corners=False)`` computes it (positions before the first centre clamp to it)."""
    source = ((torch.arange(size_out, dtype=torch.float64, device=device) + 0.5) * (size_in / size_out)
              - 0.5).clamp_min(0)
    first = source.floor().long().clamp_max(size_in - 1)
    second = (first + 1).clamp_max(size_in - 1)
    return first, second, (source - first).float()


def apply_upsampled(models: Tensor, guide: Tensor, strip_rows: int = STRIP_ROWS) -> Tensor:
    """The fast guided filter's last step (He and Sun, 2015): affine colour models ``(1, G + 1, C,
    h, w)`` fitted on a small copy of the photo, upsampled bilinearly to the full-size ``guide``
    ``(1, G, H, W)`` and applied to its pixels; ``(1, C, H, W)`` in fp32, clamped to [0, 1].

    Every output pixel is an affine function of its own guide pixel, so nothing of the small
    result but its colour models reaches the full size. The work runs in strips of
    ``strip_rows`` rows, so memory beyond the input and the output stays small at any size; the
    strips equal the whole (``F.interpolate`` then ``apply_affine``)."""
    _, terms, channels, height, width = models.shape
    full_height, full_width = guide.shape[-2:]
    flat = models.flatten(1, 2)
    if width != full_width:                                  # columns once (the small side is cheap)…
        flat = F.interpolate(flat, size=(height, full_width), mode="bilinear", align_corners=False)
    first, second, weight = bilinear_taps(height, full_height, flat.device)
    out = torch.empty(1, channels, full_height, full_width, device=guide.device)
    for y0 in range(0, full_height, strip_rows):             # …then rows, strip by strip
        rows = slice(y0, min(y0 + strip_rows, full_height))
        strip = torch.lerp(flat[..., first[rows], :], flat[..., second[rows], :], weight[rows, None])
        strip = strip.view(1, terms, channels, -1, full_width)
        finished = out[..., rows, :]
        finished.copy_(strip[:, -1])                          # apply_affine, one guide channel at a time
        for index in range(terms - 1):
            finished.addcmul_(strip[:, index], guide[:, index:index + 1, rows].float())
        finished.clamp_(0, 1)
    return out


# The tone step (``Smoothing.tone``) measures tonal ranges on copies with this long side; the
# result's large-scale luminance is a box filter of a box filter with a radius of 1/32 of the
# long side, taken on a copy of at most BASE_SIZE px (4 px there; it is smooth, so it is
# upsampled), and the gain is at most MAX_TONE_GAIN.
TONE_SIZE = 512
BASE_SIZE = 128
BASE_RADIUS_FRACTION = 1 / 32
MAX_TONE_GAIN = 4.0
TONE_PERCENTILES = (0.01, 0.99)


def tonal_levels(image: Tensor) -> tuple[float, float, float]:
    """The 1st percentile, the mean and the 99th percentile of the luminance of a ``(1, 3, H, W)``
    image in [0, 1], measured on a copy whose long side is at most ``TONE_SIZE``."""
    values = luma(working_copy(image.float(), TONE_SIZE)).flatten()
    low, high = torch.quantile(values, torch.tensor(TONE_PERCENTILES, device=values.device))
    return float(low), float(values.mean()), float(high)


def tonal_spread(image: Tensor) -> float:
    """The luminance range between the 1st and 99th percentiles of a ``(1, 3, H, W)`` image
    (``tonal_levels``)."""
    low, _, high = tonal_levels(image)
    return high - low


def styles_spread(styles: list[Tensor], weights: list[float]) -> float:
    """The tone step's target: the styles' ``tonal_spread`` (``(3, H, W)`` images), mixed with
    the style ``weights`` as the network mixes them."""
    return sum(weight * tonal_spread(style[None]) for style, weight in zip(styles, weights))


def tone_offset(finished: Tensor, target_spread: float, content_black: float) -> Tensor:
    """The tone step's luminance offset for a finished result ``(1, 3, H, W)``: ``(1, 1, H, W)``,
    to be added to every channel.

    The network's results are often narrower in tone than their style (a dark forest under a
    bright dusk sky comes out as a flat mid-grey veil). The step stretches the result's
    large-scale luminance (``base``, a wide blur, so fine texture is not sharpened) about its
    mean by the gain ``k`` that brings the result's ``tonal_spread`` up to ``target_spread``
    (the style's): the offset is ``(k − 1)·(base − mean)``. It lifts veils and crushes no blacks:
    ``k`` is at most the gain that would take the result's 1st percentile down to the content
    photo's, ``content_black`` (so a result whose blacks are already as deep as the photo's is
    left alone), at least 1 (it never compresses) and at most ``MAX_TONE_GAIN``. The base is
    taken on a ``BASE_SIZE``-px copy and upsampled, being smooth."""
    finished = finished.float()
    black, mean, white = tonal_levels(finished)
    gain = min(MAX_TONE_GAIN, target_spread / max(white - black, 1e-6))
    if mean > black:
        gain = min(gain, (mean - content_black) / (mean - black))
    if gain <= 1:
        return finished.new_zeros(1, 1, *finished.shape[-2:])
    brightness = luma(working_copy(finished, BASE_SIZE))
    radius = max(1, round(max(brightness.shape[-2:]) * BASE_RADIUS_FRACTION))
    base = box_filter(box_filter(brightness, radius), radius)
    offset = (gain - 1) * (base - brightness.mean())
    if offset.shape[-2:] != finished.shape[-2:]:
        offset = F.interpolate(offset, size=finished.shape[-2:], mode="bilinear", align_corners=False)
    return offset


def tone_step(finished: Tensor, content: Tensor, styles: list[Tensor], weights: list[float]) -> Tensor:
    """``tone_offset`` of a finished result ``(1, 3, H, W)`` for its content photo ``(1, 3, H', W')``
    (any size: its blacks are read on a small copy) and its styles mixed with ``weights``."""
    return tone_offset(finished, styles_spread(styles, weights), tonal_levels(content)[0])
