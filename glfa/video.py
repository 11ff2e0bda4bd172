"""What ``video.py`` does: stylise a video file or a folder of video frames with one style,
write the stylised frames, an MP4 and a GIF preview, and measure temporal consistency.

Video files (``.mp4``, ``.mov``, ``.webm``) are read and the MP4 is written with PyAV, whose
wheels bundle FFmpeg (with libx264), so no system FFmpeg is needed. Frames are decoded one at a
time, as the folder's frames are read one at a time.

Consistency is the mean absolute difference between consecutive stylised frames, set against
that of the content frames (a stylisation that flickers raises it). With optical flow
(scikit-image's TV-L1, no learned weights: torchvision's RAFT needs weights that are not
shipped) it also reports the warped error: the previous frame warped along the content's
motion, compared with the current one, for the stylised and for the content frames. A ratio
stylised/content is reported only where the content's measure reaches ``RATIO_FLOOR``.

Region by region: one style map with one content map for every frame, or one per frame (a folder
matched by frame name), or automatic regions found in every frame (``frame_regions``).
"""
import re
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.registration import optical_flow_tvl1
from torch import Tensor
from tqdm import tqdm

from glfa.errors import UserError
from glfa.figures import image_rows, line_chart, save_gif
from glfa.images import list_images, read_image_or_fail, resize_to_tensor, save_image_file, thumbnail, to_pil
from glfa.inference import Stylizer
from glfa.metrics import luminance
from glfa.segments import LabelMap, check_aspect, image_size, maps_by_keys, read_label_map
from glfa.tables import markdown_table, write_csv

STRIP_FRAMES = 6
VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm")    # video files video.py reads (any letter case)
DEFAULT_FPS = Fraction(25)                      # the rate of a frame folder's MP4 and GIF unless --fps is given
MP4_ENCODERS = ("libx264", "libopenh264", "mpeg4")  # the first one this PyAV build has writes the MP4
# A stylised/content ratio is given only where the content's own measure (a mean absolute difference on
# the 0-1 scale) is at least one 8-bit grey level: below it the content is practically still, or follows
# its flow to within quantisation and coding noise (a shifted crop of a photo: 3e-5 as lossless frames,
# giving a ratio of 174; 0.0026 as an H.264 clip), and the ratio would divide by that noise.
RATIO_FLOOR = 1 / 255
RATIO_FLOOR_TEXT = "1/255"
SUMMARY_FILES = ("preview.gif", "temporal.csv", "temporal.md", "consistency_plot.png", "consistency_strip.png")
RATIOS = (("diff_ratio", "stylised_diff", "content_diff"), ("warped_ratio", "stylised_warped", "content_warped"))


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
# Inputs: a frame folder or a video file; the stylised MP4
# --------------------------------------------------------------------------------------------

class FrameFolder:
    """The frames of a folder in natural order, at a rate the user gives; read one at a time."""

    def __init__(self, paths: list[Path], rate: Fraction = DEFAULT_FPS, name: str | None = None):
        check_frame_sizes(paths)
        self.paths, self.rate = paths, Fraction(rate)
        self.name = name or paths[0].parent.resolve().name

    @classmethod
    def open(cls, folder: str | Path, rate: Fraction | None = None) -> "FrameFolder":
        return cls(list_frames(folder), rate or DEFAULT_FPS, Path(folder).resolve().name)

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[tuple[str, Image.Image]]:
        """``(name, RGB image)`` per frame, the name being the file's stem."""
        for path in self.paths:
            yield path.stem, read_image_or_fail(path)


