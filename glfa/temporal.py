"""Temporal measures of a clip: frame-to-frame differences, optical flow, warping, the warped
error and their summary.

Consistency is the mean absolute difference between consecutive stylised frames, set against
that of the content frames (a stylisation that flickers raises it). With optical flow
(scikit-image's TV-L1, no learned weights: torchvision's RAFT needs weights that are not
shipped) there is also the warped error: the previous frame warped along the content's motion,
compared with the current one, for the stylised and for the content frames. A ratio
stylised/content is given only where the content's measure reaches ``RATIO_FLOOR``.
"""
import numpy as np
import torch
import torch.nn.functional as F
from skimage.registration import optical_flow_tvl1
from torch import Tensor

from glfa.metrics import luminance

# A stylised/content ratio is given only where the content's own measure (a mean absolute difference on
# the 0-1 scale) is at least one 8-bit grey level: below it the content is practically still, or follows
# its flow to within quantisation and coding noise (a shifted crop of a photo: 3e-5 as lossless frames,
# giving a ratio of 174; 0.0026 as an H.264 clip), and the ratio would divide by that noise.
RATIO_FLOOR = 1 / 255
RATIO_FLOOR_TEXT = "1/255"
RATIOS = (("diff_ratio", "stylised_diff", "content_diff"), ("warped_ratio", "stylised_warped", "content_warped"))


def consecutive_difference(frames: Tensor) -> Tensor:
    """Mean absolute difference between each frame and the one before, shape ``(T-1,)``."""
    return (frames[1:] - frames[:-1]).abs().flatten(1).mean(1)


def backward_flows(frames: Tensor) -> Tensor:
    """TV-L1 flow from every frame to the one before, ``(T-1, 2, H, W)`` as (row, col) offsets:
    frame ``t`` at ``p`` matches frame ``t-1`` at ``p + flow[t-1][:, p]``."""
    gray = [luminance(frame).astype(np.float32) for frame in frames]
    return torch.from_numpy(np.stack([optical_flow_tvl1(current, previous)
                                      for previous, current in zip(gray[:-1], gray[1:])]))


def warp(images: Tensor, flows: Tensor) -> tuple[Tensor, Tensor]:
    """Sample ``(N, 3, H, W)`` images at ``p + flow`` (bilinear). Returns the warped images and
    a ``(N, 1, H, W)`` mask of the positions whose source lies inside the frame."""
    height, width = images.shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(height, dtype=flows.dtype), torch.arange(width, dtype=flows.dtype),
                                indexing="ij")
    source_rows, source_cols = rows + flows[:, 0], cols + flows[:, 1]
    grid = torch.stack((2 * source_cols / max(width - 1, 1) - 1, 2 * source_rows / max(height - 1, 1) - 1), dim=-1)
    warped = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    inside = (source_rows >= 0) & (source_rows <= height - 1) & (source_cols >= 0) & (source_cols <= width - 1)
    return warped, inside[:, None].to(images.dtype)


def warped_error(frames: Tensor, flows: Tensor) -> Tensor:
    """Mean absolute difference between each frame and the previous frame warped onto it, over
    the positions the flow maps inside the frame, shape ``(T-1,)``. Occlusions are not masked,
    so the content frames' own warped error is the floor to read the stylised one against."""
    warped, inside = warp(frames[:-1], flows)
    error = (frames[1:] - warped).abs().mean(1, keepdim=True) * inside
    return error.flatten(1).sum(1) / inside.flatten(1).sum(1).clamp_min(1)


def temporal_metrics(content: Tensor, stylised: Tensor, flows: Tensor | None = None) -> dict[str, Tensor]:
    """Per-step series: consecutive differences of content and stylised frames and, given
    the content's backward flows, their warped errors."""
    series = {"content_diff": consecutive_difference(content), "stylised_diff": consecutive_difference(stylised)}
    if flows is not None:
        series["content_warped"] = warped_error(content, flows)
        series["stylised_warped"] = warped_error(stylised, flows)
    return series


def step_metrics(previous: tuple[Tensor, Tensor], current: tuple[Tensor, Tensor], flow: bool) -> dict[str, Tensor]:
    """``temporal_metrics`` of one step ``t-1 → t`` from the (content, stylised) frames ``(3, H, W)``
    at ``t-1`` and ``t``, each series a ``(1,)`` tensor. Without flow no two-frame stacks are built
    (at 1080p a stack is a 50-MB copy a frame)."""
    if flow:
        contents, results = torch.stack((previous[0], current[0])), torch.stack((previous[1], current[1]))
        return temporal_metrics(contents, results, backward_flows(contents))
    return {"content_diff": F.l1_loss(current[0], previous[0]).view(1),
            "stylised_diff": F.l1_loss(current[1], previous[1]).view(1)}


def summary(series: dict[str, Tensor]) -> dict[str, float]:
    """Means of the series, and the stylised/content ratio of each (1 = as steady as the input)
    where the content's mean reaches ``RATIO_FLOOR``; below it the ratio is left out (not
    applicable: a near-zero denominator turns noise into ratios in the hundreds)."""
    means = {name: float(values.mean()) for name, values in series.items()}
    for ratio, stylised, content in RATIOS:
        if stylised in means and means[content] >= RATIO_FLOOR:
            means[ratio] = means[stylised] / means[content]
    return means


def missing_ratios(means: dict[str, float]) -> dict[str, str]:
    """Why each ratio that ``summary`` left out is not applicable, by ratio name."""
    return {ratio: f"n/a ({content} {means[content]:.2g} < {RATIO_FLOOR_TEXT})"
            for ratio, stylised, content in RATIOS if stylised in means and ratio not in means}
