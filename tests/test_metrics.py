"""Evaluation metrics on hand-made images and features whose answers are known."""
import numpy as np
import pytest
import torch

from glfa.metrics import (StyleDistance, black_shift, clipped_share, colour_cast, edge_map, edge_ssim, gram_matrix,
                          luminance, luminance_ssim, ssim, tonal_range, tone_figures)
from net import build_encoder


def textured(height: int = 48, width: int = 48, seed: int = 0) -> torch.Tensor:
    """A colour image with structure at several scales (stripes, a disc, noise)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 1, height)[:, None].expand(height, width)
    cols = torch.linspace(0, 1, width)[None, :].expand(height, width)
    stripes = 0.5 + 0.4 * torch.sin(cols * 25)
    disc = ((rows - 0.5) ** 2 + (cols - 0.4) ** 2 < 0.06).float()
    noise = torch.rand(height, width, generator=generator) * 0.2
    return torch.stack((0.6 * stripes + 0.3 * disc, 0.5 * disc + 0.3 * rows, 0.4 * stripes + noise)).clamp(0, 1)


def test_luminance_uses_bt601_weights():
    image = torch.zeros(3, 2, 2)
    image[0, 0, 0] = 1.0          # red pixel
    image[1, 0, 1] = 1.0          # green pixel
    image[2, 1, 0] = 1.0          # blue pixel
    image[:, 1, 1] = 1.0          # white pixel
    np.testing.assert_allclose(luminance(image), [[0.299, 0.587], [0.114, 1.0]], atol=1e-12)


def test_identical_images_have_ssim_one_and_zero_style_losses():
    image = textured()
    assert luminance_ssim(image, image.clone()) == pytest.approx(1.0, abs=1e-12)
    assert edge_ssim(image, image.clone()) == pytest.approx(1.0, abs=1e-12)
    torch.manual_seed(0)
    distance = StyleDistance(build_encoder("photo"), "photo")
    losses = distance.losses(distance.features(image), distance.features(image.clone()))
    assert losses == {"gram_loss": 0.0, "mean_std_loss": 0.0}


def test_flat_image_scores_lower_than_a_slightly_noisy_copy():
    image = textured()
    flat = torch.full_like(image, float(image.mean()))
    noisy = (image + 0.02 * torch.randn(image.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    flat_score, noisy_score = luminance_ssim(flat, image), luminance_ssim(noisy, image)
    assert noisy_score > 0.9
    assert flat_score < 0.5
    assert edge_ssim(flat, image) < edge_ssim(noisy, image)


def test_ssim_ignores_a_global_tone_shift_far_more_than_structure_loss():
    image = textured()
    tinted = (image * torch.tensor([0.8, 0.9, 1.0]).view(3, 1, 1) + 0.05).clamp(0, 1)
    shuffled = image.flatten(1)[:, torch.randperm(image[0].numel(), generator=torch.Generator().manual_seed(2))]
    assert luminance_ssim(tinted, image) > 0.9
    assert luminance_ssim(shuffled.view_as(image), image) < 0.2


def test_ssim_rejects_mismatched_or_too_small_images():
    with pytest.raises(ValueError, match="same size"):
        ssim(np.zeros((20, 20)), np.zeros((20, 21)))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(np.zeros((8, 20)), np.zeros((8, 20)))


def test_edge_map_marks_a_step_edge_only():
    image = torch.zeros(3, 16, 16)
    image[:, :, 8:] = 1.0
    edges = edge_map(image)
    assert edges[:, 7:9].min() > 0.3
    assert edges[:, :6].max() < 1e-9 and edges[:, 10:].max() < 1e-9


def test_gram_matrix_of_a_hand_computed_feature():
    feat = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)   # 2 channels, 2 positions
    # F Fᵀ = [[1+4, 3+8], [3+8, 9+16]], divided by C·H·W = 4
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(gram_matrix(feat), expected)


def test_style_losses_of_hand_made_features():
    result = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    style = torch.tensor([[1.0, 1.0], [3.0, 5.0]]).view(1, 2, 1, 2)
    distance = StyleDistance(build_encoder("photo"), "photo")
    losses = distance.losses([result, result], [style, style])
    # Gram: [[1.25, 2.75], [2.75, 6.25]] vs [[0.5, 2], [2, 8.5]] → squared errors 0.5625, 0.5625,
    # 0.5625, 5.0625 → mean 1.6875 per layer, two layers.
    assert losses["gram_loss"] == pytest.approx(2 * 1.6875)
    # Means equal per channel (1.5 vs 1, 3.5 vs 4 → errors 0.25 each → MSE 0.25); stds
    # sqrt(0.5 + 1e-5) vs sqrt(0 + 1e-5) and sqrt(0.5 + 1e-5) vs sqrt(2 + 1e-5).
    std_mse = ((np.sqrt(0.5 + 1e-5) - np.sqrt(1e-5)) ** 2 + (np.sqrt(0.5 + 1e-5) - np.sqrt(2 + 1e-5)) ** 2) / 2
    assert losses["mean_std_loss"] == pytest.approx(2 * (0.25 + std_mse), rel=1e-5)


def test_style_distance_grows_as_the_result_departs_from_the_style():
    torch.manual_seed(0)
    distance = StyleDistance(build_encoder("photo"), "photo")
    style = textured(seed=3)
    style_feats = distance.features(style)
    near = distance.losses(distance.features((style * 0.95 + 0.02).clamp(0, 1)), style_feats)
    far = distance.losses(distance.features(style.flip(0) * 0.3), style_feats)
    assert 0 < near["gram_loss"] < far["gram_loss"]
    assert 0 < near["mean_std_loss"] < far["mean_std_loss"]
    assert [f.shape[1] for f in style_feats] == [64, 128, 256]


def test_tone_figures_against_hand_computation():
    """Issue 25: the tone figures. A content whose luminance runs evenly over 0.1…0.9; a result that
    lifts it by 0.1 (a veil), one that clips a tenth of it to white, and the colour cast of a flat
    result against a flat style, from CIELAB by hand."""
    ramp = torch.linspace(0.1, 0.9, 101).view(1, 1, 101).expand(3, 20, 101).clone()
    veiled = ramp + 0.1
    assert black_shift(veiled, ramp) == pytest.approx(0.1, abs=1e-6)
    assert black_shift(ramp * 0.5, ramp) == pytest.approx(-0.054, abs=1e-6)
    assert tonal_range(veiled, ramp) == pytest.approx(1.0, abs=1e-6)
    assert tonal_range(ramp * 0.5, ramp) == pytest.approx(0.5, abs=1e-6)
    blown = ramp.clone()
    blown[..., -10:] = 1.0                                   # 10 of 101 columns clipped to white
    assert clipped_share(blown, ramp) == pytest.approx(10 / 101, abs=1e-9)
    assert clipped_share(ramp, ramp) == 0
    grey, red = torch.full((3, 8, 8), 0.5), torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 8, 8)
    # sRGB red in CIELAB (D65): a* = 80.11, b* = 67.22; grey has a* = b* = 0
    assert colour_cast(grey, red) == pytest.approx((80.109 ** 2 + 67.22 ** 2) ** 0.5, abs=0.05)
    assert colour_cast(red, red) == pytest.approx(0.0, abs=1e-9)
    assert set(tone_figures(veiled, ramp, red)) == {"black_shift", "clipped", "tonal_range", "cast"}