class VideoFile:
    """The frames of a video file's first video stream, decoded one at a time, at the stream's
    average rate (an exact fraction such as 30000/1001) unless ``rate`` is given.

    Opening it decodes the stream once, keeping nothing, to count the frames and to refuse a
    file that is not a video, has no video stream, fails to decode (truncated or corrupt), has
    fewer than two frames or changes frame size, in one line and before any work is done. A
    stream that decodes cleanly but ends well before the duration its file declares (more than
    three frames and 5% short: an MP4 or a WebM cut off can decode so) counts as truncated.
    """

    def __init__(self, path: str | Path, rate: Fraction | None = None):
        self.path = Path(path)
        self.name = self.path.stem
        if self.path.stat().st_size == 0:
            raise UserError(f"{self.path} is empty (0 bytes)")
        self.frames, self.size, stream_rate = self._probe()
        self.rate = Fraction(rate) if rate else stream_rate

    def __len__(self) -> int:
        return self.frames

    def _open(self) -> "av.container.InputContainer":
        try:
            return av.open(str(self.path))
        except av.error.FFmpegError as err:
            raise UserError(f"{self.path} is not a readable video ({_reason(err)}): not a video file, "
                            "or truncated or corrupt") from None

    def _probe(self) -> tuple[int, tuple[int, int], Fraction]:
        with self._open() as container:
            if not container.streams.video:
                kinds = sorted({stream.type for stream in container.streams})
                raise UserError(f"{self.path} has no video stream"
                                + (f" (it holds {' and '.join(kinds)} only)" if kinds else " (it holds no streams)"))
            stream = container.streams.video[0]     # decoded on one thread: frame threads hide decoding errors
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate or rate <= 0:
                rate = DEFAULT_FPS
                print(f"note: {self.path} states no frame rate; taking {rate} fps (--fps sets another)")
            count, size, first, last = 0, None, None, None
            try:
                for frame in container.decode(stream):
                    if size is None:
                        size = frame.width, frame.height
                    elif (frame.width, frame.height) != size:
                        raise UserError(f"{self.path} changes frame size at frame {count + 1}: {frame.width}×"
                                        f"{frame.height} after {size[0]}×{size[1]}")
                    count += 1
                    first = frame.time if first is None else first
                    last = frame.time
            except av.error.FFmpegError as err:
                raise UserError(f"{self.path} is truncated or corrupt: decoding failed after {count} frame(s) "
                                f"({_reason(err)})") from None
            if count < 2:
                raise UserError(f"{self.path} holds {count} frame(s); temporal consistency needs at least 2")
            declared = _declared_seconds(container, stream)
            if declared is not None and first is not None and last is not None:
                decoded = last - first + 1 / float(rate)
                if declared - decoded > max(3 / float(rate), 0.05 * declared):
                    raise UserError(f"{self.path} is truncated or corrupt: it declares {declared:.2f} s of video "
                                    f"but its {count} frames end after {decoded:.2f} s")
        return count, size, Fraction(rate)

    def __iter__(self) -> Iterator[tuple[str, Image.Image]]:
        """``(name, RGB image)`` per frame, named ``frame_000001`` onwards."""
        index = 0
        with self._open() as container:
            stream = container.streams.video[0]
            try:
                for frame in container.decode(stream):
                    index += 1
                    yield f"frame_{index:06d}", frame.to_image()
            except av.error.FFmpegError as err:
                raise UserError(f"{self.path} is truncated or corrupt: decoding failed after {index} frame(s) "
                                f"({_reason(err)})") from None


def _reason(err: Exception) -> str:
    """FFmpeg's own words for an error, without PyAV's errno and file name."""
    return getattr(err, "strerror", None) or str(err)


def _declared_seconds(container: "av.container.InputContainer", stream: "av.VideoStream") -> float | None:
    """The video stream's declared duration, or the file's where the video is its only stream."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def open_clip(path: str | Path, rate: Fraction | None = None) -> FrameFolder | VideoFile:
    """A frame folder or a video file (by its extension, any letter case), checked; ``rate``
    (frames per second) replaces the video's own rate and the folder's default of 25."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder.open(path, rate)
    if not path.exists():
        raise UserError(f"{path} not found: give a video file ({', '.join(VIDEO_EXTENSIONS)}) or a folder of frames")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise UserError(f"{path} is neither a video file ({', '.join(VIDEO_EXTENSIONS)}) nor a folder of frames")
    return VideoFile(path, rate)


def frame_names(clip: FrameFolder | VideoFile) -> list[str]:
    """The names its frames are yielded with (and matched to content maps by)."""
    if isinstance(clip, FrameFolder):
        return [path.stem for path in clip.paths]
    return [f"frame_{index:06d}" for index in range(1, len(clip) + 1)]


def clip_size(clip: FrameFolder | VideoFile) -> tuple[int, int]:
    """``(width, height)`` of the clip's frames."""
    return clip.size if isinstance(clip, VideoFile) else image_size(clip.paths[0])


