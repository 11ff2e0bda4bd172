"""Tiling large images so that memory stays bounded and no seam appears: how far a layer stack
sees (its reach), how an axis is cut into tiles with halos, and exact channel statistics
combined from chunks, so that statistics of the whole image need not hold it at once."""
from typing import Iterable

import torch
from torch import Tensor, nn

from function import full_precision, masked_positions

# The smallest tile side (px) a tiled image may be cut into (besides 0, automatic): a tile grows
# by the encoder's halo on each side (16 px in photo mode, 40 in art mode), so smaller tiles are
# mostly halo; at 64 px a tile does at most about 5x its own work (tile 1 took 70x the time).
MIN_TILE_SIZE = 64


def reach(layers: Iterable[nn.Module]) -> float:
    """How far, in input pixels, an output of ``layers`` can depend on inputs on either side.

    Convolutions add their half-width at the current scale, 2×2 max-pools one input step
    before halving the resolution, nearest upsampling doubles it. A tile grown by at least
    this much yields exact values in its interior, whatever its border padding does.
    """
    distance, step = 0.0, 1.0
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            distance += (layer.kernel_size[0] - 1) // 2 * layer.dilation[0] * step
        elif isinstance(layer, nn.MaxPool2d):
            distance += (layer.kernel_size - 1) * step
            step *= layer.stride
        elif isinstance(layer, nn.Upsample):
            step /= layer.scale_factor
    return distance


def spans(length: int, tile: int, halo: int, multiple: int = 1) -> list[tuple[int, int, int, int]]:
    """Cut ``[0, length)`` into near-equal tiles of at most ``tile`` starting on multiples of
    ``multiple``: ``(start, end, halo_start, halo_end)`` each, the halo span grown by ``halo``
    on both sides and clipped to the range."""
    count = -(-length // tile)
    step = -(-length // (count * multiple)) * multiple
    return [(start, min(start + step, length), max(0, start - halo), min(length, start + step + halo))
            for start in range(0, length, step)]


def combine_mean_std(counts: Tensor, means: Tensor, sq_devs: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Exact mean and ``sqrt(unbiased var + eps)`` from per-chunk counts, means and sums of
    squared deviations (Chan et al.'s parallel formula, in fp64). Chunks are on dim 0."""
    counts, means, sq_devs = counts.double(), means.double(), sq_devs.double()
    total = counts.sum()
    mean = (counts * means).sum(0) / total
    sq_dev = sq_devs.sum(0) + (counts * (means - mean) ** 2).sum(0)
    return mean.float(), (sq_dev / (total - 1) + eps).sqrt().float()


def chunked_mean_std(feat: Tensor, rows: int, mask: Tensor | None = None,
                     eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """``calc_mean_std`` of a large ``(N, C, H, W)`` feature, or with a ``(H, W)`` bool ``mask``
    ``masked_mean_std`` over its positions (a tiled image's region statistics), ``rows`` rows at
    a time in fp32 chunks; the chunks' moments are then combined exactly."""
    chunks = feat.split(rows, dim=2)
    masks = mask.split(rows, dim=0) if mask is not None else [None] * len(chunks)
    counts, variances, means = [], [], []
    for chunk, chunk_mask in zip(chunks, masks):
        column = chunk.flatten(2) if chunk_mask is None else masked_positions(chunk, chunk_mask)
        if column.shape[2]:
            variance, mean = torch.var_mean(full_precision(column), dim=2, correction=0, keepdim=True)
            counts.append(float(column.shape[2]))
            variances.append(variance[..., None])
            means.append(mean[..., None])
    count = torch.tensor(counts, device=feat.device).view(-1, 1, 1, 1, 1)
    return combine_mean_std(count, torch.stack(means), torch.stack(variances) * count, eps)
