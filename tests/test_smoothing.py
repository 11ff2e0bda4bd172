"""``--smooth``: the box and guided filters (by hand, flat stays flat, edges stay sharp, tiny eps
returns the source), the tone step (by hand, and inside the Stylizer), tiled smoothing equal to
whole-image smoothing inside the Stylizer, and the flags of test.py, eval.py and video.py."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from function import box_filter, guided_filter
from glfa import Smoothing
from glfa.cli import run_main
from glfa.eval import EVALUATION, Figures, Lineup, ModelFiles, evaluate, find_pairs
from glfa.inference import Stylizer
from glfa.smoothing import (MAX_SMOOTH_EPS, MAX_TONE_GAIN, smooth_tiled, smoothing_option, styles_spread, tonal_levels,
                            tonal_spread, tone_offset)
from helpers import REPO_ROOT, lively, write_model
from net import build_decoder, build_encoder, build_transform

PHOTOS = REPO_ROOT / "test"


def load_command(name: str):
    spec = importlib.util.spec_from_file_location(f"smoothing_command_{name}", REPO_ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_stylizer(seed: int = 0) -> Stylizer:
    """A photo-mode Stylizer with random weights, its output around 0.5 (as in test_inference)."""
    torch.manual_seed(seed)
    decoder = lively(build_decoder("photo"))
    with torch.no_grad():
        decoder[-1].weight.mul_(0.3)
        decoder[-1].bias.fill_(0.5)
    return Stylizer(lively(build_encoder("photo")), decoder, lively(build_transform("lct")), "photo", device="cpu")


def noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# The filters
# --------------------------------------------------------------------------------------------

def test_box_filter_by_hand_including_borders():
    x = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4)   # rows 0 1 2 3 / 4 5 6 7 / 8 9 10 11
    box = box_filter(x, 1)[0, 0]
    assert box[0, 0] == pytest.approx((0 + 1 + 4 + 5) / 4)                 # corner: a 2×2 window
    assert box[0, 1] == pytest.approx((0 + 1 + 2 + 4 + 5 + 6) / 6)         # top edge: 2×3
    assert box[1, 1] == pytest.approx((0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10) / 9)
    assert box[1, 3] == pytest.approx((2 + 3 + 6 + 7 + 10 + 11) / 6)       # right edge: 3×2
    assert box[2, 3] == pytest.approx((6 + 7 + 10 + 11) / 4)
    # every value against the window sums written out, several channels and images at once
    batch = torch.stack([x[0], 2 * x[0] + 1]).repeat(1, 2, 1, 1)            # (2, 2, 3, 4)
    windows = torch.tensor([[(y0, y1, x0, x1) for x0, x1 in ((0, 2), (0, 3), (1, 4), (2, 4))]
                            for y0, y1 in ((0, 2), (0, 3), (1, 3))])
    expected = torch.tensor([[[[batch[n, c, y0:y1, x0:x1].mean() for y0, y1, x0, x1 in row] for row in windows]
                              for c in range(2)] for n in range(2)])
    torch.testing.assert_close(box_filter(batch, 1), expected)
    # more than 3 channels take the channels-last path: the same sums, a contiguous result
    many = box_filter(batch.repeat(1, 3, 1, 1), 1)
    torch.testing.assert_close(many, expected.repeat(1, 3, 1, 1))
    assert many.is_contiguous()
    assert torch.equal(box_filter(x, 0), x)
    torch.testing.assert_close(box_filter(x, 50), torch.full_like(x, 5.5))   # the window holds the whole image


def test_box_filter_is_fp32_for_half_inputs():
    assert box_filter(noise(1, 3, 5, 7).bfloat16(), 2).dtype == torch.float32
    assert guided_filter(noise(1, 3, 9, 8).bfloat16(), noise(1, 3, 9, 8, seed=1).half(), 2, 1e-2).dtype == torch.float32


@pytest.mark.parametrize("guide_channels", [3, 1])
def test_a_flat_image_stays_flat_and_keeps_its_value(guide_channels: int):
    guide = noise(2, guide_channels, 23, 31)                         # a busy guide
    flat = torch.full((2, 3, 23, 31), 0.3)
    flat[1] = torch.tensor([0.1, 0.5, 0.9]).view(3, 1, 1)
    for radius, eps in ((1, 1e-6), (4, 1e-3), (40, 1.0)):
        out = guided_filter(guide, flat, radius, eps)
        assert (out - flat).abs().max() < 1e-5


def noisy_step(guide_kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 40×40 step at column 20 of height 0.6 (0.2 → 0.8) plus noise of std 0.05 as the source,
    and a clean guide with the edge: grey levels, or two colours of equal brightness."""
    step = torch.full((1, 1, 40, 40), 0.2)
    step[..., 20:] = 0.8
    source = (step + 0.05 * torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    if guide_kind == "grey":
        guide = step.expand(1, 3, 40, 40)
    else:                                            # red | blue: the same sum of channels on both sides
        guide = torch.empty(1, 3, 40, 40)
        guide[..., :20] = torch.tensor([0.7, 0.3, 0.3]).view(3, 1, 1)
        guide[..., 20:] = torch.tensor([0.3, 0.3, 0.7]).view(3, 1, 1)
    return guide, source, step.expand(1, 3, 40, 40)


@pytest.mark.parametrize("guide_kind", ["grey", "colour"])
def test_a_step_edge_stays_sharp_while_the_noise_goes(guide_kind: str):
    guide, source, clean = noisy_step(guide_kind)
    out = guided_filter(guide, source, 4, 1e-3)
    jump = (out[..., 20] - out[..., 19]).mean()
    assert jump == pytest.approx(0.6, abs=0.03)                       # the full height, from one pixel to the next
    left, right = out[..., 2:38, 2:17], out[..., 2:38, 23:38]         # flat parts, away from the borders
    noise_before = (source - clean)[..., 2:38, 2:17].var()
    assert left.var() < noise_before / 10 and right.var() < noise_before / 10
    assert left.mean() == pytest.approx(0.2, abs=0.01) and right.mean() == pytest.approx(0.8, abs=0.01)
    # the check can fail: a plain box blur of the same radius smears the step over 9 columns
    blurred = box_filter(source, 4)
    assert (blurred[..., 20] - blurred[..., 19]).mean() < 0.2


def test_tiny_eps_and_the_source_as_guide_return_the_source():
    image = noise(1, 3, 30, 27)
    for radius in (1, 3):
        assert (guided_filter(image, image, radius, 1e-6) - image).abs().max() < 1e-3
    assert (guided_filter(image, image, 3, 1.0) - image).abs().max() > 0.1   # a large eps does smooth


def test_the_colour_guide_is_solved_exactly():
    """Against the guided filter written out window by window in float64 (one 3×3 solve each)."""
    guide, source = noise(1, 3, 7, 9), noise(1, 2, 7, 9, seed=1)
    radius, eps = 2, 1e-2
    g, p = guide[0].double().numpy(), source[0].double().numpy()
    a = np.zeros((7, 9, 3, 2))
    b = np.zeros((7, 9, 2))
    window = lambda y, x: (slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1))  # noqa: E731
    for y in range(7):
        for x in range(9):
            gi, pi = g[(slice(None), *window(y, x))].reshape(3, -1), p[(slice(None), *window(y, x))].reshape(2, -1)
            gc, pc = gi - gi.mean(1, keepdims=True), pi - pi.mean(1, keepdims=True)
            a[y, x] = np.linalg.solve(gc @ gc.T / gi.shape[1] + eps * np.eye(3), gc @ pc.T / gi.shape[1])
            b[y, x] = pi.mean(1) - a[y, x].T @ gi.mean(1)
    expected = np.stack([[a[window(y, x)].mean((0, 1)).T @ g[:, y, x] + b[window(y, x)].mean((0, 1))
                          for x in range(9)] for y in range(7)]).transpose(2, 0, 1)
    np.testing.assert_allclose(guided_filter(guide, source, radius, eps)[0].numpy(), expected, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Smoothing in the Stylizer: tiles, the content's frame, options
# --------------------------------------------------------------------------------------------

def test_smoothing_in_tiles_equals_smoothing_whole():
    guide, result = noise(1, 3, 61, 47), noise(1, 3, 61, 47, seed=1)
    smoothing = Smoothing(radius=3, eps=1e-3)
    whole = smoothing(guide, result)
    for tile in (8, 16, 33):
        assert (smooth_tiled(guide, result, smoothing, tile) - whole).abs().max() < 1e-5

    class NoHalo(Smoothing):                            # the comparison can fail: tiles without their halo
        reach = 0
    assert (smooth_tiled(guide, result, NoHalo(3, 1e-3), 16) - whole).abs().max() > 1e-2


def test_the_stylizer_smooths_tiled_images_like_whole_ones():
    stylizer = random_stylizer()
    content, style = noise(3, 101, 130, seed=1), noise(3, 90, 77, seed=2)   # 101 rows: padded, cropped back
    smoothing = Smoothing(radius=4, eps=1e-3, tone=False)
    plain = stylizer.stylize(content, [style], tile_size=10 ** 6, smooth=False)
    whole = stylizer.stylize(content, [style], tile_size=10 ** 6, smooth=smoothing)
    tiled = stylizer.stylize(content, [style], tile_size=64, smooth=smoothing)
    assert whole.shape == tiled.shape == content.shape and whole.dtype == torch.float32
    assert (tiled - whole).abs().max() < 1e-5
    # whole-image smoothing is the filter applied to the cropped result, guided by the content
    torch.testing.assert_close(whole, smoothing(content[None], plain[None])[0], atol=1e-6, rtol=0)
    assert (whole - plain).abs().mean() > 0.01 and whole.min() >= 0 and whole.max() <= 1


# --------------------------------------------------------------------------------------------
# The tone step
# --------------------------------------------------------------------------------------------

def grey(values: torch.Tensor) -> torch.Tensor:
    """A ``(1, 3, H, W)`` grey image (its luma is its value: the weights sum to 1)."""
    return values.expand(1, 3, *values.shape[-2:]).clone()


def test_tonal_spread_by_hand():
    ramp = grey((torch.arange(1000, dtype=torch.float32) / 999).view(10, 100))
    # sorted values k/999; the 1st percentile sits at position 0.01·999 = 9.99, the 99th at 989.01
    assert tonal_spread(ramp) == pytest.approx((989.01 - 9.99) / 999, abs=1e-5)
    assert tonal_spread(grey(torch.full((20, 30), 0.3))) == pytest.approx(0, abs=1e-7)
    # the styles' spreads are mixed with their weights
    wide, flat = ramp[0], grey(torch.full((20, 30), 0.3))[0]
    assert styles_spread([wide, flat], [0.25, 0.75]) == pytest.approx(0.25 * 0.98, abs=1e-5)


def test_tone_offset_stretches_the_large_scale_tones_by_hand():
    step = torch.full((64, 64), 0.4)
    step[:, 32:] = 0.6                  # spread 0.2 about a mean of 0.5; base radius 64 / 32 = 2 px
    finished = grey(step)
    assert tonal_levels(finished) == pytest.approx((0.4, 0.5, 0.6), abs=1e-6)
    offset = tone_offset(finished, 0.4, content_black=0.0)    # gain 0.4 / 0.2 = 2: offset (2 − 1)·(base − 0.5)
    assert offset.shape == (1, 1, 64, 64)
    # away from the step (beyond the two box filters' 4 px) the base is the image itself
    torch.testing.assert_close(offset[..., :, :28], torch.full((1, 1, 64, 28), -0.1), atol=1e-6, rtol=0)
    torch.testing.assert_close(offset[..., :, 36:], torch.full((1, 1, 64, 28), 0.1), atol=1e-6, rtol=0)
    # across the step it ramps smoothly: fine detail is not sharpened
    assert (offset[0, 0, 0, 1:] - offset[0, 0, 0, :-1]).min() >= 0 and offset[0, 0, 0].diff().max() < 0.05
    # never compresses: a target at or below the result's own spread gives zeros
    assert not tone_offset(finished, 0.2, 0.0).any() and not tone_offset(finished, 0.05, 0.0).any()
    # the gain is capped
    capped = tone_offset(finished, 10.0, 0.0)
    assert capped[0, 0, 0, 0] == pytest.approx(-(MAX_TONE_GAIN - 1) * 0.1, abs=1e-6)
    # crushes no blacks: the 1st percentile may go down to the content's 0.35, a gain of
    # (0.5 − 0.35) / (0.5 − 0.4) = 1.5, and not at all when the content's blacks are no deeper
    guarded = tone_offset(finished, 0.4, content_black=0.35)
    assert guarded[0, 0, 0, 0] == pytest.approx(-0.05, abs=1e-6) and guarded[0, 0, 0, -1] == pytest.approx(0.05, abs=1e-6)
    assert not tone_offset(finished, 0.4, content_black=0.41).any()
    assert not tone_offset(finished, 0.4, content_black=0.45).any()


def test_tone_offset_of_a_large_result_is_fitted_small_and_upsampled():
    rows = torch.linspace(0.3, 0.5, 1500).view(1500, 1).expand(1500, 1000)
    offset = tone_offset(grey(rows), 0.4, content_black=0.0)     # 1500 px: fitted on small copies
    assert offset.shape == (1, 1, 1500, 1000)
    # a linear ramp stays linear under the box filters (away from the borders): the offset is
    # (k − 1)·(value − mean) with k = 0.4 / 0.2·0.98 (the copy's 1st to 99th percentile)
    gain = 0.4 / tonal_spread(grey(rows))
    middle = rows[700:800, 400:600]
    torch.testing.assert_close(offset[0, 0, 700:800, 400:600], (gain - 1) * (middle - 0.4), atol=2e-3, rtol=0)


def test_the_stylizer_adds_the_tone_step_after_the_filter():
    stylizer = random_stylizer()
    content, style = noise(3, 101, 130, seed=1), noise(3, 90, 77, seed=2)
    plain = stylizer.stylize(content, [style], smooth=False, working_size=0)
    filtered = Smoothing(tone=False)(content[None], plain[None])
    assert tonal_spread(filtered) < 0.5 * tonal_spread(style[None])       # a washed-out result: the step acts
    content_black = tonal_levels(content[None])[0]
    expected = (filtered + tone_offset(filtered, tonal_spread(style[None]), content_black)).clamp(0, 1)[0]
    exact = stylizer.stylize(content, [style], working_size=0)               # the exact path
    torch.testing.assert_close(exact, expected, atol=1e-5, rtol=0)
    assert tonal_spread(exact[None]) > 1.2 * tonal_spread(filtered)
    # at a working size the offset rides on the models' constant term: the same picture here
    # (the photo is no larger than the working size, so nothing is resized)
    torch.testing.assert_close(stylizer.stylize(content, [style]), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(stylizer.stylize(content, [style], smooth=Smoothing(tone=False)), filtered[0],
                               atol=1e-4, rtol=0)
    # a content photo with deeper blacks allows a stronger stretch; one with none, none at all
    deep, flat = content.clone(), content * 0.2 + 0.6
    deep[:, :10] = 0.0
    assert tonal_spread(stylizer.stylize(deep, [style], working_size=0)[None]) > tonal_spread(exact[None])
    flat_plain = stylizer.stylize(flat, [style], smooth=False, working_size=0)
    torch.testing.assert_close(stylizer.stylize(flat, [style], working_size=0),
                               Smoothing(tone=False)(flat[None], flat_plain[None])[0], atol=1e-5, rtol=0)


def test_smooth_options_true_false_and_the_stylizers_default():
    assert smoothing_option(True) == Smoothing() and smoothing_option(False) is None and smoothing_option(None) is None
    assert smoothing_option(Smoothing(2, 0.01)) == Smoothing(2, 0.01)
    with pytest.raises(TypeError):
        smoothing_option("yes")
    for bad in ({"radius": 0}, {"radius": 2.5}, {"eps": 0.0}, {"eps": float("nan")}, {"eps": 1e-9}, {"tone": 1}):
        with pytest.raises(ValueError):
            Smoothing(**bad)
    content, style = noise(3, 37, 45, seed=3), noise(3, 40, 40, seed=4)
    stylizer = random_stylizer()
    assert stylizer.options.smooth == Smoothing()    # photo mode finishes by default
    default = stylizer.stylize(content, [style])
    torch.testing.assert_close(stylizer.stylize(content, [style], smooth=Smoothing()), default)
    torch.testing.assert_close(stylizer.stylize(content, [style], smooth=True), default)
    plain = stylizer.stylize(content, [style], smooth=False)
    assert (plain - default).abs().mean() > 0.01
    stylizer.options = stylizer.options.replace(smooth=False)    # as Stylizer(..., smooth=False) sets it
    assert stylizer.options.smooth is None
    torch.testing.assert_close(stylizer.stylize(content, [style]), plain)
    torch.testing.assert_close(stylizer.stylize(content, [style], smooth=True), default)
    pil = stylizer(Image.fromarray((content.permute(1, 2, 0).numpy() * 255).astype(np.uint8)),
                   Image.fromarray((style.permute(1, 2, 0).numpy() * 255).astype(np.uint8)), smooth=False)
    assert pil.size == (45, 37)


# --------------------------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_model(tmp_path_factory.mktemp("model"), 1)


def run_command(module, argv: list) -> int:
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: module.main([str(a) for a in argv]))
        sys.exit(0)
    return exit_info.value.code


def test_test_py_smooth_flags_reach_the_stylizer(model: tuple[Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture):
    command = load_command("test")
    base = ["--content", PHOTOS / "content" / "coast_dune.jpg", "--style", PHOTOS / "style" / "night_lake.jpg",
            "--decoder", model[0], "--LCT", model[1], "--content_size", 48, "--style_size", 32, "--device", "cpu",
            "--save_ext", ".png"]
    images = {}
    for name, flags in (("plain", ["--no-smooth"]), ("smooth", []), ("wide", ["--smooth_radius", 6,
                                                                                "--smooth_eps", 0.1])):
        assert run_command(command, [*base, *flags, "--output", tmp_path / name]) == 0, capsys.readouterr().err
        with Image.open(tmp_path / name / "coast_dune_stylized_night_lake.png") as image:
            images[name] = np.asarray(image, dtype=np.float32)
    assert images["plain"].shape == images["smooth"].shape
    assert np.abs(images["smooth"] - images["plain"]).mean() > 1
    assert np.abs(images["wide"] - images["smooth"]).mean() > 1
    assert command.parse_args(list(map(str, base))).options.smooth == Smoothing()        # the default in photo mode
    assert command.parse_args([*map(str, base), "--smooth"]).options.smooth == Smoothing()
    assert command.parse_args([*map(str, base), "--smooth_eps", "0.01"]).options.smooth == Smoothing(eps=0.01)
    assert command.parse_args([*map(str, base), "--no-tone"]).options.smooth == Smoothing(tone=False)
    assert command.parse_args([*map(str, base), "--no-smooth"]).options.smooth is None
    assert command.parse_args([*map(str, base), "--testing_mode", "art"]).options.smooth is None


def test_every_command_takes_the_smooth_flags():
    needed = {"test": ["--content", "c.jpg", "--style", "s.jpg"], "eval": ["--pairs", "p.txt"],
              "video": ["--frames_dir", "f", "--style", "s.jpg"]}
    for name, flags in needed.items():
        args = load_command(name).parse_args([*flags, "--smooth", "--smooth_radius", "3"])
        assert args.options.smooth == Smoothing(radius=3), name
        args = load_command(name).parse_args([*flags, "--no-tone"])
        assert args.options.smooth == Smoothing(tone=False), name


@pytest.mark.parametrize("name, needed", [("test", ["--content", "c.jpg", "--style", "s.jpg"]),
                                          ("eval", ["--pairs", "p.txt"]),
                                          ("video", ["--frames_dir", "f", "--style", "s.jpg"])])
def test_bad_smooth_flags_are_one_error_line(name: str, needed: list[str], capsys: pytest.CaptureFixture):
    command = load_command(name)
    for flags, expected in ((["--smooth_radius", "0"], "--smooth_radius"), (["--smooth_radius", "2.5"], "--smooth_radius"),
                            (["--smooth_eps", "0"], "--smooth_eps"), (["--smooth_eps", "nan"], "--smooth_eps"),
                            (["--smooth_eps", "-1"], "--smooth_eps"), (["--smooth_eps", "1e-9"], "--smooth_eps"),
                            (["--smooth_radius", "3"], "--smooth_radius sets the finish, which is off"),
                            (["--working_size", "256"], "--working_size sets the finish, which is off"),
                            (["--no-tone"], "--tone/--no-tone sets the finish, which is off"),
                            (["--working_size", "10"], "--working_size")):
        off = "off" in expected
        code = run_command(command, [*needed, "--no-smooth" if off else "--smooth", *flags])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert code == 2 and len(errors) == 1 and expected in errors[0] and "Traceback" not in err, (flags, err)


def test_eval_finishes_the_models_adds_raw_rows_and_leaves_the_baselines(model: tuple[Path, Path], tmp_path: Path):
    pairs = find_pairs(content_dir=PHOTOS / "content", style_dir=PHOTOS / "style", every_pair=True)[:2]
    spec = ModelFiles("m", *model, "lct")
    sizes, figures = EVALUATION.replace(content_size=32, style_size=32), Figures(zoom=None, height=32)
    rows = evaluate(pairs, Lineup([spec], baselines=("reinhard",), raw=True), tmp_path,
                    sizes.replace(smooth=Smoothing(radius=2, eps=1e-2)), figures=figures)
    assert [r.model for r in rows] == ["m", "m+raw", "reinhard"] * 2
    by_model = {r.model: r for r in rows[:3]}
    assert by_model["m+raw"].ssim != by_model["m"].ssim
    with Image.open(tmp_path / "results" / "m+raw" / f"{pairs[0].name}.png") as plain, \
            Image.open(tmp_path / "results" / "m" / f"{pairs[0].name}.png") as smoothed:
        assert np.abs(np.asarray(plain, dtype=np.float32) - np.asarray(smoothed, dtype=np.float32)).mean() > 1
    unsmoothed = evaluate(pairs[:1], Lineup([spec], baselines=("reinhard",)), tmp_path / "plain", sizes,
                          figures=figures)
    assert [r.model for r in unsmoothed] == ["m", "reinhard"]
    assert unsmoothed[1].ssim == by_model["reinhard"].ssim and unsmoothed[0].ssim == by_model["m+raw"].ssim


def test_issue20_5_an_eps_too_large_for_fp32_is_refused_by_the_api():
    """Case 5: eps from about 1e20 gave NaN in the API (fp32 determinants overflow from about
    1.8e19). ``Smoothing`` refuses eps above ``MAX_SMOOTH_EPS``; at that bound the result is
    still a finite, non-black image."""
    assert MAX_SMOOTH_EPS == 1e3
    for eps in (1e300, 1e20, 1.8e19, MAX_SMOOTH_EPS * 1.001, float("inf")):
        with pytest.raises(ValueError, match="Smoothing eps must be a number from 1e-06 to 1000"):
            Smoothing(eps=eps)
    stylizer = random_stylizer()
    content, style = noise(3, 48, 56, seed=5), noise(3, 40, 40, seed=6)
    plain = stylizer.stylize(content, [style], smooth=False)
    widest = stylizer.stylize(content, [style], smooth=Smoothing(eps=MAX_SMOOTH_EPS))
    assert torch.isfinite(widest).all() and widest.mean() > 0.1
    assert (widest.mean((1, 2)) - plain.mean((1, 2))).abs().max() < 0.02       # a blur keeps the colours


def test_issue20_5_test_py_refuses_an_eps_too_large_for_fp32(model: tuple[Path, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture):
    """Case 5: ``test.py --smooth_eps 1e300`` wrote an all-black image and exited 0; now one error
    line naming the flag and its range, and nothing written."""
    command = load_command("test")
    base = ["--content", PHOTOS / "content" / "coast_dune.jpg", "--style", PHOTOS / "style" / "night_lake.jpg",
            "--decoder", model[0], "--LCT", model[1], "--content_size", 32, "--style_size", 32, "--device", "cpu",
            "--output", tmp_path / "out", "--smooth"]
    for eps in ("1e300", "1e20", "1001"):
        code = run_command(command, [*base, "--smooth_eps", eps])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
        assert errors[0].endswith(f"argument --smooth_eps: must be from 1e-06 to 1000, got {eps}"), errors[0]
    assert not (tmp_path / "out").exists()
    assert command.parse_args([*map(str, base), "--smooth_eps", "1000"]).options.smooth == Smoothing(eps=1000.0)
