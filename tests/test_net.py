"""net.py: encoder/decoder layouts, modes, and SCT/LCT/AdaIN against a hand computation of the method."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from function import calc_mean_std
from net import (LCT, MODES, SCT, build_decoder, build_encoder, build_transform, decoder_layout,
                 parse_mode, vgg_layout)


# ---------------------------------------------------------------------------------------------
# Layouts and modes
# ---------------------------------------------------------------------------------------------

def test_vgg_layout_has_53_children_and_reference_relu_indexes():
    layers = vgg_layout()
    assert len(layers) == 53
    assert isinstance(layers[0], nn.Conv2d) and layers[0].kernel_size == (1, 1)
    relus = [i for i, layer in enumerate(layers) if isinstance(layer, nn.ReLU)]
    assert len(relus) == 16
    # relu1_1, relu2_1, relu3_1, relu4_1 are the 1st, 3rd, 5th and 9th ReLUs: children 3, 10, 17, 30,
    # so the slices [:4], [4:11], [11:18], [18:31] of the method (docs/method.md) end on them.
    assert [relus[0], relus[2], relus[4], relus[8]] == [3, 10, 17, 30]
    pools = [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    assert pools == [7, 14, 27, 40]
    assert all(layers[i].ceil_mode for i in pools)
    convs = {i: (layer.in_channels, layer.out_channels) for i, layer in enumerate(layers)
             if isinstance(layer, nn.Conv2d)}
    assert convs[2] == (3, 64) and convs[9] == (64, 128) and convs[16] == (128, 256) and convs[29] == (256, 512)
    assert all(isinstance(layers[i - 1], nn.ReflectionPad2d) for i in convs if i > 0)


def test_mode_specs_follow_method():
    assert MODES["photo"].stage_ends == (4, 11, 18) and MODES["photo"].encoder_end == 18
    assert MODES["art"].stage_ends == (4, 11, 18, 31) and MODES["art"].encoder_end == 31
    assert MODES["photo"].decoder_start == 10 and MODES["art"].decoder_start == 0
    assert MODES["photo"].feature_channels == 256 and MODES["art"].feature_channels == 512


def test_build_encoder_children_and_keys():
    photo, art = build_encoder("photo"), build_encoder("art")
    assert len(photo) == 18 and len(art) == 31
    conv_keys = sorted({k.split(".")[0] for k in photo.state_dict()}, key=int)
    assert conv_keys == ["0", "2", "5", "9", "12", "16"]      # the keys of the shared relu3_1 file
    assert not any(p.requires_grad for p in art.parameters())
    assert not photo.training


def test_build_decoder_keys():
    assert len(decoder_layout()) == 29
    photo, art = build_decoder("photo"), build_decoder("art")
    assert len(photo) == 19 and len(art) == 29
    assert sorted({k.split(".")[0] for k in photo.state_dict()}, key=int) == ["11", "14", "18", "21", "25", "28"]
    assert sorted({k.split(".")[0] for k in art.state_dict()}, key=int) == [
        "1", "5", "8", "11", "14", "18", "21", "25", "28"]
    assert photo.state_dict()["11.weight"].shape == (256, 256, 3, 3)
    assert photo.state_dict()["14.weight"].shape == (128, 256, 3, 3)
    assert art.state_dict()["1.weight"].shape == (256, 512, 3, 3)
    assert art.state_dict()["28.weight"].shape == (3, 64, 3, 3)


@pytest.mark.parametrize("mode, channels, scale", [("photo", 256, 4), ("art", 512, 8)])
def test_encoder_and_decoder_shapes(mode, channels, scale):
    image = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        feat = build_encoder(mode)(image)
        assert feat.shape == (2, channels, 48 // scale, 64 // scale)
        assert build_decoder(mode)(feat).shape == (2, 3, 48, 64)


@pytest.mark.parametrize("name, expected", [("pho", "photo"), ("Photo-realistic", "photo"), ("photo", "photo"),
                                            ("art", "art"), ("artistic", "art"), (" ART ", "art")])
def test_parse_mode_accepts_reference_spellings(name, expected):
    assert parse_mode(name).name == expected


def test_parse_mode_returns_a_mode_spec_unchanged():
    for spec in MODES.values():
        assert parse_mode(spec) is spec


@pytest.mark.parametrize("name", ["junk", "", "photos", "ar", "relu3_1", None])
def test_parse_mode_rejects_junk(name):
    with pytest.raises(ValueError, match="unknown mode"):
        parse_mode(name)


def test_build_transform_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown transform"):
        build_transform("wct", "photo")


# ---------------------------------------------------------------------------------------------
# SCT and LCT
# ---------------------------------------------------------------------------------------------

def _features(mode: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive, ReLU-like content and style features at the mode's last layer."""
    channels = parse_mode(mode).feature_channels
    gen = torch.Generator().manual_seed(seed)
    content = torch.relu(torch.randn(2, channels, 6, 7, generator=gen) * 2 + 0.5)
    style = torch.relu(torch.randn(2, channels, 7, 5, generator=gen) * 3 + 1)
    return content, style


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    """Random weights and biases large enough that every term matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    return module


def _np_mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    return (flat.mean(2)[:, :, None, None], np.sqrt(flat.var(2, ddof=1) + 1e-5)[:, :, None, None])


def _hand_sct(model: SCT, content: torch.Tensor, style: torch.Tensor) -> np.ndarray:
    """The method's SCT step by step in float64 numpy; only the cnet/snet conv stacks are the model's."""
    double = copy.deepcopy(model).double()
    c, s = content.double().numpy(), style.double().numpy()
    c_mean, c_std = _np_mean_std(c)
    normalised = (c - c_mean) / c_std
    s_mean = s.mean(axis=(2, 3), keepdims=True)
    with torch.no_grad():
        comp_c = double.cnet(torch.from_numpy(normalised)).numpy()
        comp_s = double.snet(torch.from_numpy(s - s_mean)).numpy()
    flat_s = comp_s.reshape(comp_s.shape[0], 32, -1)
    cov = flat_s @ flat_s.transpose(0, 2, 1) / flat_s.shape[2]                 # (N, 32, 32)
    n, _, h, w = comp_c.shape
    mixed = (cov @ comp_c.reshape(n, 32, -1)).reshape(n, 32, h, w)
    weight = double.uncompress.weight.detach().numpy()[:, :, 0, 0]      # (C, 32)
    bias = double.uncompress.bias.detach().numpy()
    return np.einsum("ok,nkhw->nohw", weight, mixed) + bias[None, :, None, None] + s_mean


def _hand_adain(content: torch.Tensor, style: torch.Tensor) -> np.ndarray:
    c, s = content.double().numpy(), style.double().numpy()
    c_mean, c_std = _np_mean_std(c)
    s_mean, s_std = _np_mean_std(s)
    return (c - c_mean) / c_std * s_std + s_mean


@pytest.mark.parametrize("mode", ["photo", "art"])
def test_sct_matches_hand_computation(mode):
    torch.manual_seed(0)
    model = _randomise(SCT(mode), seed=1)
    content, style = _features(mode)
    with torch.no_grad():
        out = model(content, style)
    expected = _hand_sct(model, content, style)
    channels = parse_mode(mode).feature_channels
    assert out.shape == (2, channels, 6, 7)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-4, atol=1e-5 * scale)
    # The style mean matters: a different style mean shifts the output by exactly that amount.
    with torch.no_grad():
        shifted = model(content, style + 0.5)
    np.testing.assert_allclose((shifted - out).numpy(), 0.5, atol=1e-4 * scale)


@pytest.mark.parametrize("mode", ["photo", "art"])
def test_lct_is_mean_of_sct_and_adain(mode):
    content, style = _features(mode, seed=3)
    sct = _randomise(SCT(mode), seed=4)
    lct = LCT(mode)
    lct.load_state_dict(sct.state_dict())
    with torch.no_grad():
        out_lct, out_sct = lct(content, style), sct(content, style)
    adain = _hand_adain(content, style)
    scale = np.abs(adain).max()
    np.testing.assert_allclose(out_lct.double().numpy(), (out_sct.double().numpy() + adain) / 2,
                               rtol=1e-4, atol=1e-5 * scale)
    assert not torch.allclose(out_lct, out_sct)


@pytest.mark.parametrize("mode", ["photo", "art"])
def test_adain_is_a_transform_without_weights_applied_from_statistics(mode):
    """AdaIN (``--transform adain``) keeps the transform protocol: statistics once, then ``apply``;
    it equals AdaIN by hand, has no parameters and no covariance."""
    content, style = _features(mode, seed=7)
    adain = build_transform("adain", mode)
    stats = adain.style_statistics(style)
    assert stats.cov is None and list(adain.parameters()) == []
    with torch.no_grad():
        out = adain.apply(content, *calc_mean_std(content), stats)
    np.testing.assert_allclose(out.double().numpy(), _hand_adain(content, style), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(adain(content, style), out)


@pytest.mark.parametrize("mode", ["photo", "art"])
def test_sct_and_lct_share_state_dicts(mode):
    sct, lct = _randomise(SCT(mode), seed=5), _randomise(LCT(mode), seed=6)
    prefixes = {k.split(".")[0] for k in sct.state_dict()}
    assert prefixes == {"cnet", "snet", "uncompress"}
    assert sct.state_dict().keys() == lct.state_dict().keys()
    assert {k: v.shape for k, v in sct.state_dict().items()} == {k: v.shape for k, v in lct.state_dict().items()}
    fresh_lct, fresh_sct = LCT(mode), SCT(mode)
    fresh_lct.load_state_dict(sct.state_dict())      # strict: SCT file -> LCT
    fresh_sct.load_state_dict(lct.state_dict())      # strict: LCT file -> SCT
    assert all(torch.equal(v, fresh_lct.state_dict()[k]) for k, v in sct.state_dict().items())
    assert all(torch.equal(v, fresh_sct.state_dict()[k]) for k, v in lct.state_dict().items())


def test_transform_layer_shapes_follow_method():
    photo, art = SCT("photo").state_dict(), SCT("art").state_dict()
    assert photo["cnet.0.weight"].shape == (128, 256, 1, 1) and photo["cnet.2.weight"].shape == (32, 128, 1, 1)
    assert photo["snet.0.weight"].shape == (128, 256, 3, 3) and photo["snet.2.weight"].shape == (32, 128, 1, 1)
    assert photo["uncompress.weight"].shape == (256, 32, 1, 1)
    assert art["cnet.0.weight"].shape == (256, 512, 1, 1) and art["cnet.4.weight"].shape == (32, 128, 1, 1)
    assert art["snet.0.weight"].shape == (256, 512, 3, 3) and art["snet.2.weight"].shape == (128, 256, 3, 3)
    assert art["snet.4.weight"].shape == (32, 128, 1, 1) and art["uncompress.weight"].shape == (512, 32, 1, 1)
