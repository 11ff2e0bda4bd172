"""Stylising images with a trained model: the model is loaded once, then applied per pair
(``Stylizer``, also the Python API and the ``torch.hub`` entry point).

Large photos are stylised in tiles so that memory stays bounded and no seam appears. The
transform needs the content feature's global per-channel mean and std, so inference runs in
three steps: encode the image tile by tile (each tile grown by a halo at least the encoder's
reach, with origins on multiples of its downscale so the max-pool windows line up) into one
feature map; take its statistics exactly; then transform and decode tile by tile, each
feature tile grown by the decoder's reach, and crop the halos. The result equals the untiled
one up to floating-point rounding.

The options of a call are a ``StylizeOptions`` and how the model runs a ``RunOptions``
(``glfa.options``); keywords change single fields of either.

``Smoothing`` (``--smooth``) finishes the result with a guided filter whose guide is the content
photo (as FastPhotoStyle and PCA-KD do): it removes the decoder's small artifacts and raises the
structural similarity at a small cost in style. It runs on the device, on the result cropped back
to the content's frame, tile by tile with a halo of its reach (``2·radius``) when the image is
tiled, so tiled and whole results agree.

Region-wise transfer (segmentation maps, or ``auto_regions``) takes each region's statistics
over the whole feature maps in the same way (``glfa.regions``), then transforms every tile with
the statistics of its positions' regions, so tiles agree with the whole there too.
"""
import dataclasses
import math
import numbers
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from function import apply_affine, calc_mean_std, coral, full_precision
from glfa.checkpoint import load_decoder, load_encoder, load_transform
from glfa.device import autocast, check_precision, configure_backends, resolve_device
from glfa.errors import UserError
from glfa.images import as_tensor, to_pil
from glfa.options import PER_CALL_RUN_FIELDS, RunOptions, StylizeOptions, checked_options, with_changes
from glfa.paths import default_vgg
from glfa.regions import (AutoRegions, Segments, masked_statistics, region_requests, region_statistics,
                          style_statistics)
from glfa.runfolder import model_files
from glfa.segments import Mask
from glfa.smoothing import apply_upsampled, models_tiled, smooth_tiled, tone_step, working_copy
from glfa.tiles import reach, spans
from net import AdaIN, ModeSpec, RegionStatistics, StyleStatistics, Transform, parse_mode

# Automatic tiles: at most this side (px), and small enough for half the free memory at
# about this many bytes per pixel of a tile (the first encoder and last decoder layers hold
# 64 channels at full resolution, a few such tensors alive at once).
MAX_AUTO_TILE = 2048
BYTES_PER_PIXEL = 64 * 4 * 4
TILE_MULTIPLE = 64

# The full-size finish holds the photo and the result in fp32 on the device (24 bytes a pixel)
# and a strip's models at a time; with the input and output images around it, about this much.
FINISH_BYTES_PER_PIXEL = 40

