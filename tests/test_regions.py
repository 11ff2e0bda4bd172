"""Region-wise transfer (docs/regions.md): masked statistics against a hand computation, the
result with one label equal to today's, tiled equal to whole, the maps' colour snapping and
resizing, automatic regions, and the commands with maps (bad inputs in one line)."""
import copy
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import glfa.autoregions as autoregions
import glfa.segments as segments
from function import calc_mean_std, masked_cov, masked_mean_std
from glfa.clips import FrameFolder
from glfa.errors import UserError
from glfa.eval import EVALUATION, Configured, Figures, Lineup, ModelFiles, evaluate, find_pairs, with_segments
from glfa.images import ORIENTATION_TAG, list_images, read_image, to_pil
from glfa.regions import MIN_REGION_POSITIONS, region_statistics
from glfa.segments import (LabelMap, as_label_map, check_aspect, colour_labels, feature_labels, majority_pool,
                           check_map_file, maps_by_name, match_colours, read_label_map, resize_nearest)
from glfa.tiles import MIN_TILE_SIZE, chunked_mean_std
from glfa.video import frame_regions
from helpers import random_stylizer, run_script, write_model
from net import SCT, build_transform

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def two_colour_map(width: int, height: int, split: float = 0.5, top=RED, bottom=BLUE) -> Image.Image:
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:round(height * split)], pixels[round(height * split):] = top, bottom
    return Image.fromarray(pixels)


def pictures(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, 72, 88, generator=generator), torch.rand(3, 64, 60, generator=generator)


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------

def test_masked_statistics_by_hand():
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(1, 5, 4, 6, generator=gen, dtype=torch.float64) * 2 + 3
    mask = torch.rand(4, 6, generator=gen) > 0.4
    picked = feat[0].numpy()[:, mask.numpy()]                               # (C, n)
    mean, std = masked_mean_std(feat, mask)
    np.testing.assert_allclose(mean.flatten(), picked.mean(1))
    np.testing.assert_allclose(std.flatten(), np.sqrt(picked.var(1, ddof=1) + 1e-5))
    np.testing.assert_allclose(masked_cov(feat, mask)[0], picked @ picked.T / picked.shape[1])
    chunked = chunked_mean_std(feat.float(), rows=1, mask=mask)
    torch.testing.assert_close(chunked[0].double(), mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked[1].double(), std, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["photo", "art"])
def test_sct_region_statistics_by_hand(mode):
    """A style region's statistics: its mean and std, and the 32×32 matrix of snet's output on the
    feature centred by the region's mean, over the outputs whose window is centred in the region."""
    torch.manual_seed(0)
    sct = SCT(mode)
    channels, border = (256, 1) if mode == "photo" else (512, 2)
    gen = torch.Generator().manual_seed(1)
    feat = torch.relu(torch.randn(1, channels, 9, 10, generator=gen) + 0.5)
    mask = torch.zeros(9, 10, dtype=torch.bool)
    mask[2:7, 3:9] = True
    mask[4, 5] = False
    with torch.no_grad():
        stats = sct.style_statistics(feat, mask)
    double = copy.deepcopy(sct).double()
    picked = feat.double()[0][:, mask]
    mean = picked.mean(1)
    with torch.no_grad():
        out = double.snet(feat.double() - mean.view(1, -1, 1, 1))[0]      # the whole map, valid convs
    inner = mask[border:-border, border:-border]
    z = out[:, inner]
    np.testing.assert_allclose(stats.cov[0].double(), z @ z.T / z.shape[1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.mean.flatten().double(), mean, rtol=1e-6)
    np.testing.assert_allclose(stats.std.flatten().double(), (picked.var(1) + 1e-5).sqrt(), rtol=1e-5)


def test_region_statistics_regions_and_fallback():
    """One region per label both maps hold on enough positions; a label the style lacks falls back
    to region 0, the whole images' statistics."""
    transform = build_transform("adain")
    gen = torch.Generator().manual_seed(2)
    content, style = torch.randn(1, 4, 12, 16, generator=gen), torch.randn(1, 4, 14, 12, generator=gen)
    content_labels = torch.zeros(12, 16, dtype=torch.long)
    content_labels[6:], content_labels[:, 12:] = 1, 7                # 7: not in the style
    style_labels = torch.zeros(14, 12, dtype=torch.long)
    style_labels[7:] = 1
    whole_content, whole_style = calc_mean_std(content), transform.style_statistics(style)
    stats, notes = region_statistics(transform, content, LabelMap(content_labels), style, LabelMap(style_labels),
                                     whole_content, lambda: whole_style)
    assert stats.index[0, 0] == 1 and stats.index[-1, 0] == 2 and (stats.index[:, 12:] == 0).all()
    torch.testing.assert_close(stats.content_mean[0], whole_content[0][0])
    torch.testing.assert_close(stats.style.std[0], whole_style.std[0])
    torch.testing.assert_close(stats.content_mean[2], masked_mean_std(content, content_labels == 1)[0][0])
    torch.testing.assert_close(stats.style.mean[1], masked_mean_std(style, style_labels == 0)[0][0])
    assert len(notes) == 1 and "label(s) 7 " in notes[0] and "whole style" in notes[0]


def test_small_regions_fall_back_and_are_noted():
    transform = build_transform("adain")
    content, style = torch.randn(1, 4, 12, 16), torch.randn(1, 4, 14, 12)
    content_labels, style_labels = torch.zeros(12, 16, dtype=torch.long), torch.zeros(14, 12, dtype=torch.long)
    content_labels[:3, :3] = 5                                       # 9 positions < MIN_REGION_POSITIONS
    style_labels[:7] = 5
    stats, notes = region_statistics(transform, content, LabelMap(content_labels), style, LabelMap(style_labels),
                                     calc_mean_std(content), lambda: transform.style_statistics(style))
    assert 9 < MIN_REGION_POSITIONS and (stats.index[:3, :3] == 0).all() and (stats.index[3:] == 1).all()
    assert any(f"fewer than {MIN_REGION_POSITIONS}" in note for note in notes)


# ---------------------------------------------------------------------------------------------
# The Stylizer with maps
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["lct", "sct", "adain"])
def test_one_label_gives_todays_result(kind):
    stylizer = random_stylizer("photo", kind)
    content, style = pictures()
    today = stylizer.stylize(content, [style])
    one_colour = stylizer.stylize(content, [style], content_mask=two_colour_map(44, 36, 1.0),
                                  style_masks=[two_colour_map(60, 64, 1.0)])
    labels = stylizer.stylize(content, [style], content_mask=np.full((72, 88), 3),
                              style_masks=[torch.full((64, 60), 3)])
    torch.testing.assert_close(one_colour, today, rtol=0, atol=1e-5)
    torch.testing.assert_close(labels, today, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["lct", "adain"])