def frame_regions(clip: FrameFolder | VideoFile, style_map: LabelMap | None, content_map: str | None = None,
                  content_map_dir: str | None = None, auto_regions: int = 0) -> Callable[[str], dict] | None:
    """``Stylizer.stylize``'s region arguments for a frame, by frame name: the style map with one
    content map for all frames (``content_map``) or each frame's map in ``content_map_dir``;
    automatic regions; or None. Maps are checked against the frame size before any work."""
    if style_map is None and not (content_map or content_map_dir):
        return (lambda name: {"auto_regions": auto_regions}) if auto_regions else None
    if auto_regions:
        raise UserError("--auto_regions finds regions where no maps are given: use maps or --auto_regions, not both")
    if style_map is None or not (content_map or content_map_dir):
        raise UserError("segmentation maps match regions across the frames and the style: give --style_segment "
                        "with --content_segment or --content_segment_dir" + ("" if style_map is None else
                                                                              ", not --style_segment alone"))
    if content_map and content_map_dir:
        raise UserError("give --content_segment or --content_segment_dir, not both")
    size = clip_size(clip)
    if content_map:
        single = read_label_map(content_map, "content")
        check_aspect(tuple(single.labels.shape[::-1]), size, single.source)
        return lambda name: {"content_mask": single, "style_masks": [style_map]}
    names = frame_names(clip)
    paths = dict(zip(names, maps_by_keys([[name] for name in names], names, content_map_dir, "content")))
    for path in paths.values():
        map_size = image_size(path)
        if map_size is None:
            raise UserError(f"the content map {path} is not a readable image")
        check_aspect(map_size, size, f"the content map {path}")
    return lambda name: {"content_mask": read_label_map(paths[name], "content"), "style_masks": [style_map]}


def stylised_video_name(clip: FrameFolder | VideoFile) -> str:
    """``clip_stylized.mp4`` for ``clip.mp4`` or a frame folder ``clip/``."""
    return f"{clip.name}_stylized.mp4"


def clip_files(clip: FrameFolder | VideoFile) -> list[Path]:
    """The files the clip is read from: its frames, or its video file."""
    return list(clip.paths) if isinstance(clip, FrameFolder) else [clip.path]


def output_files(clip: FrameFolder | VideoFile, output: Path) -> list[Path]:
    """Every file ``process_video`` writes under ``output`` for ``clip``."""
    frames = [output / "frames" / f"{name}.png" for name in frame_names(clip)]
    return [*frames, output / stylised_video_name(clip), *(output / name for name in SUMMARY_FILES)]


def mp4_encoder() -> str:
    """The first of ``MP4_ENCODERS`` this PyAV build has (its wheels ship libx264)."""
    for name in MP4_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except ValueError:                                # av.codec.codec.UnknownCodecError
            continue
        return name
    raise UserError(f"this PyAV build has none of the MP4 encoders {', '.join(MP4_ENCODERS)}")


