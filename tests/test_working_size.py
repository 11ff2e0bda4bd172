"""The finish at a working size (the fast guided filter): the network on a scaled-down copy of the
photo, the guided filter's affine colour models fitted there, upsampled and applied to the photo
at its own size, strip by strip."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from function import apply_affine, guided_filter, guided_filter_coefficients
from glfa.errors import UserError
from glfa.smoothing import MIN_WORKING_SIZE, check_working_size, working_copy
from glfa.smoothing import Smoothing, apply_upsampled, bilinear_taps, models_tiled
from helpers import random_stylizer


def noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def window_models(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """The guided filter's models by its definition: a ridge regression of the source on the guide
    (with a constant) in every window cut at the borders, then each pixel's mean over the windows
    covering it. ``(3, H, W)`` guide and source in float64; returns ``(4, 3, H, W)``."""
    _, height, width = guide.shape
    fitted = np.zeros((height, width, 4, 3))
    for y in range(height):
        for x in range(width):
            rows, cols = slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1)
            g = guide[:, rows, cols].reshape(3, -1)
            p = source[:, rows, cols].reshape(3, -1)
            g_mean, p_mean = g.mean(1, keepdims=True), p.mean(1, keepdims=True)
            sigma = (g - g_mean) @ (g - g_mean).T / g.shape[1] + eps * np.eye(3)
            a = np.linalg.solve(sigma, (g - g_mean) @ (p - p_mean).T / g.shape[1])     # (3 guide, 3 source)
            fitted[y, x, :3] = a
            fitted[y, x, 3] = p_mean[:, 0] - a.T @ g_mean[:, 0]
    models = np.zeros_like(fitted)
    for y in range(height):
        for x in range(width):
            rows, cols = slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1)
            models[y, x] = fitted[rows, cols].mean((0, 1))
    return models.transpose(2, 3, 0, 1)


def test_the_models_match_a_window_by_window_regression():
    guide, source = noise(1, 3, 11, 9, seed=1), noise(1, 3, 11, 9, seed=2)
    models = guided_filter_coefficients(guide, source, 2, 1e-2)
    expected = window_models(guide[0].double().numpy(), source[0].double().numpy(), 2, 1e-2)
    np.testing.assert_allclose(models[0].numpy(), expected, atol=2e-4)
    # applied to their own guide they are the guided filter
    torch.testing.assert_close(apply_affine(models, guide), guided_filter(guide, source, 2, 1e-2))
    out = apply_affine(models, guide)[0].numpy()
    by_hand = (expected[:3] * guide[0].numpy()[:, None]).sum(0) + expected[3]
    np.testing.assert_allclose(out, by_hand, atol=3e-4)


def test_bilinear_taps_are_torch_bilinear_upsampling():
    small = noise(1, 5, 7, 6, seed=3)
    for height, width in ((7, 6), (19, 23), (40, 13)):
        rows, cols = bilinear_taps(7, height), bilinear_taps(6, width)
        by_rows = torch.lerp(small[..., rows[0], :], small[..., rows[1], :], rows[2][:, None])
        by_both = torch.lerp(by_rows[..., cols[0]], by_rows[..., cols[1]], cols[2])
        expected = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
        torch.testing.assert_close(by_both, expected, atol=1e-6, rtol=0)


def test_strips_equal_the_whole_and_the_same_size_is_the_guided_filter():
    smoothing = Smoothing(radius=3, eps=1e-3)
    guide_small, result_small = noise(1, 3, 30, 41, seed=4), noise(1, 3, 30, 41, seed=5)
    models = smoothing.models(guide_small, result_small)
    guide = noise(1, 3, 97, 131, seed=6)
    upsampled = F.interpolate(models.flatten(1, 2), size=(97, 131), mode="bilinear", align_corners=False)
    whole = apply_affine(upsampled.view(1, 4, 3, 97, 131), guide).clamp(0, 1)
    for strip_rows in (1, 7, 50, 1000):
        torch.testing.assert_close(apply_upsampled(models, guide, strip_rows), whole, atol=1e-5, rtol=0)
    # fitted and applied at one size, it is the guided filter itself; tiles of the fit equal the whole
    torch.testing.assert_close(apply_upsampled(models, guide_small), smoothing(guide_small, result_small))
    torch.testing.assert_close(models_tiled(guide_small, result_small, smoothing, 16), models, atol=1e-6, rtol=0)


def test_a_working_copy_is_never_enlarged():
    photo = noise(1, 3, 300, 200)
    assert working_copy(photo, 400) is photo and working_copy(photo, 300) is photo
    small = working_copy(photo, 150)
    assert small.shape[-2:] == (150, 100) and 0 <= small.min() and small.max() <= 1
    for bad in (-1, 1, MIN_WORKING_SIZE - 1):
        with pytest.raises(ValueError, match="working_size"):
            check_working_size(bad)
    with pytest.raises(TypeError):
        check_working_size(256.0)


def test_the_result_has_the_photos_size_and_follows_it_affinely():
    """A constant-colour style: every pixel of the full-size result is an affine colour function of
    its own content pixel, by the models fitted at the working size (within rounding); an image
    no larger than the working size goes the exact way."""
    stylizer = random_stylizer("photo", "lct", smooth=True, working_size=64)
    content, style = noise(3, 150, 210, seed=7), torch.full((3, 64, 64), 0.5)
    style[0] = 0.8
    result = stylizer.stylize(content, [style])
    assert result.shape == content.shape
    # the whole result is explained by the models fitted at the working size, pixel by pixel
    small = working_copy(content[None], 64)
    assert small.shape[-2:] == (46, 64)
    raw_small = stylizer.stylize(small[0], [style], smooth=False)
    models = Smoothing().models(small, raw_small[None])
    torch.testing.assert_close(result, apply_upsampled(models, content[None])[0], atol=1e-5, rtol=0)
    # an image no larger than the working size goes the exact way
    exact = stylizer.stylize(small[0], [style], working_size=0)
    torch.testing.assert_close(stylizer.stylize(small[0], [style]), exact, atol=1e-5, rtol=0)


def test_a_photo_too_large_for_memory_is_refused_before_any_work(monkeypatch):
    stylizer = random_stylizer("photo", "lct", smooth=True)
    monkeypatch.setattr("glfa.inference.available_memory", lambda device: 40 * 100 * 100 - 1)
    with pytest.raises(UserError, match=r"100×100 px .* needs about .* GiB .* is free"):
        stylizer.stylize(noise(3, 100, 100), [noise(3, 64, 64)])
    monkeypatch.setattr("glfa.inference.available_memory", lambda device: 40 * 100 * 100)
    assert stylizer.stylize(noise(3, 100, 100), [noise(3, 64, 64)]).shape == (3, 100, 100)


def test_a_style_used_again_is_not_encoded_again():
    """Issue 26: a video's frames share one style; its statistics are taken once and reused, and
    the results equal those of a fresh Stylizer."""
    stylizer = random_stylizer("photo", "lct")
    style, other = noise(3, 40, 48, seed=9), noise(3, 40, 48, seed=10)
    frames = [noise(3, 64, 80, seed=seed) for seed in (11, 12)]
    encoded = []
    encode = stylizer._encode
    stylizer._encode = lambda image: encoded.append(tuple(image.shape)) or encode(image)
    first = stylizer.stylize(frames[0], [style])
    second = stylizer.stylize(frames[1], [style.clone()])
    assert encoded == [(1, 3, 64, 80), (1, 3, 40, 48), (1, 3, 64, 80)]     # the style once
    torch.testing.assert_close(second, random_stylizer("photo", "lct").stylize(frames[1], [style]))
    changed = stylizer.stylize(frames[1], [other])
    assert encoded[-1] == (1, 3, 40, 48) and (changed - second).abs().max() > 1e-3
    assert first.shape == (3, 64, 80)
