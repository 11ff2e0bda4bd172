"""What ``video.py`` does: stylise a clip frame by frame with one style, and write the frames, the
MP4, a GIF preview and the report of its temporal consistency.

The clip is read and the MP4 written by ``glfa.clips``; the measures are ``glfa.temporal``'s.
Region by region: one style map with one content map for every frame, or one per frame (a folder
matched by frame name, ``frame_regions``), or automatic regions found in every frame
(``StylizeOptions.auto_regions``).
"""
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from glfa.background import WriteBehind
from glfa.clips import DEFAULT_FPS, FrameFolder, Mp4Writer, VideoFile, clip_files, clip_size, frame_names
from glfa.errors import UserError
from glfa.figures import image_rows, line_chart, save_gif
from glfa.images import resize_to_tensor, save_image_file, thumbnail, to_pil
from glfa.inference import Stylizer
from glfa.options import StylizeOptions
from glfa.segments import LabelMap, check_aspect, image_size, maps_by_keys, read_label_map
from glfa.tables import markdown_table, write_csv
from glfa.temporal import RATIO_FLOOR_TEXT, missing_ratios, step_metrics, summary

STRIP_FRAMES = 6
# video.py's working size: on the 20 large validation pairs (content at 2048 px) the network at 384
# px gave the same SSIM as at 512 (-0.0002 ± 0.0018) and 3 % less Gram loss in 0.57× the time,
# which takes a 1080p frame within a second on two CPU cores (docs/performance.md).
VIDEO_WORKING_SIZE = 384
SUMMARY_FILES = ("preview.gif", "temporal.csv", "temporal.md", "consistency_plot.png", "consistency_strip.png")


# --------------------------------------------------------------------------------------------
# The run's inputs and outputs
# --------------------------------------------------------------------------------------------

def frame_regions(clip: FrameFolder | VideoFile, style_map: LabelMap | None, content_map: str | None = None,
                  content_map_dir: str | None = None) -> Callable[[str], dict] | None:
    """``Stylizer.stylize``'s masks for a frame, by frame name: the style map with one content map
    for all frames (``content_map``) or each frame's map in ``content_map_dir``; None without
    maps. The maps come as the flags' rule has them (``glfa.cli.check_region_flags``: both sides,
    one content map or a folder) and are checked against the frame size before any work."""
    if style_map is None:
        return None
    size = clip_size(clip)
    if content_map:
        single = read_label_map(content_map, "content")
        check_aspect(tuple(single.labels.shape[::-1]), size, single.source)
        return lambda name: {"content_mask": single, "style_masks": [style_map]}
    names = frame_names(clip)
    paths = dict(zip(names, maps_by_keys([[name] for name in names], names, content_map_dir, "content",
                                         clip_files(clip))))
    for path in paths.values():
        map_size = image_size(path)
        if map_size is None:
            raise UserError(f"the content map {path} is not a readable image")
        check_aspect(map_size, size, f"the content map {path}")
    return lambda name: {"content_mask": read_label_map(paths[name], "content"), "style_masks": [style_map]}


def stylised_video_name(clip: FrameFolder | VideoFile) -> str:
    """``clip_stylized.mp4`` for ``clip.mp4`` or a frame folder ``clip/``."""
    return f"{clip.name}_stylized.mp4"


def output_files(clip: FrameFolder | VideoFile, output: Path) -> list[Path]:
    """Every file ``process_video`` writes under ``output`` for ``clip``."""
    frames = [output / "frames" / f"{name}.png" for name in frame_names(clip)]
    return [*frames, output / stylised_video_name(clip), *(output / name for name in SUMMARY_FILES)]


def write_frame(stylised: Tensor, path: Path, movie: Mp4Writer) -> None:
    """A stylised frame written as its PNG, then appended to the MP4 (not when the PNG failed)."""
    save_image_file(stylised, path)
    movie.write(stylised)


def preview_frame(content: Tensor, stylised: Tensor, height: int) -> Image.Image:
    """Content and stylised frame side by side, shrunk to at most ``height`` px, for the GIF
    (each shrunk on its own, so no full-size pair is built)."""
    if content.shape[1] > height:
        content, stylised = thumbnail(content, height), thumbnail(stylised, height)
    return to_pil(torch.cat((content, stylised), dim=2))


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------

def write_series_csv(series: dict[str, Tensor], path: Path) -> None:
    """One line per step ``t-1 → t``."""
    write_csv(path, ["step", *series],
              ([step, *values] for step, values in enumerate(zip(*(s.tolist() for s in series.values())), 1)))