class Mp4Writer:
    """An MP4 written one frame at a time at an exact rate: H.264 (libx264, CRF 18) in yuv420p,
    or MPEG-4 part 2 where the PyAV build lacks an H.264 encoder. yuv420p needs even sides: a
    frame with an odd width or height gets one more column or row, a copy of the last, and a
    note says so. The file is finished on ``close`` (or leaving the ``with`` block); a file that
    cannot be written or finished (a full disk) is removed, not left truncated. Leaving the
    block on an error finishes the file with the frames so far where it can, silently, so that
    the error reported is the first one."""

    def __init__(self, path: str | Path, rate: Fraction):
        self.path, self.rate = Path(path), Fraction(rate)
        self.container, self.stream, self.count = None, None, 0

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type: type | None, *exc_info) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except Exception:       # removed already; the error that ended the block is the one to report
            pass

    def _start(self, width: int, height: int) -> None:
        encoder = mp4_encoder()
        self.container = av.open(str(self.path), "w")
        self.stream = self.container.add_stream(encoder, rate=self.rate)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = 1 / self.rate
        if encoder == "libx264":
            self.stream.options = {"crf": "18"}
        else:
            self.stream.bit_rate = max(2_000_000, round(width * height * float(self.rate) * 0.3))
        if width % 2 or height % 2:
            tqdm.write(f"note: the stylised frames are {width}×{height}; {self.path.name} is "
                       f"{self.stream.width}×{self.stream.height}, the last column/row repeated "
                       f"({encoder} in yuv420p needs even sides)")

    def write(self, image: Tensor) -> None:
        """Append a ``(3, H, W)`` frame in [0, 1]; every frame must have the first one's size."""
        array = np.asarray(to_pil(image))
        height, width = array.shape[:2]
        try:
            if self.container is None:
                self._start(width, height)
            if height % 2 or width % 2:
                array = np.pad(array, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts = self.count
            self.container.mux(self.stream.encode(frame))
        except av.error.FFmpegError as err:
            raise self._failed(err) from None
        self.count += 1

    def close(self) -> None:
        """Finish the file: flush the encoder and write the index. The first failure removes the
        file and is raised."""
        if self.container is None:
            return
        container, self.container = self.container, None
        error = None
        for step in (lambda: container.mux(self.stream.encode(None)), container.close):
            try:
                step()
            except av.error.FFmpegError as err:
                error = error or err
        if error is not None:
            raise self._failed(error) from None

    def _failed(self, err: "av.error.FFmpegError") -> Exception:
        """The error to raise for a failed write, the unfinished file closed and removed: an
        ``OSError`` for a file-system failure (a full disk), else a ``UserError``."""
        if self.container is not None:
            container, self.container = self.container, None
            try:
                container.close()
            except av.error.FFmpegError:
                pass
        self.path.unlink(missing_ok=True)
        message = f"cannot write {self.path}: {_reason(err)}"
        return OSError(err.errno, message) if isinstance(err, OSError) else UserError(message)


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


# --------------------------------------------------------------------------------------------
# Outputs
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


def process_video(stylizer: Stylizer, frames: FrameFolder | VideoFile | list[Path], style: Tensor, output: Path, *,
                  content_size: int = 512, alpha: float = 1.0, preserve_color: bool = False, flow: bool = True,
                  fps: float | Fraction | None = None, preview_height: int = 256,
                  regions: Callable[[str], dict] | None = None) -> dict[str, float]:
    """Stylise the frames (a ``FrameFolder``, a ``VideoFile`` or a list of frame files) one by
    one, writing each as a PNG and into ``<name>_stylized.mp4`` as it is done, and measure every
    step against the previous frame; then write a side-by-side GIF, the per-step CSV, the
    summary and the consistency figures under ``output``. ``fps`` replaces the clip's rate (a
    list of files: 25 unless given). ``regions`` gives each frame's region arguments by frame
    name (``frame_regions``). Returns the summary.

    Only the previous frame, the first few (for the strip) and the small GIF frames stay in
    memory, so long videos fit: a video is decoded one frame at a time. When a write fails (a
    full disk), that error is raised; the file being written is removed, the frames written
    before it stay, and the MP4 keeps them where it can still be finished (else it is removed).
    """
    rate = Fraction(fps).limit_denominator(1001) if fps else None
    clip = FrameFolder(frames, rate or DEFAULT_FPS) if isinstance(frames, list) else frames
    rate = rate or clip.rate
    (output / "frames").mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Tensor]] = []
    strip: list[tuple[Tensor, Tensor]] = []
    preview: list[Image.Image] = []
    previous: tuple[Tensor, Tensor] | None = None
    with Mp4Writer(output / stylised_video_name(clip), rate) as movie:
        for name, image in tqdm(clip, total=len(clip), desc="stylise", dynamic_ncols=True):
            content = resize_to_tensor(image, content_size)
            stylised = stylizer.stylize(content, [style], alpha=alpha, preserve_color=preserve_color,
                                        **(regions(name) if regions else {}))
            save_image_file(stylised, output / "frames" / f"{name}.png")
            movie.write(stylised)
            if previous is not None:
                contents, results = torch.stack((previous[0], content)), torch.stack((previous[1], stylised))
                steps.append(temporal_metrics(contents, results, backward_flows(contents) if flow else None))
            previous = content, stylised
            if len(strip) < STRIP_FRAMES:
                strip.append(previous)
            preview.append(preview_frame(content, stylised, preview_height))
    save_gif(preview, output / "preview.gif", float(rate))

    series = {name: torch.cat([step[name] for step in steps]) for name in steps[0]}
    means = summary(series)
    write_series_csv(series, output / "temporal.csv")
    (output / "temporal.md").write_text(summary_markdown(means, len(preview)))
    consistency_figures(torch.stack([c for c, _ in strip]), torch.stack([s for _, s in strip]), series, output)
    return means
