"""Inference: tiled stylisation equals whole-image stylisation (no seams), its building blocks
(receptive reach, tile spans, exact statistics from chunks), and reading images ahead."""

import pytest
import torch

from function import calc_mean_std
from glfa.inference import Stylizer
from glfa.tiles import chunked_mean_std, combine_mean_std, reach, spans
from helpers import random_stylizer
from net import build_decoder, build_encoder


def images(height: int, width: int, seed: int = 1) -> tuple[torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    content = torch.rand(3, height, width, generator=generator)
    styles = [torch.rand(3, 90, 77, generator=generator), torch.rand(3, 64, 81, generator=generator)]
    return content, styles


@pytest.mark.parametrize("mode, kind, size, tile, options", [
    ("photo", "lct", (170, 203), 64, {}),
    ("photo", "sct", (101, 130), 64, {"alpha": 0.6}),
    ("photo", "lct", (101, 130), 64, {"alpha": 0.7, "weights": [0.3, 0.7]}),
    ("art", "lct", (100, 123), 64, {"alpha": 0.8, "weights": [0.6, 0.4]}),
    ("art", "sct", (100, 123), 64, {}),
])
def test_tiled_output_equals_whole_output(mode, kind, size, tile, options):
    stylizer = random_stylizer(mode, kind)
    content, styles = images(*size)
    styles = styles if "weights" in options else styles[:1]
    whole = stylizer.stylize(content, styles, tile_size=10 ** 6, **options)
    tiled = stylizer.stylize(content, styles, tile_size=tile, **options)
    assert tiled.shape == whole.shape == content.shape
    assert whole.std() > 0.03 and ((whole > 0) & (whole < 1)).float().mean() > 0.9  # varied, not clipped
    assert (tiled - whole).abs().max() < 1e-4


@pytest.mark.parametrize("halo", ["encoder_halo", "decoder_halo"])
def test_tiles_without_halo_show_seams(halo):
    """The comparison above can fail: tiles without their halo differ along the tile borders."""
    stylizer = random_stylizer("photo", "lct")
    content, styles = images(96, 128)
    whole = stylizer.stylize(content, styles[:1], tile_size=10 ** 6)
    setattr(stylizer, halo, 0)
    assert (stylizer.stylize(content, styles[:1], tile_size=64) - whole).abs().max() > 1e-2


def test_cpu_defaults_to_channels_last_with_the_same_result():
    """The CPU's default layout is channels-last (the faster one there); its result is NCHW's."""
    default, nchw = random_stylizer("photo", "lct"), random_stylizer("photo", "lct", channels_last=False)
    assert default.memory_format == torch.channels_last and nchw.memory_format == torch.contiguous_format
    def layout_of_3x3(stylizer: Stylizer) -> bool:
        conv = next(m for m in stylizer.encoder.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
        return conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert layout_of_3x3(default) and not layout_of_3x3(nchw)
    content, styles = images(96, 112)
    torch.testing.assert_close(default.stylize(content, styles[:1]), nchw.stylize(content, styles[:1]),
                               atol=1e-5, rtol=0)


def test_small_images_are_not_tiled_on_cpu_by_default():
    stylizer = random_stylizer("photo", "lct")
    assert stylizer._tile_for(512, 680, None) == 0
    tile = stylizer._tile_for(4096, 4096, None)
    assert 0 < tile <= 2048 and tile % 64 == 0
    assert stylizer._tile_for(300, 200, 130) == 128          # rounded to the downscale


def test_reach_by_hand():
    # photo encoder: 3×3 convs add 1, 1, then ×2 steps: 2, 2 (+1 pool each before), then 4.
    assert reach(build_encoder("photo")) == 1 + 1 + 1 + 2 + 2 + 2 + 4
    assert reach(build_encoder("art")) == 13 + 3 * 4 + 4 + 8
    # photo decoder in feature pixels: two convs at 1, two at 1/2, two at 1/4.
    assert reach(build_decoder("photo")) == 2 + 1 + 0.5


def test_spans_cover_the_range_once():
    for length, tile, halo, multiple in [(200, 96, 40, 8), (4096, 2048, 16, 4), (50, 64, 4, 1), (1025, 512, 4, 1)]:
        parts = spans(length, tile, halo, multiple)
        assert [p[0] for p in parts[1:]] == [p[1] for p in parts[:-1]]
        assert parts[0][0] == 0 and parts[-1][1] == length
        for start, end, halo_start, halo_end in parts:
            assert start % multiple == 0 and end - start <= tile
            assert halo_start == max(0, start - halo) and halo_end == min(length, end + halo)


def test_chunked_statistics_are_exact():
    feat = torch.randn(2, 5, 37, 11, dtype=torch.float64) * 3 + 100  # a large mean tests cancellation
    mean, std = chunked_mean_std(feat.float(), rows=8)
    expected_mean, expected_std = calc_mean_std(feat)
    torch.testing.assert_close(mean.double(), expected_mean, rtol=1e-6, atol=0)
    torch.testing.assert_close(std.double(), expected_std, rtol=1e-5, atol=0)


def test_combine_mean_std_by_hand():
    # chunks [1, 2] and [3, 4, 5, 6]: mean 3.5, unbiased variance 17.5 / 5 = 3.5.
    counts = torch.tensor([2.0, 4.0])
    means = torch.tensor([1.5, 4.5])
    sq_devs = torch.tensor([0.5, 5.0])
    mean, std = combine_mean_std(counts, means, sq_devs, eps=0.0)
    assert mean.item() == pytest.approx(3.5) and std.item() == pytest.approx(3.5 ** 0.5)


def test_preserve_color_recolours_the_style_to_the_content():
    """``preserve_color`` gives the style image the content's colour statistics before transfer
    (README): the same result as stylising with ``coral(style, content)``; recolouring the
    content to the style instead gives a clearly different image."""
    from function import coral
    stylizer = random_stylizer("photo", "lct")
    content, styles = images(64, 80)
    style = styles[0] * torch.tensor([1.0, 0.4, 0.2])[:, None, None]     # a strongly tinted style
    kept = stylizer.stylize(content, [style], preserve_color=True)
    assert ((kept > 0) & (kept < 1)).float().mean() > 0.9                 # not clipped flat
    torch.testing.assert_close(kept, stylizer.stylize(content, [coral(style, content)]), atol=1e-5, rtol=0)
    wrong_direction = stylizer.stylize(coral(content, style), [style])
    assert (wrong_direction - kept).abs().mean() > 0.02