def available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (GPU memory, or the host's available RAM), None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def auto_tile_size(device: torch.device, bytes_per_element: int = 4) -> int:
    """The tile side for ``--tile_size 0``: at most ``MAX_AUTO_TILE``, smaller when memory is short."""
    free = available_memory(device)
    if free is None:
        return MAX_AUTO_TILE
    side = math.isqrt(int(free * 0.5 / (BYTES_PER_PIXEL * bytes_per_element / 4)))
    return max(TILE_MULTIPLE * 4, min(MAX_AUTO_TILE, side // TILE_MULTIPLE * TILE_MULTIPLE))


def style_weights(weights: Iterable[float] | None, count: int) -> list[float]:
    """The weights mixing ``count`` styles, scaled to sum to 1: None is equal weights; given,
    one finite, non-negative number per style, not all zero."""
    if weights is None:
        return [1.0 / count] * count
    try:
        weights = list(weights)
    except TypeError:
        raise TypeError(f"style weights must be a list of numbers, one per style, got {weights!r}") from None
    if len(weights) != count:
        raise ValueError(f"{len(weights)} style weight(s) for {count} style image(s): give one per style")
    if any(isinstance(w, bool) or not isinstance(w, numbers.Real) for w in weights):
        raise TypeError(f"style weights must be numbers, got {weights}")
    total = sum(float(w) for w in weights)
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not 0 < total < math.inf:
        raise ValueError(f"style weights must be finite and non-negative with a positive sum, got {weights}")
    return [float(w) / total for w in weights]


@dataclass(frozen=True)
class Job:
    """One ``stylize`` call after its checks: the styles (on the device, colour-matched, at the
    working size), their weights, the blend, each style's region request, the content's size
    before padding, and the call's tile size (0: automatic)."""

    styles: list[Tensor]
    weights: list[float]
    alpha: float
    regions: list[Segments | AutoRegions | None]
    content_size: tuple[int, int]
    tile_size: int


class Stylizer:
    """Encoder, transform and decoder for inference, with the options of the CCPL family:
    ``alpha`` blending, interpolation between styles, and colour preservation.

    ``Stylizer.from_checkpoints()`` loads the shipped photo model; called with a content and a
    style image it returns the stylised content at its own size. Images are PIL images (any
    mode, turned upright by their EXIF orientation) or ``(3, H, W)`` tensors of floats in [0, 1]
    (uint8 tensors are read as 0-255); other tensors, NaN and values outside [0, 1] are refused
    with a ``TypeError`` or ``ValueError`` (``glfa.images.as_tensor``).

    How it runs is a ``RunOptions`` (``run``: device, precision, tiles, layout, compilation,
    progress bar; a precision the device runs far slower than fp32 is refused:
    ``check_precision``). The calls' defaults are a ``StylizeOptions`` (``options``; None is the
    mode's, ``StylizeOptions.for_mode``): the blend, colour preservation, the finish and its
    working size, automatic regions. Keywords change single fields of either, by name:
    ``Stylizer(..., device="cpu", smooth=False)``; a keyword given as None keeps the default.

    The finish (``smooth``, on by default in photo mode): the network runs on a copy of the
    content whose long side is at most ``working_size`` px, the finish's affine colour models are
    fitted there and applied to the content at its own size (the fast guided filter): a photo of
    any size in about the time of a small one, every output pixel an affine function of its own
    content pixel. ``working_size=0``, or no finish, runs the network on every pixel of the
    content (tiled when large), the exact path.

    Region-wise transfer: ``content_mask`` with ``style_mask`` (segmentation maps: colour-coded
    PIL images, or ``(H, W)`` integer label arrays or tensors) transfers every region of the
    content from the style's region of the same label; ``auto_regions=K`` finds K such regions
    in both images itself. Notes on labels that fall back are printed once each (stderr).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, transform: Transform, mode: str | ModeSpec = "photo", *,
                 run: RunOptions | None = None, options: StylizeOptions | None = None, **changes: Any):
        self.spec = parse_mode(mode)
        options, run = with_changes((checked_options(options, StylizeOptions.for_mode(self.spec)),
                                     checked_options(run, RunOptions())), changes, "Stylizer()")
        device = resolve_device(run.device)
        check_precision(run.amp_dtype, device)
        channels_last = device.type == "cpu" if run.channels_last is None else bool(run.channels_last)
        self.run = dataclasses.replace(run, device=device, channels_last=channels_last)
        self.options = options
        self._last_style: tuple[Tensor, int, StyleStatistics] | None = None
        self.notes_given: set[str] = set()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        configure_backends(device)
        self.transform = transform.to(device).eval()
        encoder = encoder.to(device, memory_format=self.memory_format).eval()
        decoder = decoder.to(device, memory_format=self.memory_format).eval()
        multiple = self.spec.downscale
        self.encoder_halo = math.ceil(reach(encoder) / multiple) * multiple
        self.decoder_halo = math.ceil(reach(decoder))          # in feature pixels
        self.encoder = torch.compile(encoder) if run.compile else encoder
        self.decoder = torch.compile(decoder) if run.compile else decoder

    @classmethod
    def from_checkpoints(cls, decoder: str | os.PathLike | None = None, transform: str | os.PathLike | None = None,
                         *, vgg: str | os.PathLike | None = None, mode: str | ModeSpec = "photo", kind: str = "lct",
                         **changes: Any) -> "Stylizer":
        """A Stylizer from checkpoint files; ``decoder``/``transform`` left out are the shipped
        model's (``runfolder.shipped_model``), ``vgg`` left out is the mode's encoder in ``models/``.
        ``kind`` applies the transform as ``lct`` or ``sct``, or ``adain`` (AdaIN alone, no
        transform file); ``changes`` go to ``__init__`` (``run=``, ``options=``, or fields of either)."""
        spec = parse_mode(mode)
        decoder, transform = model_files(decoder, "adain" if kind == "adain" else transform, spec)
        encoder = load_encoder(default_vgg(spec) if vgg is None else vgg, spec)
        feature_transform = AdaIN() if kind == "adain" else load_transform(transform, spec, kind)
        return cls(encoder, load_decoder(decoder, spec), feature_transform, spec, **changes)

    @property
    def device(self) -> torch.device:
        """The device the model runs on."""
        return self.run.device

    def __call__(self, content: Image.Image | Tensor, style: Image.Image | Tensor,
                 options: StylizeOptions | None = None, *, content_mask: Mask | None = None,
                 style_mask: Mask | None = None, **changes: Any) -> Image.Image | Tensor:
        """Stylise ``content`` with ``style``, at the content's (upright) size: a PIL content image
        gives a PIL image, a tensor a float32 tensor in [0, 1]. ``options`` (None: the Stylizer's),
        keyword changes such as ``alpha=0.5`` or ``smooth=False``, and the masks: see ``stylize``."""
        result = self.stylize(content, [style], options=options, content_mask=content_mask,
                              style_masks=None if style_mask is None else [style_mask], **changes)
        return to_pil(result) if isinstance(content, Image.Image) else result

    def check_size(self, image: Tensor, what: str) -> None:
        """Images smaller than the mode's minimum cannot be encoded deep enough."""
        if min(image.shape[-2:]) < self.spec.min_side:
            raise UserError(f"{what} is {image.shape[-1]}×{image.shape[-2]} px; {self.spec.name} mode needs "
                            f"at least {self.spec.min_side} px on each side")

    def _tile_for(self, height: int, width: int, tile_size: int) -> int:
        """The tile side for an image (a multiple of the downscale) at a call's ``tile_size`` (0:
        automatic), or 0 to process it whole."""
        tile = tile_size or auto_tile_size(self.device, 4 if self.run.amp_dtype is None else 2)
        tile = max(tile // self.spec.downscale, 1) * self.spec.downscale
        return 0 if max(height, width) <= tile else tile

    def _encode(self, image: Tensor) -> Tensor:
        with autocast(self.device, self.run.amp_dtype):
            return self.encoder(image.to(self.device).contiguous(memory_format=self.memory_format))

    def _encode_tiled(self, image: Tensor, tile: int, progress: tqdm | None = None) -> Tensor:
        """The encoder's feature of a ``(1, 3, H, W)`` image computed tile by tile, equal to
        encoding it whole (``tile`` 0: whole). Tiles start on multiples of the downscale, so a
        last tile ending on an odd size meets the same ceil-mode pooling as the whole image.
        ``progress`` counts the tiles."""
        if not tile:
            return self._encode(image)
        height, width = image.shape[-2:]
        ds, halo = self.spec.downscale, self.encoder_halo
        feat = None
        for y0, y1, hy0, hy1 in spans(height, tile, halo, ds):
            rows = slice(y0 // ds, -(-y1 // ds))
            for x0, x1, hx0, hx1 in spans(width, tile, halo, ds):
                cols = slice(x0 // ds, -(-x1 // ds))
                part = self._encode(image[..., hy0:hy1, hx0:hx1])
                if feat is None:
                    feat = part.new_empty(1, part.shape[1], -(-height // ds), -(-width // ds))
                top, left = (y0 - hy0) // ds, (x0 - hx0) // ds
                feat[..., rows, cols] = part[..., top:top + rows.stop - rows.start, left:left + cols.stop - cols.start]
                if progress is not None:
                    progress.update()
        return feat

    def _chunk_rows(self, tile: int) -> int:
        """Feature rows a chunk of statistics holds for a tile size (0: untiled, one chunk)."""
        return max(tile // self.spec.downscale, 1) if tile else 0

    def _mean_std(self, feat: Tensor, tile: int) -> tuple[Tensor, Tensor]:
        return masked_statistics(feat, None, self._chunk_rows(tile))

    def _style_stats(self, style_feat: Tensor, tile: int) -> StyleStatistics:
        """The transform's statistics of a style feature (its stds taken in chunks when tiled)."""
        with autocast(self.device, self.run.amp_dtype):
            return style_statistics(self.transform, style_feat, chunk_rows=self._chunk_rows(tile))

    def _statistics(self, content_size: tuple[int, int], content_feat: Tensor, content_stats: tuple[Tensor, Tensor],
                    style: Tensor, style_feat: Tensor, style_tile: int, chunk_rows: int,
                    request: Segments | AutoRegions | None) -> StyleStatistics | RegionStatistics:
        """What the transform needs of one style: its statistics or, for a region ``request``, the
        ``RegionStatistics`` of the content and the style (``chunk_rows``: in chunks, 0: whole)."""
        if request is None:
            return self._style_stats(style_feat, style_tile)
        content_labels, style_labels = request.feature_labels(content_size, content_feat, tuple(style.shape[-2:]),
                                                              style_feat, self.spec.downscale)
        with autocast(self.device, self.run.amp_dtype):
            stats, notes = region_statistics(self.transform, content_feat, content_labels, style_feat, style_labels,
                                             content_stats, lambda: self._style_stats(style_feat, style_tile),
                                             chunk_rows)
        for note in notes:
            if note not in self.notes_given:
                self.notes_given.add(note)
                tqdm.write(note, file=sys.stderr)
        return stats

    def _transform(self, feat: Tensor, content_stats: tuple[Tensor, Tensor],
                   style_stats: StyleStatistics | RegionStatistics, window: tuple[slice, slice]) -> Tensor:
        """The transform of a (tile of a) content feature from global statistics, in fp32; region
        statistics are taken at the tile's ``window`` of the feature map."""
        with autocast(self.device, self.run.amp_dtype):
            if isinstance(style_stats, RegionStatistics):
                return self.transform.apply(feat, *style_stats.at(*window)).float()
            return self.transform.apply(feat, *content_stats, style_stats).float()

    @torch.no_grad()
    def stylize(self, content: Tensor | Image.Image, styles: list[Tensor | Image.Image],
                weights: list[float] | None = None, options: StylizeOptions | None = None, *,
                content_mask: Mask | None = None, style_masks: list[Mask] | None = None, **changes: Any) -> Tensor:
        """Stylise one content image (a ``(3, H, W)`` tensor in [0, 1] or a PIL image, see the class);
        returns ``(3, H, W)`` in [0, 1].

        Several styles (at least one) are mixed in feature space with ``weights``: one finite,
        non-negative number per style, not all zero, scaled to sum to 1 (None: equal weights).
        Sizes that are not a multiple of the encoder's downscale are reflection-padded and cropped
        back. ``options`` (None: the Stylizer's) are the call's ``StylizeOptions``; keywords change
        single fields (``alpha=0.5``, ``smooth=False``, ``working_size=0``…; None keeps the value),
        and ``tile_size`` or ``to_cpu`` (``to_cpu=False`` leaves the result on the device) those of
        how it runs. With a finish and a working size, the network sees the content and the styles
        scaled down to it and the finish carries the colours to the content's size; with working
        size 0, it filters the full-size result in the same tiles as the network. ``content_mask``
        with ``style_masks`` (one per style) or ``auto_regions``: region-wise transfer (class docstring).
        """
        options, run = with_changes((checked_options(options, self.options), self.run), changes, "stylize()",
                                    allowed=[*(field.name for field in dataclasses.fields(StylizeOptions)),
                                             *PER_CALL_RUN_FIELDS])
        content, styles, weights = self._checked(content, styles, weights)
        regions = region_requests(content, styles, content_mask, style_masks, options.auto_regions)
        smoothing, working_size = options.smooth, options.working_size
        at_working_size = smoothing is not None and working_size > 0
        if at_working_size:
            self._check_memory(content)
        content = content.to(self.device)[None]
        styles = [coral(style.to(self.device), content[0]) if options.preserve_color else style for style in styles]
        network_input = content
        if at_working_size:
            network_input = working_copy(content, working_size)
            styles = [working_copy(style[None], working_size)[0] for style in styles]
        height, width = network_input.shape[-2:]
        multiple = self.spec.downscale
        pad_h, pad_w = -height % multiple, -width % multiple
        padded = F.pad(network_input, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else network_input
        job = Job(styles, weights, options.alpha, regions, (height, width), run.tile_size)
        tile = self._tile_for(*padded.shape[-2:], run.tile_size)
        with self._tile_progress(padded, tile, smoothing is not None) as progress:
            result = self._stylize_tiled(padded, job, tile, progress) if tile else self._stylize_whole(padded, job)
            result = result[..., :height, :width].float().clamp(0, 1)
            if at_working_size:
                models = models_tiled(network_input.float(), result, smoothing, tile, progress)
                if smoothing.tone:     # the offset joins the models' constant term, so it is upsampled with them
                    finished = apply_affine(models, network_input.float()).clamp(0, 1)
                    models[:, -1] += tone_step(finished, network_input, styles, weights)   # blacks of the small copy
                result = apply_upsampled(models, content.float())
            elif smoothing is not None:
                result = smooth_tiled(content.float(), result, smoothing, tile, progress)
                if smoothing.tone:
                    result = (result + tone_step(result, content, styles, weights)).clamp(0, 1)
        return result[0].cpu() if run.to_cpu else result[0]

    def _checked(self, content: Tensor | Image.Image, styles: list[Tensor | Image.Image],
                 weights: list[float] | None) -> tuple[Tensor, list[Tensor], list[float]]:
        """``stylize``'s images and weights checked before any work, the images as float32 tensors
        and the weights scaled to sum to 1; a ``TypeError`` or ``ValueError`` says what is wrong."""
        if isinstance(styles, (Tensor, Image.Image)) or not isinstance(styles, (list, tuple)):
            raise TypeError(f"styles must be a list of style images, got a {type(styles).__name__} "
                            "(for one style, pass [style])")
        if not styles:
            raise ValueError("stylize needs at least one style image, got none")
        weights = style_weights(weights, len(styles))
        content = as_tensor(content, "the content image")
        self.check_size(content, "the content image")
        styles = [as_tensor(style, "the style image" if len(styles) == 1 else f"style image {index}")
                  for index, style in enumerate(styles, 1)]
        for style in styles:
            self.check_size(style, "the style image")
        return content, styles, weights

    def _check_memory(self, content: Tensor) -> None:
        """Refuse, before any work, a photo whose full-size finish cannot fit in the free memory:
        the photo, the result and a strip's models, about ``FINISH_BYTES_PER_PIXEL`` a pixel."""
        free = available_memory(self.device)
        height, width = content.shape[-2:]
        needed = FINISH_BYTES_PER_PIXEL * height * width
        if free is not None and needed > free:
            raise UserError(f"the content photo is {width}×{height} px ({height * width / 1e6:.0f} Mpx): finishing it "
                            f"needs about {needed / 2 ** 30:.1f} GiB and {free / 2 ** 30:.1f} GiB is free; give "
                            "--content_size to scale it down")

    def _tile_progress(self, padded: Tensor, tile: int, smoothing: bool = False) -> tqdm:
        """A progress bar over the content's tiles, encoded, decoded, then smoothed when
        ``smoothing`` (hidden without ``progress``, or when the image is whole: ``tile`` 0)."""
        if not tile:
            return tqdm(total=0, disable=True)
        ds = self.spec.downscale
        height, width = padded.shape[-2:]
        tiles = len(spans(height, tile, 0, ds)) * len(spans(width, tile, 0, ds)) + \
            len(spans(-(-height // ds), tile // ds, 0)) * len(spans(-(-width // ds), tile // ds, 0))
        if smoothing:   # the content's tiles number the same as the padded image's: tile is a multiple of ds
            tiles += len(spans(height, tile, 0)) * len(spans(width, tile, 0))
        return tqdm(total=tiles, desc="tiles", unit="tile", leave=False, dynamic_ncols=True,
                    disable=not self.run.progress)

    def _stylize_whole(self, padded: Tensor, job: Job) -> Tensor:
        """Encode, take the statistics (of the whole images, or per region), transform and decode."""
        content_feat = self._encode(padded)
        content_stats = calc_mean_std(content_feat)
        style_stats = [self._remembered(style, 0) if request is None else None
                       for style, request in zip(job.styles, job.regions)]
        style_stats = [stats or self._statistics(job.content_size, content_feat, content_stats, style,
                                                 self._encode(style[None]), 0, 0, request)
                       for stats, style, request in zip(style_stats, job.styles, job.regions)]
        self._remember(job.styles[0], 0, style_stats[0], job.regions[0])
        return self._blend_and_decode(content_feat, content_stats, style_stats, job)

    def _remembered(self, style: Tensor, tile: int) -> StyleStatistics | None:
        """The statistics of the style image of the last call when ``style`` is that image again
        (a video's frames share one style), None otherwise."""
        if self._last_style is None:
            return None
        image, last_tile, stats = self._last_style
        same = last_tile == tile and image.shape == style.shape and torch.equal(image, style.to(image.device))
        return stats if same else None

    def _remember(self, style: Tensor, tile: int, stats: StyleStatistics | RegionStatistics,
                  request: Segments | AutoRegions | None) -> None:
        """Keep a whole style image's statistics for the next call (``_remembered``)."""
        if request is None and isinstance(stats, StyleStatistics):
            self._last_style = (style.detach().clone(), tile, stats)

    def _stylize_tiled(self, padded: Tensor, job: Job, tile: int, progress: tqdm) -> Tensor:
        """Encode the content's tiles, take the statistics, then transform and decode tile by
        tile; ``progress`` counts the tiles of both passes."""
        content_feat = self._encode_tiled(padded, tile, progress)
        content_stats = self._mean_std(content_feat, tile)
        style_stats = []
        for style, request in zip(job.styles, job.regions):
            style_tile = self._tile_for(*style.shape[-2:], job.tile_size)
            remembered = self._remembered(style, style_tile) if request is None else None
            if remembered is None:
                style_feat = self._encode_tiled(style[None].to(self.device), style_tile)
                remembered = self._statistics(job.content_size, content_feat, content_stats, style, style_feat,
                                              style_tile, self._chunk_rows(tile), request)
                del style_feat
            style_stats.append(remembered)
        self._remember(job.styles[0], self._tile_for(*job.styles[0].shape[-2:], job.tile_size), style_stats[0],
                       job.regions[0])
        ds, halo = self.spec.downscale, self.decoder_halo
        feat_tile = tile // ds
        height, width = content_feat.shape[-2:]
        result = torch.empty(1, 3, height * ds, width * ds, device=self.device)
        for y0, y1, hy0, hy1 in spans(height, feat_tile, halo):
            for x0, x1, hx0, hx1 in spans(width, feat_tile, halo):
                decoded = self._blend_and_decode(content_feat[..., hy0:hy1, hx0:hx1], content_stats, style_stats,
                                                 job, (slice(hy0, hy1), slice(hx0, hx1)))
                result[..., y0 * ds:y1 * ds, x0 * ds:x1 * ds] = \
                    decoded[..., (y0 - hy0) * ds:(y1 - hy0) * ds, (x0 - hx0) * ds:(x1 - hx0) * ds]
                progress.update()
        return result

    def _blend_and_decode(self, feat: Tensor, content_stats: tuple[Tensor, Tensor],
                          style_stats: list[StyleStatistics | RegionStatistics], job: Job,
                          window: tuple[slice, slice] = (slice(None), slice(None))) -> Tensor:
        """Decode a (tile of the) content feature transformed towards each style, the results
        mixed with the job's weights and blended with the content feature by its alpha;
        ``window`` is the tile's place in the feature map."""
        mixed = sum(weight * self._transform(feat, content_stats, stats, window)
                    for weight, stats in zip(job.weights, style_stats))
        mixed = job.alpha * mixed + (1 - job.alpha) * full_precision(feat)
        with autocast(self.device, self.run.amp_dtype):
            return self.decoder(mixed.contiguous(memory_format=self.memory_format))