def test_tiled_equals_whole_with_maps(kind):
    stylizer = random_stylizer("photo", kind)
    content = pictures()[0]
    style = torch.rand(3, 80, 60, generator=torch.Generator().manual_seed(2))   # both tiled at the smallest tile
    content_map, style_map = np.zeros((72, 88), np.int64), np.zeros((80, 60), np.int64)
    content_map[:30], content_map[45:, 60:] = 1, 2                  # 2: not in the style, the whole style's
    style_map[:40] = 1
    options = dict(content_mask=content_map, style_masks=[style_map])
    whole = stylizer.stylize(content, [style], tile_size=10 ** 6, **options)
    tiled = stylizer.stylize(content, [style], tile_size=MIN_TILE_SIZE, **options)
    assert (whole - stylizer.stylize(content, [style])).abs().max() > 1e-2     # the maps matter
    assert (tiled - whole).abs().max() < 1e-4


def test_api_takes_pil_maps_and_arrays_and_matches_regions():
    """Swapping the style's two regions changes the result; maps of another size but the same shape work."""
    stylizer = random_stylizer("photo", "lct")
    content, style = pictures()
    style = torch.cat((style[:, :32] * 0.3, style[:, 32:] * 0.3 + 0.7), dim=1)   # dark top, light bottom
    content_image = Image.fromarray((content.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    matched = stylizer(content_image, style, content_mask=two_colour_map(176, 144),
                       style_mask=two_colour_map(60, 64))
    swapped = stylizer(content_image, style, content_mask=two_colour_map(176, 144, top=BLUE, bottom=RED),
                       style_mask=two_colour_map(60, 64))
    assert isinstance(matched, Image.Image) and matched.size == (88, 72)
    top = lambda image: np.asarray(image)[:28].mean()  # noqa: E731
    assert top(matched) < top(swapped) - 5                           # the top took the dark style region


def test_stylize_takes_pil_images_with_maps_and_checks_its_arguments_first():
    """``stylize`` takes PIL images with maps (as tensors, the same result); alpha, weights and the
    images are checked before the maps are."""
    stylizer = random_stylizer("photo", "lct")
    content, style = (torch.round(image * 255) / 255 for image in pictures())    # exactly 8-bit, as PIL holds it
    pil_content, pil_style = (to_pil(image) for image in (content, style))
    options = dict(content_mask=two_colour_map(88, 72), style_masks=[two_colour_map(60, 64)])
    from_pil = stylizer.stylize(pil_content, [pil_style], **options)
    torch.testing.assert_close(from_pil, stylizer.stylize(content, [style], **options), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="alpha must be in"):
        stylizer.stylize(content, [style], alpha=2.0, content_mask=np.zeros((1, 1)), style_masks=[])
    with pytest.raises(ValueError, match="holds NaN"):
        stylizer.stylize(content * float("nan"), [style], auto_regions=2)


def test_auto_regions_are_deterministic_and_k_labelled():
    gen = torch.Generator().manual_seed(3)
    content, style = torch.relu(torch.randn(1, 64, 20, 24, generator=gen)), torch.relu(torch.randn(1, 64, 18, 16,
                                                                                                 generator=gen))
    first = autoregions.joint_regions(content, style, 4)
    second = autoregions.joint_regions(content, style, 4)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert first[0].shape == (20, 24) and first[1].shape == (18, 16)
    assert set(torch.cat([first[0].flatten(), first[1].flatten()]).tolist()) == set(range(4))
    stylizer = random_stylizer("photo", "lct")
    image, style_image = pictures()
    torch.testing.assert_close(stylizer.stylize(image, [style_image], auto_regions=3),
                               stylizer.stylize(image, [style_image], auto_regions=3), rtol=0, atol=0)


def test_api_refuses_maps_for_one_side_and_maps_with_auto_regions():
    stylizer = random_stylizer("photo", "adain")
    content, style = pictures()
    with pytest.raises(UserError, match="content segmentation map needs a style map"):
        stylizer.stylize(content, [style], content_mask=np.zeros((72, 88), np.int64))
    with pytest.raises(UserError, match="not both"):
        stylizer.stylize(content, [style], content_mask=np.zeros((72, 88), np.int64),
                         style_masks=[np.zeros((64, 60), np.int64)], auto_regions=2)
    with pytest.raises(UserError, match="another aspect ratio"):
        stylizer.stylize(content, [style], content_mask=np.zeros((100, 100), np.int64),
                         style_masks=[np.zeros((64, 60), np.int64)])
    with pytest.raises(TypeError, match="integers"):
        as_label_map(np.zeros((4, 4)))


def test_issue27_item17_empty_maps_and_a_lone_style_map_are_clear_errors():
    """issue 27 item 17: content_mask=np.zeros((0, 0), int) raised a bare IndexError and
    style_masks=<one PIL image> "object of type 'PngImageFile' has no len()"; a map flipped with
    numpy (negative strides) could not be read at all."""
    stylizer = random_stylizer("photo", "adain")
    content, style = pictures()
    halves = np.repeat(np.arange(2), 36)[:, None].repeat(88, 1)
    for empty in (np.zeros((0, 0), int), np.zeros((0, 5), int), Image.new("RGB", (0, 0))):
        with pytest.raises(UserError, match=r"^the content map is empty \(\d+×\d+ (px|labels)\)$"):
            stylizer.stylize(content, [style], content_mask=empty, style_masks=[halves[:64, :60]])
    with pytest.raises(TypeError, match=r"^style_masks is a list of maps, one per style image, not a Image: "
                                        r"for one style, give \[map\]$"):
        stylizer.stylize(content, [style], content_mask=halves, style_masks=Image.new("RGB", (60, 64)))
    flipped = stylizer.stylize(content, [style], content_mask=np.flipud(halves), style_masks=[halves[:64, :60]])
    torch.testing.assert_close(flipped, stylizer.stylize(content, [style], content_mask=halves[::-1].copy(),
                                                         style_masks=[halves[:64, :60]]))


# ---------------------------------------------------------------------------------------------
# Maps: snapping, resizing, pooling
# ---------------------------------------------------------------------------------------------

def test_colours_snap_to_the_labels():
    """Colours on at least 1% of the map are labels unless close to a more frequent one; the rest,
    anti-aliased edges, take the nearest label."""
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[:, :100], rgb[:, 100:] = RED, BLUE
    rgb[:5, :100] = (254, 0, 1)                      # 2.5%, but a variant of red
    rgb[50:60, 150:156] = WHITE                      # 0.3%: too small to be a label, snapped to blue
    rgb[:, 99] = (200, 0, 55)                        # an anti-aliased edge, nearer red
    rgb[:, 100] = (60, 0, 195)                       # nearer blue
    rgb[80:100, 20:40] = (0, 255, 0)                 # 2%: a label
    labels = colour_labels(rgb)
    red, blue, green = 0xFF0000, 0x0000FF, 0x00FF00
    assert set(np.unique(labels).tolist()) == {red, blue, green}
    assert (labels[:, :100][:80] == red).all() and (labels[:, 100:] == blue).all()
    assert (labels[80:, 20:40] == green).all()


def labelled_colours(height: int, width: int, noise: float, seed: int = 0) -> np.ndarray:
    """An ``(H, W, 3)`` map of 50 label colours in blocks with a fraction ``noise`` of its pixels
    random colours (as anti-aliasing and lossy saving leave)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    rgb = palette[np.repeat(np.repeat(rng.integers(0, 50, (height // 40, width // 40)), 40, 0), 40, 1)]
    noisy = rng.random(rgb.shape[:2]) < noise
    rgb[noisy] = rng.integers(0, 256, (int(noisy.sum()), 3))
    return rgb


def test_issue27_item7_colours_are_counted_in_bounded_memory():
    """issue 27 item 7: reading a map's colours took 49 bytes a pixel for two colours and, with
    many noise colours, colours × labels × 3 float64 (622 bytes a pixel for a 1-Mpx map with 47
    labels, 3.8 GB at 2.6 Mpx); the labels stay the same."""
    two = np.zeros((1000, 1000, 3), np.uint8)
    two[500:] = BLUE
    for rgb, budget in ((two, 24), (labelled_colours(1000, 1000, 0.2), 64)):
        tracemalloc.start()
        labels = colour_labels(rgb)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak / rgb[..., 0].size < budget, peak / rgb[..., 0].size
        packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        kept = np.isin(packed, np.unique(labels))
        assert kept.mean() > 0.75 and np.array_equal(labels[kept], packed[kept])    # label pixels keep their colour
    assert len(np.unique(labels)) == 47


def test_issue27_item7_large_maps_are_reduced_before_their_colours_are_read(monkeypatch):
    """issue 27 item 7: a 12000×7500 two-colour PNG as a map took 6 GB (the same file as a photo:
    1.8 GB); a map over MAX_MAP_PIXELS is reduced by nearest neighbours first, keeping its labels
    and its shape."""
    monkeypatch.setattr(segments, "MAX_MAP_PIXELS", 20_000)
    label_map = as_label_map(two_colour_map(1200, 750, split=0.3), "the map")
    height, width = label_map.labels.shape
    assert height * width <= 20_000 and abs(width / height - 1.6) < 0.02
    red = torch.tensor(int("ff0000", 16))
    assert torch.equal(label_map.labels[: round(0.3 * height) - 1], red.expand(round(0.3 * height) - 1, width))
    assert set(label_map.labels.unique().tolist()) == {int("ff0000", 16), int("0000ff", 16)}


def test_issue27_item8_majority_pool_is_the_blockwise_vote_for_any_number_of_labels():
    """issue 27 item 8: pooling looped over the labels, so an integer map with a label per pixel
    cost labels × pixels (320×512 labels on a 512×320 pair: 68 s, against 2.2 s with two). The
    vectorised vote equals a block-by-block count, partial blocks and ties (smaller label) included."""
    generator = torch.Generator().manual_seed(0)
    for labels, factor in ((torch.randint(0, 3, (37, 30), generator=generator), 4),
                           (torch.randint(-5, 1000, (21, 26), generator=generator) * 7919, 3),
                           (torch.arange(40 * 64).reshape(40, 64), 4)):
        expected = torch.zeros((-(-labels.shape[0] // factor), -(-labels.shape[1] // factor)), dtype=torch.long)
        for row in range(expected.shape[0]):
            for col in range(expected.shape[1]):
                block = labels[row * factor:(row + 1) * factor, col * factor:(col + 1) * factor].flatten().tolist()
                expected[row, col] = min(block, key=lambda label: (-block.count(label), label))
        assert torch.equal(majority_pool(labels, factor), expected)


def test_issue27_item8_a_label_per_pixel_stylises_with_short_notes(capsys):
    """issue 27 item 8: an integer array with a label per pixel stylises (every label too small: the
    whole images' statistics, so the plain result) with notes that name ten labels and count the rest."""
    stylizer = random_stylizer("photo", "adain")
    content, style = pictures()
    labels = np.arange(72 * 88).reshape(72, 88)
    result = stylizer.stylize(content, [style], content_mask=labels, style_masks=[labels[:64, :60]])
    torch.testing.assert_close(result, stylizer.stylize(content, [style]))
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes and all(len(note) < 300 and " more " in note for note in notes), notes


def test_issue27_item9_grey_index_maps_are_read_as_label_numbers():
    """issue 27 item 9: a grey map holding labels 0/1/2 (8- or 16-bit) read as three near-black
    colours merged into one label, so both maps gave the result without maps, silently. Such maps
    are now label numbers, as the same integer array; grey levels far apart are still colours."""
    stylizer = random_stylizer("photo", "lct")
    content, style = pictures()
    thirds = [np.repeat(np.arange(3), -(-height // 3))[:height, None].repeat(width, 1)
              for height, width in ((72, 88), (64, 60))]
    plain = stylizer.stylize(content, [style])
    by_array = stylizer.stylize(content, [style], content_mask=thirds[0], style_masks=[thirds[1]])
    assert (by_array - plain).abs().mean() > 1e-3
    for mode, dtype in (("L", np.uint8), ("I;16", np.uint16)):
        maps = [Image.fromarray(labels.astype(dtype)) for labels in thirds]
        assert maps[0].mode == mode
        assert as_label_map(maps[0]).labels.unique().tolist() == [0, 1, 2] and not as_label_map(maps[0]).colours
        torch.testing.assert_close(stylizer.stylize(content, [style], content_mask=maps[0], style_masks=[maps[1]]),
                                   by_array, rtol=0, atol=0)
    spread = as_label_map(Image.fromarray((thirds[0] * 127).astype(np.uint8)))
    assert spread.colours and spread.labels.unique().tolist() == [0, 0x7f7f7f, 0xfefefe]


def test_label_colours_match_across_maps():
    content = as_label_map(two_colour_map(20, 10, top=(0, 255, 0), bottom=WHITE))
    style = as_label_map(two_colour_map(20, 10, top=(0, 255, 1), bottom=BLUE))
    matched = match_colours(content, style)
    assert set(matched.labels.unique().tolist()) == {0x00FF00, 0x0000FF}
    assert matched.name(0x00FF00) == "#00ff00"


def test_maps_resize_with_nearest_neighbours_and_pool_by_majority():
    labels = torch.tensor([[1, 2], [3, 4]])
    assert torch.equal(resize_nearest(labels, 4, 6), labels.repeat_interleave(2, 0).repeat_interleave(3, 1))
    one_short = torch.arange(393)[:, None].expand(393, 700)             # a map one row shorter than its photo
    resized = resize_nearest(one_short, 394, 700)
    assert resized.shape == (394, 700) and resized[0, 0] == 0 and resized[-1, 0] == 392
    check_aspect((700, 393), (700, 394), "map")
    check_aspect((700, 393), (512, 288), "map")
    with pytest.raises(UserError, match="another aspect ratio"):
        check_aspect((700, 500), (700, 394), "map")
    blocks = torch.tensor([[1, 1, 2, 2, 5], [1, 2, 2, 2, 5], [3, 3, 4, 4, 5]])
    assert torch.equal(majority_pool(blocks, 2), torch.tensor([[1, 2, 5], [3, 4, 5]]))
    pooled = feature_labels(LabelMap(torch.zeros(10, 13, dtype=torch.long)), (20, 26), (5, 7), 4)
    assert pooled.labels.shape == (5, 7)


def test_the_shared_map_one_pixel_short_fits_its_photo(shared_dir: Path):
    pairs = shared_dir / "data" / "photo_pairs"
    if not (pairs / "content_seg" / "in7.png").is_file():
        pytest.skip("no shared photo pairs")
    photo = read_image(pairs / "content" / "in7.png", long_side=512)
    label_map = read_label_map(pairs / "content_seg" / "in7.png", "content")
    assert label_map.labels.shape[0] + 1 == Image.open(pairs / "content" / "in7.png").height
    pooled = feature_labels(label_map, tuple(photo.shape[-2:]), (-(-photo.shape[1] // 4), -(-photo.shape[2] // 4)), 4)
    assert set(pooled.labels.unique().tolist()) == {0x000000, 0xFFFFFF}


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny model, two content photos and a style photo, with maps (one a different size)."""
    root = tmp_path_factory.mktemp("regions")
    decoder, lct = write_model(root / "model", 1)
    generator = np.random.default_rng(0)
    for folder, names, size in (("content", ["a", "b"], (64, 48)), ("style", ["s"], (72, 64))):
        (root / folder).mkdir()
        (root / f"{folder}_seg").mkdir()
        for name in names:
            Image.fromarray(generator.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
                root / folder / f"{name}.jpg")
            two_colour_map(size[0] * 2, size[1] * 2).save(root / f"{folder}_seg" / f"{name}.png")
    two_colour_map(72, 64, top=RED, bottom=WHITE).save(root / "style_seg" / "other.png")
    (root / "junk.png").write_text("not an image")
    two_colour_map(40, 40).save(root / "square.png")
    return {"root": root, "decoder": decoder, "lct": lct}


def command_args(files, output: Path, *extra) -> list:
    root = files["root"]
    return ["--content", root / "content" / "a.jpg", "--style", root / "style" / "s.jpg", "--decoder", files["decoder"],
            "--LCT", files["lct"], "--content_size", 0, "--style_size", 0, "--device", "cpu", "--output", output,
            *extra]


def test_test_py_with_maps_end_to_end(files, tmp_path, capsys):
    root = files["root"]
    code, _, err = run_script("test.py", command_args(files, tmp_path / "plain"), capsys)
    assert code == 0, err
    code, _, err = run_script("test.py", command_args(
        files, tmp_path / "maps", "--content_segment", root / "content_seg" / "a.png",
        "--style_segment", root / "style_seg" / "s.png"), capsys)
    assert code == 0 and "Traceback" not in err, err
    code, _, err = run_script("test.py", [
        "--content_dir", root / "content", "--style_dir", root / "style", "--content_segment_dir", root / "content_seg",
        "--style_segment_dir", root / "style_seg", "--decoder", files["decoder"], "--LCT", files["lct"],
        "--content_size", 0, "--style_size", 0, "--device", "cpu", "--output", tmp_path / "dirs"], capsys)
    assert code == 0, err
    plain, masked = (np.asarray(Image.open(tmp_path / folder / "a_stylized_s.jpg"), np.float64)
                     for folder in ("plain", "maps"))
    assert plain.shape == masked.shape == (48, 64, 3) and np.abs(plain - masked).mean() > 1
    assert sorted(p.name for p in (tmp_path / "dirs").iterdir()) == ["a_stylized_s.jpg", "b_stylized_s.jpg"]


def one_error_line(code: int, err: str, fragment: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in err, err
    assert "error: " in lines[-1] and fragment in lines[-1], err
    assert sum("error: " in line for line in lines) == 1, err


@pytest.mark.parametrize("extra, fragment", [
    (["--content_segment", "junk.png", "--style_segment", "style_seg/s.png"], "is not a readable image"),
    (["--content_segment", "square.png", "--style_segment", "style_seg/s.png"], "another aspect ratio"),
    (["--content_segment", "content_seg/a.png"], "need maps for the style too"),
    (["--style_segment", "style_seg/s.png", "--auto_regions"], "need maps for the content too"),
    (["--content_segment", "content_seg/a.png", "--style_segment", "style_seg/s.png", "--auto_regions", "2"],
     "not both"),
    (["--content_segment", "missing.png", "--style_segment", "style_seg/s.png"], "content map not found"),
])
def test_test_py_bad_maps_are_one_error_line(files, tmp_path, capsys, extra, fragment):
    root = files["root"]
    extra = [root / item if item.endswith(".png") else item for item in extra]
    one_error_line(*run_script("test.py", command_args(files, tmp_path, *extra), capsys)[::2], fragment)


@pytest.mark.parametrize("script", ["test.py", "eval.py", "video.py", "scripts/regions.py"])
def test_issue27_item6_auto_regions_is_capped_in_every_command(capsys, script):
    """issue 27 item 6: --auto_regions 1000000 ran for minutes (time grows as K²: K=800 took 50 s on
    a 256×160 pair); every command now refuses a K over MAX_REGIONS while parsing its flags."""
    limit = autoregions.MAX_REGIONS
    code, _, err = run_script(script, ["--auto_regions", "1000000"], capsys)
    one_error_line(code, err, f"must be a number of regions from 1 to {limit}, got 1000000")
    code, _, err = run_script(script, ["--auto_regions", str(limit + 1), "--help"], capsys)
    one_error_line(code, err, f"from 1 to {limit}, got {limit + 1}")


def test_issue27_item6_the_api_caps_auto_regions():
    """issue 27 item 6: the Python API refuses more than MAX_REGIONS automatic regions at once."""
    stylizer = random_stylizer("photo", "adain")
    content, style = pictures()
    with pytest.raises(ValueError, match=f"from 1 to {autoregions.MAX_REGIONS}, got 1000000"):
        stylizer.stylize(content, [style], auto_regions=1_000_000)
    assert stylizer.stylize(content, [style], auto_regions=autoregions.MAX_REGIONS).shape == content.shape


def test_test_py_map_folder_missing_an_image(files, tmp_path, capsys):
    root = files["root"]
    partial = tmp_path / "seg"
    partial.mkdir()
    (partial / "a.png").write_bytes((root / "content_seg" / "a.png").read_bytes())
    code, _, err = run_script("test.py", [
        "--content_dir", root / "content", "--style", root / "style" / "s.jpg", "--content_segment_dir", partial,
        "--style_segment", root / "style_seg" / "s.png", "--device", "cpu", "--output", tmp_path / "out"], capsys)
    one_error_line(code, err, "no content map for")
    assert "b.jpg" in err


def test_issue27_item10_maps_match_within_sub_folders_and_a_photo_is_not_its_own_map(files, tmp_path, capsys):
    """issue 27 item 10: with city/001.jpg and beach/001.jpg and only city/001.png among the maps,
    beach/001.jpg took city's map by its stem; and with the maps' folder the photos' folder, c1.jpg
    was its own map. Now a stem matches only where no other image has it, and no image is a map."""
    root = files["root"]
    photos, maps = tmp_path / "photos", tmp_path / "maps"
    for place in ("city", "beach"):
        (photos / place).mkdir(parents=True)
        (photos / place / "001.jpg").write_bytes((root / "content" / "a.jpg").read_bytes())
    (maps / "city").mkdir(parents=True)
    (maps / "city" / "001.png").write_bytes((root / "content_seg" / "a.png").read_bytes())
    with pytest.raises(UserError, match="no content map for .*beach/001.jpg"):
        maps_by_name(list_images(photos), photos, maps, "content")
    (maps / "beach").mkdir()
    (maps / "beach" / "001.png").write_bytes((root / "content_seg" / "b.png").read_bytes())
    assert maps_by_name(list_images(photos), photos, maps, "content") == [maps / "beach" / "001.png",
                                                                         maps / "city" / "001.png"]
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "c1.jpg").write_bytes((root / "content" / "a.jpg").read_bytes())
    code, _, err = run_script("test.py", [
        "--content_dir", flat, "--style", root / "style" / "s.jpg", "--content_segment_dir", flat,
        "--style_segment", root / "style_seg" / "s.png", "--device", "cpu", "--output", tmp_path / "out"], capsys)
    one_error_line(code, err, "no content map for")
    (flat / "c1.png").write_bytes((root / "content_seg" / "a.png").read_bytes())
    assert maps_by_name([flat / "c1.jpg"], flat, flat, "content") == [flat / "c1.png"]
    frames = tmp_path / "frames"                                    # video.py: frames are not their own maps
    frames.mkdir()
    for index in range(2):
        (frames / f"f{index}.jpg").write_bytes((root / "content" / "a.jpg").read_bytes())
    with pytest.raises(UserError, match="no content map for f0"):
        frame_regions(FrameFolder.open(frames), as_label_map(Image.open(root / "style_seg" / "s.png")),
                      content_map_dir=str(frames))


def test_label_on_one_side_only_is_a_note(files, tmp_path, capsys):
    root = files["root"]
    code, _, err = run_script("test.py", command_args(
        files, tmp_path, "--content_segment", root / "content_seg" / "a.png",
        "--style_segment", root / "style_seg" / "other.png"), capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2 and "#0000ff" in notes[0] and "#ffffff" in notes[1], err


def test_video_maps_are_checked_before_any_work(files, tmp_path, capsys):
    root = files["root"]
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(2):
        Image.open(root / "content" / "a.jpg").save(frames / f"f{index}.png")
    clip = FrameFolder.open(frames)
    style_map = as_label_map(Image.open(root / "style_seg" / "s.png"))
    with pytest.raises(UserError, match="no content map for f0"):
        frame_regions(clip, style_map, content_map_dir=str(root / "content_seg"))
    regions = frame_regions(clip, style_map, content_map=str(root / "content_seg" / "a.png"))
    assert regions("f1") == {"content_mask": regions("f0")["content_mask"], "style_masks": [style_map]}
    assert frame_regions(clip, None) is None
    content_map, style_seg = root / "content_seg" / "a.png", root / "style_seg" / "s.png"
    for flags, fragment in (([], "segmentation maps for the style need maps for the content too: give "
                                 "--content_segment or --content_segment_dir"),
                            (["--content_segment", content_map, "--content_segment_dir", root / "content_seg"],
                             "give --content_segment or --content_segment_dir, not both"),
                            (["--content_segment", content_map, "--auto_regions"], "use maps or --auto_regions")):
        code, _, err = run_script("video.py", [frames, "--style", root / "style" / "s.jpg", "--style_segment",
                                               style_seg, *flags, "--device", "cpu", "--output", tmp_path / "out"],
                                  capsys)
        one_error_line(code, err, fragment)
        assert err.startswith("error: ") and not (tmp_path / "out").exists()


def test_eval_seg_adds_the_masked_and_automatic_rows(files, tmp_path):
    root = tmp_path / "pairs"
    for folder, name in (("content", "in1"), ("style", "tar1")):
        source = files["root"] / folder / ("a" if folder == "content" else "s")
        (root / folder).mkdir(parents=True)
        (root / f"{folder}_seg").mkdir()
        Image.open(source.with_suffix(".jpg")).save(root / folder / f"{name}.png")
        Image.open(files["root"] / f"{folder}_seg" / f"{source.name}.png").save(root / f"{folder}_seg" / f"{name}.png")
    pairs = with_segments(find_pairs(root), root)
    model = ModelFiles("m", files["decoder"], files["lct"], "lct")
    options = EVALUATION.replace(content_size=0, style_size=0, auto_regions=2)
    rows = evaluate(pairs, Lineup([model]), tmp_path / "out", options, figures=Figures(zoom=None))
    assert [row.model for row in rows] == ["m", "m+seg", "m+auto2"]
    (root / "style_seg" / "tar1.png").unlink()
    with pytest.raises(UserError, match="no style map for"):
        with_segments(find_pairs(root), root)


def test_issue27_item18_crop_crops_the_maps_too(files, tmp_path, capsys):
    """issue 27 item 18: --crop with correct maps blamed the maps' aspect ratio (the photos were
    cropped square, their maps not); the maps are now cropped as their photos are."""
    root = files["root"]
    code, _, err = run_script("test.py", [
        "--content", root / "content" / "a.jpg", "--style", root / "style" / "s.jpg", "--decoder", files["decoder"],
        "--LCT", files["lct"], "--content_size", 32, "--style_size", 32, "--crop", "--device", "cpu",
        "--content_segment", root / "content_seg" / "a.png", "--style_segment", root / "style_seg" / "s.png",
        "--output", tmp_path / "out"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert Image.open(tmp_path / "out" / "a_stylized_s.jpg").size == (32, 32)
    halves = LabelMap(torch.arange(6)[:, None].expand(6, 10) // 3)
    assert torch.equal(halves.centre_square().labels, halves.labels[:, 2:8])


def test_issue27_item18_a_missing_validation_folder_is_named_before_any_work(files, tmp_path, capsys):
    """issue 27 item 18: scripts/regions.py --validation_dir /nonexistent evaluated the map pairs
    for seconds, then said "--pairs_dir … is not a folder"; it names --validation_dir at once."""
    root = tmp_path / "pairs"
    for folder, name in (("content", "in1"), ("style", "tar1")):
        source = files["root"] / folder / ("a" if folder == "content" else "s")
        (root / folder).mkdir(parents=True)
        (root / f"{folder}_seg").mkdir()
        Image.open(source.with_suffix(".jpg")).save(root / folder / f"{name}.png")
        Image.open(files["root"] / f"{folder}_seg" / f"{source.name}.png").save(root / f"{folder}_seg" / f"{name}.png")
    for flags, message in ((["--validation_dir", tmp_path / "nonexistent"],
                            f"--validation_dir {tmp_path / 'nonexistent'} is not a folder"),
                           (["--figure_pairs", "in9_tar9"], "--figure_pairs in9_tar9: none of them is among in1_tar1")):
        code, _, err = run_script("scripts/regions.py", [
            "--pairs_dir", root, "--model", f"m={files['decoder']},{files['lct']}", "--device", "cpu",
            "--output", tmp_path / "out", *flags], capsys)
        one_error_line(code, err, message)
        assert not (tmp_path / "out").exists()


def test_eval_region_rows_take_the_models_alpha():
    """``eval.py --alpha``: the +seg and +autoK rows blend as their model's row does."""
    stylizer = random_stylizer("photo", "lct")
    content, style = pictures()
    maps = as_label_map(two_colour_map(88, 72)), as_label_map(two_colour_map(60, 64))
    for auto, options in ((0, dict(content_mask=maps[0], style_masks=[maps[1]])), (2, dict(auto_regions=2))):
        half = Configured(stylizer, stylizer.options.replace(alpha=0.5, auto_regions=auto), with_maps=not auto
                          ).stylize(content, [style], maps)
        torch.testing.assert_close(half, stylizer.stylize(content, [style], alpha=0.5, **options), rtol=0, atol=1e-6)
        full = Configured(stylizer, stylizer.options.replace(auto_regions=auto), with_maps=not auto
                          ).stylize(content, [style], maps)
        assert (half - full).abs().max() > 1e-2


def test_maps_follow_their_photos_exif_orientation(tmp_path: Path) -> None:
    """A photo stored sideways with EXIF orientation 6 is read upright, so a map drawn over the
    upright photo fits it; a map stored sideways with the same tag is turned upright too."""
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6                                    # turn a quarter clockwise to view
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (60, 40), "grey").save(photo, exif=exif)   # stored 60×40, upright 40×60
    upright_map = tmp_path / "upright.png"
    Image.new("RGB", (40, 60), "red").save(upright_map)
    check_map_file(upright_map, photo, "content")
    assert read_image(photo).shape[-2:] == (60, 40)
    stored_map = tmp_path / "stored.png"
    Image.new("RGB", (60, 40), "red").save(stored_map)           # drawn over the stored, sideways picture
    with pytest.raises(UserError, match="aspect"):
        check_map_file(stored_map, photo, "content")
    upright = np.zeros((60, 40, 3), np.uint8)
    upright[:30] = (255, 0, 0)                                   # top half red, bottom half blue
    upright[30:] = (0, 0, 255)
    sideways = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)   # stored as 60 wide, 40 high
    sideways.getexif()[ORIENTATION_TAG] = 6
    labels = as_label_map(sideways).labels
    assert labels.shape == (60, 40) and labels[0, 0] == 0xFF0000 and labels[-1, 0] == 0x0000FF
