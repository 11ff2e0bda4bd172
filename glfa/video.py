"""What ``video.py`` does: stylise a folder of video frames with one style and measure temporal
consistency.

Consistency is the mean absolute difference between consecutive stylised frames, set against
that of the content frames (a stylisation that flickers raises it). With optical flow
(scikit-image's TV-L1, no learned weights: torchvision's RAFT needs weights that are not
shipped) it also reports the warped error: the previous frame warped along the content's
motion, compared with the current one, for the stylised and for the content frames.
"""
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.registration import optical_flow_tvl1
from torch import Tensor
from torchvision.utils import save_image
from tqdm import tqdm

from glfa.cli import UserError
from glfa.data import list_images
from glfa.figures import image_rows, line_chart, save_gif
from glfa.images import read_image, thumbnail, to_pil
from glfa.inference import Stylizer
from glfa.metrics import luminance
from glfa.tables import markdown_table, write_csv

STRIP_FRAMES = 6


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------

def natural_key(path: Path) -> list:
    """Sort key that puts ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_frames(folder: str | Path) -> list[Path]:
    """The image files of a frame folder in natural order; at least two are needed."""
    frames = sorted(list_images(folder), key=natural_key)
    if len(frames) < 2:
        raise UserError(f"{folder} holds {len(frames)} frame(s); temporal consistency needs at least 2")
    return frames


def check_frame_sizes(paths: list[Path]) -> None:
    """All frames must share one size; read from the file headers before any work is done."""
    sizes: dict[tuple[int, int], Path] = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.setdefault(image.size, path)
        except (OSError, SyntaxError, ValueError) as err:
            raise UserError(f"cannot read frame {path}: {err}") from None
    if len(sizes) > 1:
        (first, first_path), (other, other_path) = list(sizes.items())[:2]
        raise UserError(f"the frames differ in size: {first_path.name} is {first[0]}×{first[1]}, "
                        f"{other_path.name} is {other[0]}×{other[1]}")


def preview_frame(content: Tensor, stylised: Tensor, height: int) -> Image.Image:
    """Content and stylised frame side by side, shrunk to at most ``height`` px, for the GIF."""
    pair = torch.cat((content, stylised), dim=2)
    return to_pil(thumbnail(pair, height) if pair.shape[1] > height else pair)


# --------------------------------------------------------------------------------------------
# Temporal consistency
# --------------------------------------------------------------------------------------------

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


def summary(series: dict[str, Tensor]) -> dict[str, float]:
    """Means of the series, and the stylised/content ratio of each (1 = as steady as the input)."""
    means = {name: float(values.mean()) for name, values in series.items()}
    means["diff_ratio"] = means["stylised_diff"] / max(means["content_diff"], 1e-12)
    if "stylised_warped" in means:
        means["warped_ratio"] = means["stylised_warped"] / max(means["content_warped"], 1e-12)
    return means


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------

def write_series_csv(series: dict[str, Tensor], path: Path) -> None:
    """One line per step ``t-1 → t``."""
    write_csv(path, ["step", *series],
              ([step, *values] for step, values in enumerate(zip(*(s.tolist() for s in series.values())), 1)))


def summary_markdown(means: dict[str, float], frames: int) -> str:
    """The summary as a Markdown table under a heading."""
    table = markdown_table(["measure", "value"], ([name, f"{value:.5g}"] for name, value in means.items()))
    return f"### Temporal consistency over {frames} frames\n\n{table}\n"


def consistency_figures(content: Tensor, stylised: Tensor, series: dict[str, Tensor], output: Path) -> None:
    """``consistency_plot.png`` (the series per step) and ``consistency_strip.png`` (the first
    frames, content and stylised, with the stylised frame-to-frame differences magnified ×4)."""
    line_chart({name: values.tolist() for name, values in series.items()}, "Temporal consistency",
               "step (frame t-1 to t)", "mean |difference|").save(output / "consistency_plot.png")
    shown_content, shown_stylised = content[:STRIP_FRAMES], stylised[:STRIP_FRAMES]
    differences = ((shown_stylised[1:] - shown_stylised[:-1]).abs() * 4).clamp(0, 1)
    image_rows([("content", list(shown_content)), ("stylised", list(shown_stylised)),
                ("stylised |diff| x4", list(differences))]).save(output / "consistency_strip.png")


def process_video(stylizer: Stylizer, frame_paths: list[Path], style: Tensor, output: Path, *,
                  content_size: int = 512, alpha: float = 1.0, preserve_color: bool = False, flow: bool = True,
                  fps: float = 10.0, preview_height: int = 256) -> dict[str, float]:
    """Stylise the frames one by one, writing each as it is done, and measure every step
    against the previous frame; then write a side-by-side GIF, the per-step CSV, the summary
    and the consistency figures under ``output``. Returns the summary.

    Only the previous frame, the first few (for the strip) and the small GIF frames stay in
    memory, so long videos fit.
    """
    check_frame_sizes(frame_paths)
    (output / "frames").mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Tensor]] = []
    strip: list[tuple[Tensor, Tensor]] = []
    preview: list[Image.Image] = []
    previous: tuple[Tensor, Tensor] | None = None
    for path in tqdm(frame_paths, desc="stylise", dynamic_ncols=True):
        content = read_image(path, content_size)
        stylised = stylizer.stylize(content, [style], alpha=alpha, preserve_color=preserve_color)
        save_image(stylised, output / "frames" / f"{path.stem}.png")
        if previous is not None:
            contents, results = torch.stack((previous[0], content)), torch.stack((previous[1], stylised))
            steps.append(temporal_metrics(contents, results, backward_flows(contents) if flow else None))
        previous = content, stylised
        if len(strip) < STRIP_FRAMES:
            strip.append(previous)
        preview.append(preview_frame(content, stylised, preview_height))
    save_gif(preview, output / "preview.gif", fps)

    series = {name: torch.cat([step[name] for step in steps]) for name in steps[0]}
    means = summary(series)
    write_series_csv(series, output / "temporal.csv")
    (output / "temporal.md").write_text(summary_markdown(means, len(frame_paths)))
    consistency_figures(torch.stack([c for c, _ in strip]), torch.stack([s for _, s in strip]), series, output)
    return means
