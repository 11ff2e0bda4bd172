"""Clips in and out: frame folders and video files read one frame at a time, and the stylised MP4
written one frame at a time.

Video files (``.mp4``, ``.mov``, ``.webm``) are read and the MP4 is written with PyAV, whose
wheels bundle FFmpeg (with libx264), so no system FFmpeg is needed. Frames are decoded one at a
time, as a folder's frames are read one at a time.
"""
import re
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from glfa.errors import UserError
from glfa.images import list_images, read_image_or_fail, to_pil
from glfa.segments import image_size

VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm")    # video files video.py reads (any letter case)
DEFAULT_FPS = Fraction(25)                      # the rate of a frame folder's MP4 and GIF unless --fps is given
MP4_ENCODERS = ("libx264", "libopenh264", "mpeg4")  # the first one this PyAV build has writes the MP4


# --------------------------------------------------------------------------------------------
# Frame folders
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


# --------------------------------------------------------------------------------------------
# Video files
# --------------------------------------------------------------------------------------------

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


def clip_files(clip: FrameFolder | VideoFile) -> list[Path]:
    """The files the clip is read from: its frames, or its video file."""
    return list(clip.paths) if isinstance(clip, FrameFolder) else [clip.path]


# --------------------------------------------------------------------------------------------
# The MP4
# --------------------------------------------------------------------------------------------

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
