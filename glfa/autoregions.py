"""Automatic regions (``--auto_regions K``): with no segmentation maps, K regions found in the
content and the style together, so that matching regions share a label and region-wise transfer
needs no maps.

Every feature position of both images is described by its encoder feature (relu3_1 in photo
mode), each image's channels standardised by its own mean and std (so the two images' global
differences, the very thing the transfer changes, do not split them apart) and the vector
scaled to unit length, with its height in the image (-1 at the top, 1 at the bottom) appended
at weight ``HEIGHT_WEIGHT``: photographs put sky above ground. K-means (k-means++ start,
``ITERATIONS`` Lloyd steps) is fitted on up to ``FIT_POSITIONS`` positions of each image, drawn
with a fixed seed, and every position is given its nearest centre; a 3×3 majority filter then
removes isolated labels.

The weights were chosen on the eight shared pairs with maps, by how often a content position's
automatic region holds style positions of the position's own true label (0.41 for the whole
style, 1 for the maps): image colour lowered it at every weight tried (0.5: 0.61, 2: 0.48 at
K=3, against 0.64 without), height raised it (0.8: 0.72).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from glfa.segments import LabelMap

DEFAULT_REGIONS = 3
# The most regions asked for: more are mostly too small to carry statistics of their own (K=100 on a
# 256×160 pair left most content regions without a style region), and the time grows as K² (800: 50 s).
MAX_REGIONS = 32
FIT_POSITIONS = 4096
ITERATIONS = 25
HEIGHT_WEIGHT = 0.8
SEED = 0


def descriptors(feat: Tensor, height_weight: float = HEIGHT_WEIGHT) -> Tensor:
    """``(h·w, C + 1)`` descriptors of the positions of a ``(1, C, h, w)`` feature, row-major."""
    flat = feat[0].flatten(1).T.float()
    flat = F.normalize((flat - flat.mean(0)) / (flat.std(0) + 1e-5), dim=1)
    h, w = feat.shape[-2:]
    height = torch.linspace(-1, 1, h, device=flat.device)[:, None].expand(h, w).reshape(-1, 1)
    return torch.cat((flat, height_weight * height), dim=1)


def squared_distances(points: Tensor, centres: Tensor) -> Tensor:
    """``(n, k)`` squared Euclidean distances, by one matrix product (``torch.cdist`` is far slower here)."""
    return (points.pow(2).sum(1, keepdim=True) - 2 * points @ centres.T + centres.pow(2).sum(1)).clamp_min(0)


def nearest_centre(points: Tensor, centres: Tensor, chunk: int = 65536) -> Tensor:
    """Each point's nearest centre, in chunks of points."""
    return torch.cat([squared_distances(part, centres).argmin(dim=1) for part in points.split(chunk)])


def kmeans(points: Tensor, k: int, generator: torch.Generator, iterations: int = ITERATIONS) -> Tensor:
    """``k`` centres of ``points`` ``(n, D)``: k-means++ seeding, then Lloyd steps (an emptied
    cluster keeps its centre)."""
    first = int(torch.randint(len(points), (1,), generator=generator))
    centres = points[first:first + 1]
    for _ in range(1, k):
        distance = squared_distances(points, centres).min(dim=1).values.double().cpu()
        if float(distance.sum()) <= 0:
            break
        pick = int(torch.multinomial(distance / distance.sum(), 1, generator=generator))
        centres = torch.cat((centres, points[pick:pick + 1]))
    for _ in range(iterations):
        members = F.one_hot(nearest_centre(points, centres), len(centres)).to(points.dtype)
        sums, counts = members.T @ points, members.sum(0)[:, None]    # a product: index_add_ is slow on CPUs
        centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    return centres


def majority_filter(labels: Tensor, count: int) -> Tensor:
    """Each position's most frequent label in its 3×3 neighbourhood (a tie: its own label wins
    when among the most frequent, else the smaller label)."""
    one_hot = F.one_hot(labels, count).permute(2, 0, 1)[None].float()
    votes = F.avg_pool2d(one_hot, 3, stride=1, padding=1, count_include_pad=False)[0]
    votes = votes + 1e-3 * one_hot[0]
    return votes.argmax(dim=0)


def sample(count: int, limit: int, generator: torch.Generator) -> Tensor:
    """Up to ``limit`` distinct indexes below ``count``, drawn with ``generator`` (the fitting set)."""
    return torch.randperm(count, generator=generator)[:limit]


def joint_regions(content_feat: Tensor, style_feat: Tensor, k: int, seed: int = SEED) -> tuple[Tensor, Tensor]:
    """Labels ``0..k-1`` of every content and style feature position, ``(h, w)`` each."""
    generator = torch.Generator().manual_seed(seed)
    points = [descriptors(content_feat), descriptors(style_feat)]
    fit = torch.cat([p[sample(len(p), FIT_POSITIONS, generator).to(p.device)] for p in points])
    centres = kmeans(fit, k, generator)
    maps = []
    for p, feat in zip(points, (content_feat, style_feat)):
        labels = nearest_centre(p, centres).view(feat.shape[-2:])
        maps.append(majority_filter(labels, len(centres)).cpu())
    return maps[0], maps[1]


@dataclass(frozen=True)
class AutoRegions:
    """The request for ``k`` automatic regions (seeded, so the same images give the same regions)."""

    k: int = DEFAULT_REGIONS
    seed: int = SEED

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_REGIONS:
            raise ValueError(f"auto_regions must be a number of regions from 1 to {MAX_REGIONS}, got {self.k!r}")

    def feature_labels(self, content_size: tuple[int, int], content_feat: Tensor, style_size: tuple[int, int],
                       style_feat: Tensor, downscale: int) -> tuple[LabelMap, LabelMap]:
        """The content's and the style's regions at their features' resolution."""
        content_labels, style_labels = joint_regions(content_feat, style_feat, self.k, self.seed)
        return (LabelMap(content_labels, source="the content's automatic regions"),
                LabelMap(style_labels, source="the style's automatic regions"))
