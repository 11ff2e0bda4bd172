"""Video stylisation and temporal consistency: metrics on hand-made frames, the command end to end."""
import csv
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import glfa.clips as clips
import glfa.temporal as temporal
import video as video_cli
from glfa.checkpoint import save_state_dict
from glfa.cli import run_main
from glfa.errors import UserError
from glfa.images import read_image
from net import build_decoder, build_encoder, build_transform


def smooth_texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth random colour texture (blurred noise), so optical flow has something to follow."""
    noise = torch.rand(1, 3, height // 4, width // 4, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def translating_frames(count: int = 4, shift: int = 2, size: int = 40) -> torch.Tensor:
    """Frames of a texture sliding ``shift`` px to the right per frame, ``(T, 3, size, size)``."""
    texture = smooth_texture(size, size + shift * count)
    return torch.stack([texture[:, :, shift * (count - t):shift * (count - t) + size] for t in range(count)])


def test_natural_order_puts_frame2_before_frame10(tmp_path: Path):
    for name in ("frame10.png", "frame2.png", "frame1.png"):
        Image.new("RGB", (16, 16)).save(tmp_path / name)
    assert [p.name for p in clips.list_frames(tmp_path)] == ["frame1.png", "frame2.png", "frame10.png"]


def test_consecutive_difference_of_flat_frames():
    frames = torch.stack([torch.full((3, 5, 7), 0.1 * t) for t in range(4)])
    torch.testing.assert_close(temporal.consecutive_difference(frames), torch.full((3,), 0.1))
    still = frames[:1].expand(4, -1, -1, -1)
    torch.testing.assert_close(temporal.consecutive_difference(still), torch.zeros(3))


@pytest.mark.parametrize("flow", [False, True])
def test_step_metrics_equal_the_two_frame_series(flow):
    content = translating_frames()[:2]
    stylised = (content * 0.5 + torch.tensor([0.0, 0.2]).view(2, 1, 1, 1)).clamp(0, 1)
    step = temporal.step_metrics((content[0], stylised[0]), (content[1], stylised[1]), flow)
    whole = temporal.temporal_metrics(content, stylised, temporal.backward_flows(content) if flow else None)
    assert step.keys() == whole.keys()
    for name in whole:
        torch.testing.assert_close(step[name], whole[name])
    assert step["stylised_diff"].item() > 0.1


def test_warp_with_an_integer_flow_shifts_the_image():
    image = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    flows = torch.zeros(2, 2, 4, 6)
    flows[:, 1] = 2.0                                   # sample two columns to the right
    warped, inside = temporal.warp(image, flows)
    torch.testing.assert_close(warped[..., :4], image[..., 2:])
    assert inside[..., :4].min() == 1 and inside[..., 4:].max() == 0


def test_warped_error_follows_motion_that_plain_differences_do_not():
    frames = translating_frames()
    flows = temporal.backward_flows(frames)
    assert flows.shape == (3, 2, 40, 40)
    # Interior flow recovers the 2 px shift: frame t at column c shows frame t-1 at c - 2.
    assert flows[:, 1, 8:-8, 8:-8].median() == pytest.approx(-2.0, abs=0.1)
    plain, warped = temporal.consecutive_difference(frames), temporal.warped_error(frames, flows)
    assert (warped < 0.25 * plain).all()


def test_stylised_frames_as_steady_as_content_give_ratio_one():
    # Noise of its own in every frame gives the content a warped error above the ratio floor.
    noise = 0.03 * torch.randn(4, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    content = (translating_frames() * 0.5 + noise).clamp(0, 1)
    flickering = content + torch.tensor([0.0, 0.3, 0.0, 0.3]).view(4, 1, 1, 1)
    steady = temporal.summary(temporal.temporal_metrics(content, content, temporal.backward_flows(content)))
    assert steady["content_warped"] > temporal.RATIO_FLOOR
    assert steady["diff_ratio"] == pytest.approx(1.0) and steady["warped_ratio"] == pytest.approx(1.0)
    flicker = temporal.summary(temporal.temporal_metrics(content, flickering))
    assert flicker["diff_ratio"] > 2 and "warped_ratio" not in flicker
    # Without the noise the content follows its flow almost exactly: no warped ratio, just the values.
    clean = translating_frames() * 0.5
    exact = temporal.summary(temporal.temporal_metrics(clean, clean, temporal.backward_flows(clean)))
    assert exact["content_warped"] < temporal.RATIO_FLOOR and "warped_ratio" not in exact
    assert exact["diff_ratio"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Encoder, decoder and LCT checkpoints with random weights: the plumbing needs no training."""
    folder = tmp_path_factory.mktemp("random_model")
    torch.manual_seed(0)
    paths = {"vgg": folder / "vgg.pth", "decoder": folder / "decoder_iter_1.pth.tar", "lct": folder / "lct_iter_1.pth.tar"}
    save_state_dict(build_encoder("photo"), paths["vgg"])
    save_state_dict(build_decoder("photo"), paths["decoder"])
    save_state_dict(build_transform("lct", "photo"), paths["lct"])
    return paths


