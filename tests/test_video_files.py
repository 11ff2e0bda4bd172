"""Video files in and out of ``video.py``: a clip the test writes itself with PyAV goes in as
.mp4 (and .webm or .mov), ``<name>_stylized.mp4`` comes out with the input's frame count, frame
rate and size; bad files get one ``error:`` line before any work; the warped-error ratio is
given only where the content's own warped error is large enough to divide by."""
import errno
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import glfa.clips as clips
import glfa.temporal as temporal
import glfa.video as video
import video as video_cli
from glfa.cli import run_main
from helpers import REPO_ROOT, write_model

STYLE = REPO_ROOT / "test" / "style" / "fog_pier.jpg"


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture, ``(height, width, 3)`` uint8, for flow to follow."""
    small = np.random.default_rng(seed).integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))


def sliding_frames(count: int, width: int, height: int, shift: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Crops of a wider texture, ``shift`` px further right each frame."""
    wide = texture(height, width + shift * count, seed)
    return [np.ascontiguousarray(wide[:, shift * t:shift * t + width]) for t in range(count)]


def write_clip(path: Path, frames: list[np.ndarray], rate: Fraction | int, codec: str = "libx264",
               pix_fmt: str = "yuv420p", options: dict | None = None) -> Path:
    """Encode ``frames`` with PyAV at ``rate``."""
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def decoded(path: Path) -> tuple[list[np.ndarray], Fraction, tuple[int, int], str]:
    """All frames of a video (RGB), its average rate, its size and its codec."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, stream.average_rate, (stream.width, stream.height), stream.codec_context.name


@pytest.fixture(scope="module")
def model_flags(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A random photo model (the shipped encoder), on the CPU, frames at their own size."""
    decoder, lct = write_model(tmp_path_factory.mktemp("model"), 1)
    return ["--decoder", str(decoder), "--LCT", str(lct), "--device", "cpu", "--content_size", "0",
            "--style", str(STYLE), "--style_size", "32"]


