"""Region-wise transfer: which labels of a content's and a style's label maps get statistics of
their own, the statistics (``net.RegionStatistics``) over the whole feature maps (in row chunks
when the image is tiled, as the unmasked statistics are), and the notes on what falls back.

A label gets its own region when both maps hold it on at least ``MIN_REGION_POSITIONS`` feature
positions (the style's counted where snet's valid convolutions have output). Content positions
of any other label (one the style lacks, or a region too small for a stable 32×32 covariance)
use region 0, the whole content's and the whole style's statistics: there the result is what it
is without maps. (With no such positions, the whole style's statistics are not taken at all.)
"""
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from function import calc_mean_std, masked_mean_std
from glfa.autoregions import AutoRegions
from glfa.errors import UserError
from glfa.segments import LabelMap, Mask, as_label_map, check_aspect, feature_labels, match_colours
from glfa.tiles import chunked_mean_std
from net import RegionStatistics, StyleStatistics, Transform

# Twice the 32 compressed channels: a 32×32 covariance from fewer positions is rank-deficient or noisy.
MIN_REGION_POSITIONS = 64


@dataclass(frozen=True)
class Segments:
    """A content's and a style's segmentation maps (``LabelMap``s of any size with their images'
    aspect ratios), to be brought to the encoder features' resolution."""

    content: LabelMap
    style: LabelMap

    def feature_labels(self, content_size: tuple[int, int], content_feat: Tensor, style_size: tuple[int, int],
                       style_feat: Tensor, downscale: int) -> tuple[LabelMap, LabelMap]:
        """Both maps at their features' resolution (images of ``(H, W)`` ``content_size`` and
        ``style_size``), the style's colours matched to the content's."""
        style_map = match_colours(self.content, self.style)
        return (feature_labels(self.content, content_size, tuple(content_feat.shape[-2:]), downscale),
                feature_labels(style_map, style_size, tuple(style_feat.shape[-2:]), downscale))


def region_requests(content: Tensor, styles: list[Tensor], content_mask: Mask | None,
                    style_masks: Sequence[Mask] | None, auto_regions: int = 0) -> list[Segments | AutoRegions | None]:
    """What each style of a ``Stylizer.stylize`` call is transferred by: its ``Segments`` (maps
    for both sides, one style map per style, with their images' aspect ratios), ``AutoRegions``
    (``auto_regions`` > 0, no maps), or None (the whole images)."""
    if style_masks is not None and not isinstance(style_masks, (list, tuple)):
        raise TypeError(f"style_masks is a list of maps, one per style image, not a {type(style_masks).__name__}: "
                        "for one style, give [map]")
    if content_mask is None and style_masks is None:
        return [AutoRegions(auto_regions) if auto_regions else None] * len(styles)
    if auto_regions:
        raise UserError("automatic regions are for images without segmentation maps: give maps or "
                        "auto_regions, not both")
    if content_mask is None or style_masks is None:
        given, missing = ("style", "content") if content_mask is None else ("content", "style")
        raise UserError(f"a {given} segmentation map needs a {missing} map too (maps match regions across both)")
    if len(style_masks) != len(styles):
        raise UserError(f"{len(style_masks)} style segmentation map(s) for {len(styles)} style image(s)")
    content_map = checked_map(content_mask, content, "the content map")
    return [Segments(content_map, checked_map(mask, style, "the style map"))
            for mask, style in zip(style_masks, styles)]


def checked_map(mask: Mask, image: Tensor, source: str) -> LabelMap:
    """A map as a ``LabelMap``, refused (a ``UserError``) unless it has its image's aspect ratio."""
    label_map = as_label_map(mask, source)
    check_aspect(tuple(label_map.labels.shape[::-1]), tuple(image.shape[-1:-3:-1]), label_map.source)
    return label_map


