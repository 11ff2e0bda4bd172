"""Mixed precision: under bf16 autocast the statistics and loss helpers still compute in fp32,
and bf16 results agree with fp32 ones within stated tolerances (CPU autocast supports bf16).

Stated tolerances: each training loss (content, style, nce, kl) within 1% relative; stylised
images (values in [0, 1]) within 0.01 mean and 0.06 maximum absolute difference.
"""
import pytest
import torch
import torch.nn.functional as F

from function import calc_cov, calc_mean_std, mean_norm
from glfa.inference import Stylizer
from helpers import lively
from net import (build_decoder, build_encoder, build_network, build_transform, info_nce, neighbourhood_kl,
                 sample_anchors, sinkhorn_weights)

LOSS_RTOL = 1e-2
IMAGE_MEAN_ATOL, IMAGE_MAX_ATOL = 0.01, 0.06


def bf16_autocast() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_statistics_stay_fp32_under_autocast():
    torch.manual_seed(0)
    feat = torch.randn(2, 8, 6, 5) * 4 + 30
    with bf16_autocast():
        half = feat.bfloat16()
        mean, std = calc_mean_std(half)
        centred, centre = mean_norm(half)
        cov = calc_cov(feat)
    assert mean.dtype == std.dtype == centre.dtype == cov.dtype == torch.float32
    expected_mean, expected_std = calc_mean_std(half.float())
    torch.testing.assert_close(mean, expected_mean, rtol=0, atol=0)
    torch.testing.assert_close(std, expected_std, rtol=0, atol=0)
    torch.testing.assert_close(cov, calc_cov(feat), rtol=0, atol=0)   # bmm was not run in bf16


def test_loss_helpers_ignore_autocast():
    torch.manual_seed(0)
    query = F.normalize(torch.randn(2, 16, 8), dim=-1)
    key = F.normalize(torch.randn(2, 16, 8), dim=-1)
    blocks_result, blocks_content = torch.randn(2, 9, 4, 12), torch.randn(2, 9, 4, 12)
    expected = (sinkhorn_weights(query, key), info_nce(query, key, 0.07),
                neighbourhood_kl(blocks_result, blocks_content))
    with bf16_autocast():
        found = (sinkhorn_weights(query, key), info_nce(query, key, 0.07),
                 neighbourhood_kl(blocks_result.bfloat16(), blocks_content.bfloat16()))
    for value in found:
        assert value.dtype == torch.float32
    torch.testing.assert_close(found[0], expected[0], rtol=0, atol=0)
    torch.testing.assert_close(found[1], expected[1], rtol=0, atol=0)
    # the blocks were rounded to bf16 before the helper, so only that rounding shows
    torch.testing.assert_close(found[2], expected[2], rtol=2e-2, atol=0)


@pytest.mark.parametrize("contrastive", ["wce", "ccpl"])
def test_bf16_training_losses_agree_with_fp32(contrastive):
    torch.manual_seed(0)
    network = build_network("photo", "lct", contrastive)
    lively(network.stages)
    content, style = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    anchors = [sample_anchors(size, size, 8) for size in (64, 32, 16)]
    full, _ = network(content, style, anchors)
    with bf16_autocast():
        mixed, result = network(content, style, anchors)
    assert result.dtype == torch.bfloat16                 # the convolutions did run in bf16
    assert set(mixed) == set(full) == ({"content", "style", "nce", "kl"} if contrastive == "wce"
                                       else {"content", "style", "nce"})
    for name in full:
        assert mixed[name].dtype == torch.float32
        assert mixed[name].item() == pytest.approx(full[name].item(), rel=LOSS_RTOL), name
    total = sum(mixed.values())
    total.backward()
    grads = [p.grad for p in network.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("mode", ["photo", "art"])
def test_bf16_stylizer_agrees_with_fp32(mode):
    torch.manual_seed(0)
    decoder = lively(build_decoder(mode))
    with torch.no_grad():
        decoder[-1].weight.mul_(0.3 if mode == "photo" else 0.15)
        decoder[-1].bias.fill_(0.5)
    stylizer = Stylizer(lively(build_encoder(mode)), decoder, lively(build_transform("lct", mode)), mode, device="cpu")
    generator = torch.Generator().manual_seed(1)
    content, style = torch.rand(3, 100, 123, generator=generator), torch.rand(3, 90, 77, generator=generator)
    full = stylizer.stylize(content, [style])
    stylizer.amp_dtype = torch.bfloat16
    mixed = stylizer.stylize(content, [style])
    assert full.std() > 0.05
    difference = (mixed - full).abs()
    assert 0 < difference.mean() < IMAGE_MEAN_ATOL       # bf16 was used, and stays close
    assert difference.max() < IMAGE_MAX_ATOL
