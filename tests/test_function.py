"""function.py: the statistics helpers, checked against numpy re-implementations."""
import numpy as np
import pytest
import torch

from function import (adaptive_instance_normalization, calc_cov, calc_mean_std, coral, mean_norm,
                      mean_variance_norm)

EPS = 1e-5


def np_mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample, per-channel mean and sqrt(unbiased var + 1e-5), shaped (N, C, 1, 1)."""
    flat = x.reshape(x.shape[0], x.shape[1], -1).astype(np.float64)
    mean = flat.mean(axis=2)
    std = np.sqrt(flat.var(axis=2, ddof=1) + EPS)
    return mean[:, :, None, None], std[:, :, None, None]


@pytest.fixture
def feat() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 4, 5, generator=gen) * torch.tensor([0.5, 2.0, 0.01]).view(1, 3, 1, 1) + 3


def test_calc_mean_std_matches_numpy(feat):
    mean, std = calc_mean_std(feat)
    assert mean.shape == std.shape == (2, 3, 1, 1)
    np_mean, np_std = np_mean_std(feat.numpy())
    np.testing.assert_allclose(mean.numpy(), np_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), np_std, rtol=1e-5)


def test_calc_mean_std_by_hand():
    # One channel holding 1, 2, 3, 4: mean 2.5, unbiased var 5/3.
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    mean, std = calc_mean_std(x)
    assert mean.item() == pytest.approx(2.5)
    assert std.item() == pytest.approx(np.sqrt(5 / 3 + 1e-5), rel=1e-6)
    # A constant channel has std sqrt(1e-5), never zero.
    _, std_const = calc_mean_std(torch.full((1, 1, 3, 3), 7.0))
    assert std_const.item() == pytest.approx(np.sqrt(1e-5), rel=1e-4)


def test_mean_variance_norm(feat):
    out = mean_variance_norm(feat).numpy().astype(np.float64)
    np_mean, np_std = np_mean_std(feat.numpy())
    np.testing.assert_allclose(out, (feat.numpy() - np_mean) / np_std, rtol=1e-4, atol=1e-4)
    flat = out.reshape(2, 3, -1)
    np.testing.assert_allclose(flat.mean(axis=2), 0, atol=1e-4)
    # Unbiased std is sqrt(var / (var + eps)): 1 for well-spread channels, below 1 for the tiny one.
    var = feat.numpy().reshape(2, 3, -1).astype(np.float64).var(axis=2, ddof=1)
    np.testing.assert_allclose(flat.std(axis=2, ddof=1), np.sqrt(var / (var + EPS)), rtol=1e-4)


def test_mean_norm(feat):
    centred, mean = mean_norm(feat)
    np.testing.assert_allclose(mean.numpy(), feat.numpy().mean(axis=(2, 3), keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(centred.numpy(), feat.numpy() - mean.numpy(), atol=1e-6)


def test_calc_cov_is_ffT_over_positions(feat):
    cov = calc_cov(feat)
    assert cov.shape == (2, 3, 3)
    flat = feat.numpy().reshape(2, 3, 20).astype(np.float64)
    expected = np.einsum("ncp,ndp->ncd", flat, flat) / 20
    np.testing.assert_allclose(cov.numpy(), expected, rtol=1e-5)


def test_calc_cov_by_hand():
    # Channels (1, -1) and (2, 0) over two positions: [[2, 2], [2, 4]] / 2.
    x = torch.tensor([[1.0, -1.0], [2.0, 0.0]]).view(1, 2, 1, 2)
    np.testing.assert_allclose(calc_cov(x)[0].numpy(), [[1.0, 1.0], [1.0, 2.0]])


def test_adain_gives_style_statistics(feat):
    gen = torch.Generator().manual_seed(1)
    style = torch.randn(2, 3, 6, 7, generator=gen) * 4 - 2
    out = adaptive_instance_normalization(feat, style)
    assert out.shape == feat.shape
    c_mean, c_std = np_mean_std(feat.numpy())
    s_mean, s_std = np_mean_std(style.numpy())
    expected = (feat.numpy() - c_mean) / c_std * s_std + s_mean
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)
    out_mean, out_std = calc_mean_std(out)
    np.testing.assert_allclose(out_mean.numpy(), s_mean, atol=1e-4)
    # Channels 0 and 1 are well spread, so eps barely shows: the std is the style's.
    np.testing.assert_allclose(out_std[:, :2].numpy(), s_std[:, :2], rtol=1e-3)


def test_coral_matches_target_mean_and_covariance():
    gen = torch.Generator().manual_seed(2)
    mix_s = torch.tensor([[1.0, 0.3, 0.0], [0.2, 1.0, 0.1], [0.0, 0.4, 1.0]])
    mix_t = torch.tensor([[0.8, -0.2, 0.1], [0.0, 0.5, 0.3], [0.3, 0.0, 0.9]])
    source = (0.5 + 0.06 * mix_s @ torch.randn(3, 20 * 30, generator=gen)).view(3, 20, 30)
    target = (torch.tensor([[0.3], [0.55], [0.6]]) + 0.05 * mix_t @ torch.randn(3, 24 * 18, generator=gen)).view(3, 24, 18)
    assert 0 < source.min() and source.max() < 1 and 0 < target.min() and target.max() < 1
    out = coral(source, target)
    assert out.shape == source.shape and out.dtype == source.dtype
    assert 0 < out.min() and out.max() < 1          # no clamping happened, the statistics are exact

    def stats(img):
        flat = img.reshape(3, -1).double().numpy()
        centred = flat - flat.mean(1, keepdims=True)
        return flat.mean(1), centred @ centred.T / flat.shape[1]

    out_mean, out_cov = stats(out)
    tgt_mean, tgt_cov = stats(target)
    src_mean, src_cov = stats(source)
    np.testing.assert_allclose(out_mean, tgt_mean, atol=1e-5)
    np.testing.assert_allclose(out_cov, tgt_cov, atol=3e-5)   # eps = 1e-5 on the diagonals
    assert np.abs(src_cov - tgt_cov).max() > 1e-3             # the match is not trivial


def test_coral_clamps_to_unit_range():
    gen = torch.Generator().manual_seed(3)
    source = torch.rand(3, 8, 8, generator=gen)
    target = torch.rand(3, 8, 8, generator=gen)
    out = coral(source, target)
    assert out.shape == (3, 8, 8)
    assert out.min() >= 0 and out.max() <= 1


def test_reinhard_gives_the_style_lab_statistics():
    """In lαβ the result has the style's per-channel mean and std (by construction, up to the
    clamp to [0, 1], which these mid-range images avoid), and an image matched to itself is unchanged."""
    from function import reinhard, rgb_to_lab
    gen = torch.Generator().manual_seed(3)
    content = 0.3 + 0.4 * torch.rand(3, 20, 30, generator=gen)
    style = (0.2 + 0.3 * torch.rand(3, 16, 16, generator=gen)) * torch.tensor([1.0, 0.8, 0.6])[:, None, None] + 0.2
    result = reinhard(content, style)
    assert result.shape == content.shape and 0 < result.min() and result.max() < 1
    got, want = rgb_to_lab(result), rgb_to_lab(style)
    torch.testing.assert_close(got.mean(1), want.mean(1), atol=1e-4, rtol=0)
    torch.testing.assert_close(got.std(1), want.std(1), atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(reinhard(content, content), content, atol=1e-5, rtol=0)
    # the white point maps to equal LMS responses, so grey stays grey in lαβ (α = β = 0)
    grey = rgb_to_lab(torch.full((3, 1, 1), 0.5))
    assert abs(grey[1].item()) < 1e-3 and abs(grey[2].item()) < 1e-3