def run_in_process(capsys: pytest.CaptureFixture, *argv) -> tuple[int, str, str]:
    """``video.py`` in this process: exit status, stdout, stderr."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: video_cli.main([str(arg) for arg in argv]))
        sys.exit(0)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_the_pyav_wheel_has_an_mp4_encoder():
    assert clips.mp4_encoder() in clips.MP4_ENCODERS
    av.codec.Codec("libx264", "w")                # the wheels this project pins ship H.264


def test_mp4_in_gives_an_mp4_out_with_the_same_frames_rate_and_size(tmp_path: Path, model_flags: list[str]):
    rate = Fraction(30000, 1001)
    clip = write_clip(tmp_path / "clip.mp4", sliding_frames(8, 64, 48), rate)
    output = tmp_path / "out"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "video.py"), str(clip), *model_flags,
                             "--output", str(output)], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "clip_stylized.mp4 (30000/1001 fps)" in result.stdout

    frames, out_rate, size, codec = decoded(output / "clip_stylized.mp4")
    assert (len(frames), out_rate, size) == (8, rate, (64, 48))
    assert codec == ("h264" if clips.mp4_encoder() == "libx264" else codec)
    pngs = sorted((output / "frames").iterdir())
    assert [p.name for p in pngs] == [f"frame_{i:06d}.png" for i in range(1, 9)]
    # The MP4 holds the stylised frames, in order: each is nearest its own PNG (the random model's
    # pixel-level noise loses much to yuv420p's halved chroma, so compare the luma).
    luma = lambda rgb: np.asarray(rgb, dtype=float) @ [0.299, 0.587, 0.114]  # noqa: E731
    distances = np.array([[np.abs(luma(frame) - luma(Image.open(png).convert("RGB"))).mean() for png in pngs]
                          for frame in frames])
    assert (distances.argmin(1) == np.arange(8)).all() and distances.diagonal().max() < 15   # others: 48 and up
    with Image.open(output / "preview.gif") as gif:
        assert gif.n_frames == 8 and gif.size == (128, 48)


@pytest.mark.parametrize("name, codec, pix_fmt, size, rate", [
    ("clip.webm", "libvpx-vp9", "yuv420p", (64, 48), Fraction(12)),
    ("Odd.MOV", "libx264", "yuv444p", (63, 47), Fraction(24000, 1001)),   # odd sides, upper-case extension
])
def test_other_containers_and_odd_sizes(tmp_path: Path, model_flags: list[str], capsys: pytest.CaptureFixture,
                                        name: str, codec: str, pix_fmt: str, size: tuple[int, int], rate: Fraction):
    clip = write_clip(tmp_path / name, sliding_frames(6, *size), rate, codec, pix_fmt)
    code, out, err = run_in_process(capsys, clip, *model_flags, "--flow", "none", "--output", tmp_path / "out")
    assert code == 0, err[-3000:]
    stem = Path(name).stem
    frames, out_rate, out_size, _ = decoded(tmp_path / "out" / f"{stem}_stylized.mp4")
    even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
    assert (len(frames), out_rate, out_size) == (6, rate, even)
    assert Image.open(tmp_path / "out" / "frames" / "frame_000001.png").size == size
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    if size != even:
        assert len(notes) == 1 and "63×47" in notes[0] and "64×48" in notes[0]
    else:
        assert notes == []


def test_a_frame_folder_gives_an_mp4_at_the_fps_flag(tmp_path: Path, model_flags: list[str],
                                                      capsys: pytest.CaptureFixture):
    folder = tmp_path / "shots"
    folder.mkdir()
    for t, frame in enumerate(sliding_frames(4, 40, 32)):
        Image.fromarray(frame).save(folder / f"s{t + 1}.png")
    # the default report has no optical flow (no warped error); --flow tvl1 adds it
    for flags, expected, warped in (([], clips.DEFAULT_FPS, False), (["--fps", "12.5", "--flow", "tvl1"],
                                                                      Fraction(25, 2), True)):
        code, out, err = run_in_process(capsys, folder, *model_flags, *flags, "--output", tmp_path / "out")
        assert code == 0, err[-3000:]
        frames, rate, size, _ = decoded(tmp_path / "out" / "shots_stylized.mp4")
        assert (len(frames), rate, size) == (4, expected, (40, 32))
        report = (tmp_path / "out" / "temporal.md").read_text()
        assert "| stylised_diff |" in report and ("| stylised_warped |" in report) == warped


def test_the_fps_flag_takes_fractions_and_refuses_nonsense():
    needed = ["clip.mp4", "--style", "s.jpg"]
    assert video_cli.parse_args([*needed, "--fps", "30000/1001"]).fps == Fraction(30000, 1001)
    assert video_cli.parse_args([*needed, "--fps", "25"]).fps == 25
    assert video_cli.parse_args(needed).fps is None
    for bad in ("0", "-5", "1/0", "nan", "inf", "1e400", "fast"):
        with pytest.raises(SystemExit):
            video_cli.parse_args([*needed, "--fps", bad])


# --------------------------------------------------------------------------------------------
# Bad input: one line, status 2, before any work
# --------------------------------------------------------------------------------------------

def bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """Bad inputs by case: the path and a phrase its error line must hold."""
    good = write_clip(folder / "good.mp4", sliding_frames(12, 64, 48), 24)
    data = good.read_bytes()
    (folder / "notes.mp4").write_text("these are notes, not a video\n")
    (folder / "truncated.mp4").write_bytes(data[:len(data) // 2])
    noise = [np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8) for seed in range(40)]
    streamable = write_clip(folder / "streamable.mp4", noise, 24, options={"movflags": "faststart"})
    (folder / "cut.mp4").write_bytes(streamable.read_bytes()[:streamable.stat().st_size // 2])  # index first
    whole = write_clip(folder / "whole.webm", noise[:24], 24, "libvpx-vp9")   # a cut WebM decodes cleanly
    (folder / "cut.webm").write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    (folder / "zero.mp4").write_bytes(b"")
    with av.open(str(folder / "audio.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        for index in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with av.open(str(folder / "empty.mp4"), "w") as container:         # a video stream that got no frames
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    write_clip(folder / "still.mp4", sliding_frames(1, 64, 48), 24)
    (folder / "clip.avi").write_bytes(data)
    return {
        "not a video": (folder / "notes.mp4", "is not a readable video"),
        "truncated": (folder / "truncated.mp4", "truncated or corrupt"),
        "cut mid-stream": (folder / "cut.mp4", "is truncated or corrupt: decoding failed after"),
        "webm cut": (folder / "cut.webm", "is truncated or corrupt: it declares 1.00 s of video but its"),
        "zero bytes": (folder / "zero.mp4", "is empty (0 bytes)"),
        "no video stream": (folder / "audio.mp4", "has no video stream (it holds audio only)"),
        "empty video": (folder / "empty.mp4", "has no video stream (it holds no streams)"),
        "one frame": (folder / "still.mp4", "holds 1 frame(s); temporal consistency needs at least 2"),
        "unsupported extension": (folder / "clip.avi", "is neither a video file (.mp4, .mov, .webm) nor a folder"),
        "missing": (folder / "gone.mp4", "not found"),
    }


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    return bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", ["not a video", "truncated", "cut mid-stream", "webm cut",
                                  "zero bytes", "no video stream", "empty video", "one frame",
                                  "unsupported extension", "missing"])
def test_bad_video_files_are_one_error_line(case: str, bad: dict, model_flags: list[str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture):
    path, phrase = bad[case]
    code, _, err = run_in_process(capsys, path, *model_flags, "--output", tmp_path / "out")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}") and phrase in lines[0], lines[0]
    assert not (tmp_path / "out").exists()                              # refused before any work


def test_an_input_twice_or_none_is_an_error(bad: dict, model_flags: list[str], capsys: pytest.CaptureFixture,
                                            tmp_path: Path):
    code, _, err = run_in_process(capsys, tmp_path / "a.mp4", "--frames_dir", tmp_path, *model_flags)
    assert code == 2 and err.strip().splitlines() == [
        "error: give one video file or frame folder: as VIDEO_OR_FOLDER or as --frames_dir, not both"]
    code, _, err = run_in_process(capsys, *model_flags)
    assert code == 2 and "give one video file or frame folder" in err


def test_a_bad_file_in_a_real_process_gives_no_traceback(bad: dict, model_flags: list[str], tmp_path: Path):
    path, phrase = bad["not a video"]
    result = subprocess.run([sys.executable, str(REPO_ROOT / "video.py"), str(path), *model_flags,
                             "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"error: {path} is not a readable video "
                                                  "(Invalid data found when processing input): not a video file, "
                                                  "or truncated or corrupt"]


# --------------------------------------------------------------------------------------------
# The warped-error ratio
# --------------------------------------------------------------------------------------------

def as_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(frame.copy()).permute(2, 0, 1).float() / 255 for frame in frames])


def test_the_warped_ratio_is_left_out_for_a_shifted_crop_and_given_for_a_noisy_clip():
    content = as_tensor(sliding_frames(4, 48, 40))                       # follows its flow almost exactly
    stylised = (content * 0.8 + 0.1 + 0.05 * torch.randn(content.shape, generator=torch.Generator().manual_seed(0)))
    flows = temporal.backward_flows(content)
    means = temporal.summary(temporal.temporal_metrics(content, stylised, flows))
    assert means["content_warped"] < temporal.RATIO_FLOOR < means["stylised_warped"]
    assert "warped_ratio" not in means and means["diff_ratio"] > 0            # the plain differences are large
    table = video.summary_markdown(means, 4)
    assert "| stylised_warped |" in table and "| warped_ratio | n/a (content_warped" in table
    assert "at least 1/255 (one 8-bit grey level" in table

    noisy = (content + 0.03 * torch.randn(content.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    means = temporal.summary(temporal.temporal_metrics(noisy, stylised, temporal.backward_flows(noisy)))
    assert means["content_warped"] > temporal.RATIO_FLOOR
    assert means["warped_ratio"] == pytest.approx(means["stylised_warped"] / means["content_warped"])
    assert "n/a" not in video.summary_markdown(means, 4)


def test_still_content_has_no_ratios_at_all():
    still = as_tensor(sliding_frames(1, 32, 24)).expand(3, -1, -1, -1)
    flicker = still + torch.tensor([0.0, 0.2, 0.0]).view(3, 1, 1, 1)
    means = temporal.summary(temporal.temporal_metrics(still, flicker, torch.zeros(2, 2, 24, 32)))
    assert means["stylised_diff"] == pytest.approx(0.2) and means["content_diff"] == 0
    assert "diff_ratio" not in means and "warped_ratio" not in means
    assert set(temporal.missing_ratios(means)) == {"diff_ratio", "warped_ratio"}


# --------------------------------------------------------------------------------------------
# A full disk (issue 20, case 10)
# --------------------------------------------------------------------------------------------

def no_space() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FillingContainer:
    """A PyAV output container on a disk that fills up: its ``fail_at``-th ``mux`` call and every
    later one fail with ENOSPC as PyAV raises it, and so does closing once the disk is full."""

    def __init__(self, container, fail_at: int):
        self.container, self.fail_at, self.calls = container, fail_at, 0

    def __getattr__(self, name: str):
        return getattr(self.container, name)

    def mux(self, packets):
        self.calls += 1
        if self.calls >= self.fail_at:
            av.error.err_check(-errno.ENOSPC)
        return self.container.mux(packets)

    def close(self) -> None:
        self.container.close()
        if self.calls >= self.fail_at:
            av.error.err_check(-errno.ENOSPC)


def fill_disk(monkeypatch: pytest.MonkeyPatch, png: str | None, mux_fails_at: int) -> None:
    """Simulate a full disk: saving the PNG named ``png`` leaves its first bytes and fails as a full
    disk fails as the file is closed; the MP4 fails from its ``mux_fails_at``-th write on."""
    real_save, real_open = Image.Image.save, av.open

    def save(image, fp, *args, **kwargs):
        if isinstance(fp, (str, os.PathLike)) and Path(fp).name == png:
            Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
            raise no_space()
        return real_save(image, fp, *args, **kwargs)

    def open_container(file, mode="r", *args, **kwargs):
        container = real_open(file, mode, *args, **kwargs)
        return FillingContainer(container, mux_fails_at) if mode == "w" else container

    monkeypatch.setattr(Image.Image, "save", save)
    monkeypatch.setattr(av, "open", open_container)


@pytest.fixture
def frame_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shots"
    folder.mkdir()
    for t, frame in enumerate(sliding_frames(6, 40, 32)):
        Image.fromarray(frame).save(folder / f"s{t + 1}.png")
    return folder


def complete_pngs(folder: Path) -> list[str]:
    """The names of the PNGs in ``folder``, each checked to decode completely."""
    for path in folder.iterdir():
        with Image.open(path) as image:
            image.load()
    return sorted(path.name for path in folder.iterdir())


def test_issue20_10_a_full_disk_reports_the_first_error_and_removes_the_partial_files(
        frame_folder: Path, model_flags: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture):
    """Case 10: with a full disk, the MP4 writer's close error replaced the PNG's write error, and a
    truncated s5.png and an unfinished MP4 were left. Now the PNG's error is the one line; s5.png
    and the MP4 (which could not be finished) are removed; the frames written before stay."""
    fill_disk(monkeypatch, png="s5.png", mux_fails_at=5)          # mux 5: the flush after frames 1-4
    output = tmp_path / "out"
    code, _, err = run_in_process(capsys, frame_folder, *model_flags, "--flow", "none", "--output", output)
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 1 and "Traceback" not in err and len(lines) == 1, err[-2000:]
    assert lines[0] == f"error: No space left on device: {output / 'frames' / 's5.png'}"
    assert complete_pngs(output / "frames") == ["s1.png", "s2.png", "s3.png", "s4.png"]
    assert not (output / "shots_stylized.mp4").exists()


def test_issue20_10_a_full_disk_while_writing_the_mp4_is_one_line_and_leaves_no_mp4(
        frame_folder: Path, model_flags: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture):
    """Case 10: the MP4's own write error (frame 3) is the one line; the unfinished MP4 is
    removed and the PNGs written completely, frame 3's included, stay."""
    fill_disk(monkeypatch, png=None, mux_fails_at=3)
    output = tmp_path / "out"
    code, _, err = run_in_process(capsys, frame_folder, *model_flags, "--flow", "none", "--output", output)
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 1 and "Traceback" not in err and len(lines) == 1, err[-2000:]
    assert lines[0] == f"error: cannot write {output / 'shots_stylized.mp4'}: No space left on device"
    assert complete_pngs(output / "frames") == ["s1.png", "s2.png", "s3.png"]
    assert not (output / "shots_stylized.mp4").exists()


def test_issue20_10_an_mp4_that_can_still_be_finished_keeps_the_frames_so_far(
        frame_folder: Path, model_flags: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture):
    """Case 10: when only a PNG fails, the MP4 is finished with the frames stylised before it
    (nothing written completely is lost) and the PNG's error is still the one reported."""
    fill_disk(monkeypatch, png="s4.png", mux_fails_at=10 ** 6)
    output = tmp_path / "out"
    code, _, err = run_in_process(capsys, frame_folder, *model_flags, "--flow", "none", "--output", output)
    assert code == 1
    assert err.strip().splitlines()[-1] == f"error: No space left on device: {output / 'frames' / 's4.png'}"
    assert complete_pngs(output / "frames") == ["s1.png", "s2.png", "s3.png"]
    assert len(decoded(output / "shots_stylized.mp4")[0]) == 3