def label_counts(labels: Tensor) -> dict[int, int]:
    """How many positions each label holds."""
    values, counts = labels.unique(return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def usable_labels(content: LabelMap, style: LabelMap, border: int = 0) -> tuple[list[int], list[str]]:
    """The labels that get their own region (sorted), and one note per kind of label that does
    not: on one side only, or on too few positions (the style's counted ``border`` in from its edges)."""
    inner = style.labels[border:style.labels.shape[0] - border, border:style.labels.shape[1] - border]
    content_counts, style_counts, inner_counts = label_counts(content.labels), label_counts(style.labels), \
        label_counts(inner)
    common = sorted(content_counts.keys() & style_counts.keys())
    used = [label for label in common if content_counts[label] >= MIN_REGION_POSITIONS
            and inner_counts.get(label, 0) >= MIN_REGION_POSITIONS]
    notes = []
    content_only = sorted(content_counts.keys() - style_counts.keys())
    style_only = sorted(style_counts.keys() - content_counts.keys())
    small = [label for label in common if label not in used]
    if content_only:
        notes.append(f"note: label(s) {content.names(content_only)} of {content.source} are not in {style.source}: "
                     "those regions take the whole style's statistics")
    if style_only:
        notes.append(f"note: label(s) {style.names(style_only)} of {style.source} are not in {content.source}: "
                     "they are not used")
    if small:
        notes.append(f"note: label(s) {content.names(small)} cover fewer than {MIN_REGION_POSITIONS} feature positions "
                     f"in {content.source} or {style.source}: those regions take the whole images' statistics")
    return used, notes


def masked_statistics(feat: Tensor, mask: Tensor | None, chunk_rows: int) -> tuple[Tensor, Tensor]:
    """The channel means and stds of a feature, or of a region of it: whole, or ``chunk_rows``
    rows at a time (tiled images)."""
    if chunk_rows:
        return chunked_mean_std(feat, chunk_rows, mask)
    return calc_mean_std(feat) if mask is None else masked_mean_std(feat, mask)


def style_statistics(transform: Transform, style_feat: Tensor, mask: Tensor | None = None,
                     chunk_rows: int = 0) -> StyleStatistics:
    """The transform's statistics of a style feature (or of the region ``mask`` picks), with fp32
    means and the stds of ``masked_statistics``, so that a tiled style's stds are taken in chunks."""
    stats = transform.style_statistics(style_feat, mask)
    return stats._replace(mean=stats.mean.float(), std=masked_statistics(style_feat, mask, chunk_rows)[1])


def region_statistics(transform: Transform, content_feat: Tensor, content: LabelMap, style_feat: Tensor,
                      style: LabelMap, whole_content: tuple[Tensor, Tensor], whole_style: Callable[[], StyleStatistics],
                      chunk_rows: int = 0) -> tuple[RegionStatistics, list[str]]:
    """The ``RegionStatistics`` of a content and a style feature with their label maps at the
    features' resolution: one region per usable label, after region 0 of ``whole_content`` and
    ``whole_style()`` (the unmasked statistics) where any content position falls back to it.
    Also the notes on the labels that fall back."""
    used, notes = usable_labels(content, style, transform.snet_border)
    content_labels, style_labels = content.labels.to(content_feat.device), style.labels.to(style_feat.device)
    falls_back = not bool(torch.isin(content_labels, torch.tensor(used, dtype=torch.long,
                                                                  device=content_labels.device)).all())
    index = torch.zeros_like(content_labels)
    means, stds, styles = ([whole_content[0]], [whole_content[1]], [whole_style()]) if falls_back else ([], [], [])
    for region, label in enumerate(used, int(falls_back)):
        content_mask, style_mask = content_labels == label, style_labels == label
        index[content_mask] = region
        mean, std = masked_statistics(content_feat, content_mask, chunk_rows)
        means.append(mean)
        stds.append(std)
        styles.append(style_statistics(transform, style_feat, style_mask, chunk_rows))
    covs = None if styles[0].cov is None else torch.cat([s.cov for s in styles])
    stacked = StyleStatistics(covs, torch.cat([s.mean for s in styles]), torch.cat([s.std for s in styles]))
    return RegionStatistics(index, torch.cat(means), torch.cat(stds), stacked), notes