def summary_markdown(means: dict[str, float], frames: int) -> str:
    """The summary as a Markdown table under a heading; a ratio that is not applicable is a row
    saying why, with a note on the floor below the table."""
    missing = missing_ratios(means)
    rows = [[name, f"{value:.5g}"] for name, value in means.items()] + [[name, why] for name, why in missing.items()]
    note = (f"\nA ratio is given only where the content's own measure is at least {RATIO_FLOOR_TEXT} (one 8-bit "
            "grey level, as a mean absolute difference on the 0-1 scale): below that the content is practically "
            "still or follows its flow to within noise, and the ratio would measure the noise. Read the stylised "
            "value on its own.\n"
            if missing else "")
    return f"### Temporal consistency over {frames} frames\n\n{markdown_table(['measure', 'value'], rows)}\n{note}"


def consistency_figures(content: Tensor, stylised: Tensor, series: dict[str, Tensor], output: Path) -> None:
    """``consistency_plot.png`` (the series per step) and ``consistency_strip.png`` (the first
    frames, content and stylised, with the stylised frame-to-frame differences magnified ×4)."""
    line_chart({name: values.tolist() for name, values in series.items()}, "Temporal consistency",
               "step (frame t-1 to t)", "mean |difference|").save(output / "consistency_plot.png")
    shown_content, shown_stylised = content[:STRIP_FRAMES], stylised[:STRIP_FRAMES]
    differences = ((shown_stylised[1:] - shown_stylised[:-1]).abs() * 4).clamp(0, 1)
    image_rows([("content", list(shown_content)), ("stylised", list(shown_stylised)),
                ("stylised |diff| x4", list(differences))]).save(output / "consistency_strip.png")


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoOutput:
    """What ``process_video`` writes and measures beside the frames: the MP4's and the GIF's
    frame rate (None: the clip's), the GIF's height, and whether the warped error is measured
    with optical flow (TV-L1: about 25 s a frame at 1080p on a CPU, so off unless asked for)."""

    fps: float | Fraction | None = None
    preview_height: int = 256
    flow: bool = False


def process_video(stylizer: Stylizer, frames: FrameFolder | VideoFile | list[Path], style: Tensor, output: Path,
                  options: StylizeOptions | None = None, regions: Callable[[str], dict] | None = None,
                  writing: VideoOutput = VideoOutput()) -> dict[str, float]:
    """Stylise the frames (a ``FrameFolder``, a ``VideoFile`` or a list of frame files) one by
    one with ``options`` (None: the Stylizer's; the frames are read at ``content_size``),
    writing each as a PNG and into ``<name>_stylized.mp4`` as it is done, and measure every
    step against the previous frame; then write a side-by-side GIF, the per-step CSV, the
    summary and the consistency figures under ``output`` (``writing``: the rate, which for a
    list of files is 25 unless given, the GIF's height, the flow). ``regions`` gives each
    frame's masks by frame name (``frame_regions``). Returns the summary.

    Only the previous frame, the first few (for the strip) and the small GIF frames stay in
    memory, so long videos fit: a video is decoded one frame at a time. A frame is written
    while the next one is stylised (``WriteBehind``), and when a write fails (a
    full disk), that error is raised; the file being written is removed, the frames written
    before it stay, and the MP4 keeps them where it can still be finished (else it is removed).
    """
    options = options or stylizer.options
    rate = Fraction(writing.fps).limit_denominator(1001) if writing.fps else None
    clip = FrameFolder(frames, rate or DEFAULT_FPS) if isinstance(frames, list) else frames
    rate = rate or clip.rate
    (output / "frames").mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Tensor]] = []
    strip: list[tuple[Tensor, Tensor]] = []
    preview: list[Image.Image] = []
    previous: tuple[Tensor, Tensor] | None = None
    with Mp4Writer(output / stylised_video_name(clip), rate) as movie, WriteBehind() as writer:
        for name, image in tqdm(clip, total=len(clip), desc="stylise", dynamic_ncols=True):
            content = resize_to_tensor(image, options.content_size)
            stylised = stylizer.stylize(content, [style], options=options, **(regions(name) if regions else {}))
            writer.submit(write_frame, stylised, output / "frames" / f"{name}.png", movie)
            if previous is not None:
                steps.append(step_metrics(previous, (content, stylised), writing.flow))
            previous = content, stylised
            if len(strip) < STRIP_FRAMES:
                strip.append(previous)
            preview.append(preview_frame(content, stylised, writing.preview_height))
    save_gif(preview, output / "preview.gif", float(rate))

    series = {name: torch.cat([step[name] for step in steps]) for name in steps[0]}
    means = summary(series)
    write_series_csv(series, output / "temporal.csv")
    (output / "temporal.md").write_text(summary_markdown(means, len(preview)))
    consistency_figures(torch.stack([c for c, _ in strip]), torch.stack([s for _, s in strip]), series, output)
    return means