def test_video_command_writes_frames_gif_tables_and_figures(tmp_path: Path, random_model: dict[str, Path],
                                                            capsys: pytest.CaptureFixture):
    frames_dir, output = tmp_path / "frames", tmp_path / "out"
    frames_dir.mkdir()
    frames = translating_frames(count=5, size=32)
    for t, frame in enumerate(frames):
        Image.fromarray((frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(frames_dir / f"f{t}.png")
    Image.fromarray((smooth_texture(24, 24, seed=5).permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(tmp_path / "style.png")

    video_cli.main(["--frames_dir", str(frames_dir), "--style", str(tmp_path / "style.png"),
                    "--vgg", str(random_model["vgg"]), "--decoder", str(random_model["decoder"]),
                    "--LCT", str(random_model["lct"]), "--content_size", "0", "--style_size", "0",
                    "--flow", "tvl1", "--output", str(output), "--device", "cpu"])

    printed = capsys.readouterr().out
    assert "stylised_diff" in printed and "| stylised_warped |" in printed and "| warped_ratio |" in printed
    assert "frames_stylized.mp4 (25 fps)" in printed
    with av.open(str(output / "frames_stylized.mp4")) as movie:
        stream = movie.streams.video[0]
        assert (stream.average_rate, stream.width, stream.height) == (25, 32, 32)
        assert sum(1 for _ in movie.decode(stream)) == 5
    written = sorted((output / "frames").iterdir())
    assert [p.name for p in written] == [f"f{t}.png" for t in range(5)]
    assert Image.open(written[0]).size == (32, 32)
    with Image.open(output / "preview.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (64, 32)      # content | stylised side by side
        shown = np.asarray(gif.convert("RGB"), dtype=float)[:, :32] / 255      # the first frame's content half
        assert np.abs(shown - frames[0].permute(1, 2, 0).numpy()).mean() < 12 / 255   # 256 colours: ~9 levels off
    with open(output / "temporal.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and set(rows[0]) == {"step", "content_diff", "stylised_diff", "content_warped",
                                               "stylised_warped"}
    saved = torch.stack([read_image(path, 0) for path in clips.list_frames(frames_dir)])
    content_diff = temporal.consecutive_difference(saved)
    np.testing.assert_allclose([float(r["content_diff"]) for r in rows], content_diff.numpy(), rtol=1e-5)
    for figure in ("consistency_plot.png", "consistency_strip.png"):
        with Image.open(output / figure) as image:
            assert image.width > 100 and image.height > 100
    assert "Temporal consistency over 5 frames" in (output / "temporal.md").read_text()


def test_video_command_errors_in_one_line(tmp_path: Path, random_model: dict[str, Path], capsys: pytest.CaptureFixture):
    Image.new("RGB", (16, 16)).save(tmp_path / "only.png")
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: video_cli.main(["--frames_dir", str(tmp_path), "--style", str(tmp_path / "only.png"),
                                         "--vgg", str(random_model["vgg"]), "--decoder", str(random_model["decoder"]),
                                         "--LCT", str(random_model["lct"]), "--device", "cpu"]))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"error: {tmp_path} holds 1 frame(s); temporal consistency needs at least 2"]


def test_frames_of_different_sizes_are_refused_before_any_work(tmp_path: Path):
    Image.new("RGB", (16, 16)).save(tmp_path / "a1.png")
    Image.new("RGB", (16, 20)).save(tmp_path / "a2.png")
    with pytest.raises(UserError, match="a1.png is 16×16, a2.png is 16×20"):
        clips.check_frame_sizes(clips.list_frames(tmp_path))
