"""checkpoint.py: round trips, reference-layout files, refusals with CheckpointError, and
stylising from a reference-layout checkpoint pair."""
import argparse
import pickle
from collections import OrderedDict

import pytest
import torch
from torch import nn

from glfa.checkpoint import (CheckpointError, load_decoder, load_encoder, load_state_dict, load_transform,
                        save_state_dict)
from glfa.errors import UserError
from net import SCT, build_decoder, build_transform, decoder_layout, vgg_layout


def full_sequential(layers: list[nn.Module], seed: int) -> nn.Sequential:
    """A reference-style Sequential (keys ``0.`` … ``N-1.``) with random weights."""
    torch.manual_seed(seed)
    return nn.Sequential(*layers)


def full_decoder_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """What the reference code saves for a decoder: all 29 children, keys 1., 5., …, 28."""
    return full_sequential(decoder_layout(), seed).state_dict()


def transform_state(mode: str, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return SCT(mode).state_dict()


def assert_same_weights(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = module.state_dict()
    assert own, "module has no weights"
    for key, value in own.items():
        assert torch.equal(value, state[key]), key


# ---------------------------------------------------------------------------------------------
# Round trips and layouts
# ---------------------------------------------------------------------------------------------

def test_save_then_load_round_trip(tmp_path):
    torch.manual_seed(1)
    module = build_transform("lct", "photo")
    path = tmp_path / "sub" / "lct_iter_5.pth.tar"
    save_state_dict(module, path)
    loaded = load_state_dict(path)
    assert loaded.keys() == module.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in module.state_dict().items())
    assert [p.name for p in path.parent.iterdir()] == [path.name]        # no temporary file left
    # Saving a plain dict works too, and the file is readable with weights_only.
    save_state_dict({"a": torch.arange(3.0)}, tmp_path / "plain.pth")
    assert torch.equal(torch.load(tmp_path / "plain.pth", weights_only=True)["a"], torch.arange(3.0))


def test_module_prefix_is_stripped(tmp_path):
    state = transform_state("photo", seed=2)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "dp.pth")
    assert load_state_dict(tmp_path / "dp.pth").keys() == state.keys()
    assert_same_weights(load_transform(tmp_path / "dp.pth", "photo", "sct"), state)
    # A {"state_dict": ...} wrapper is unwrapped as well.
    torch.save({"state_dict": state}, tmp_path / "wrapped.pth")
    assert load_state_dict(tmp_path / "wrapped.pth").keys() == state.keys()


def test_full_decoder_file_serves_photo_and_art(tmp_path):
    state = full_decoder_state(seed=3)
    assert len({k.split(".")[0] for k in state}) == 9
    torch.save(state, tmp_path / "decoder_iter_1.pth.tar")
    photo = load_decoder(tmp_path / "decoder_iter_1.pth.tar", "photo")
    assert len(photo) == 19
    assert_same_weights(photo, state)                 # children [10:] with their full-layout keys
    assert_same_weights(load_decoder(tmp_path / "decoder_iter_1.pth.tar", "art"), state)


def test_photo_decoder_file_in_art_mode_fails_clearly(tmp_path):
    save_state_dict(build_decoder("photo"), tmp_path / "decoder.pth")
    with pytest.raises(CheckpointError, match="missing layers") as err:
        load_decoder(tmp_path / "decoder.pth", "art")
    assert "1, 5, 8" in str(err.value) and "photo" in str(err.value)


def test_transform_file_of_other_mode_is_refused(tmp_path):
    torch.save(transform_state("art"), tmp_path / "lct_art.pth")
    with pytest.raises(CheckpointError) as err:
        load_transform(tmp_path / "lct_art.pth", "photo")
    message = str(err.value)
    assert "art" in message and "photo" in message and "\n" not in message
    torch.save(transform_state("photo"), tmp_path / "lct_photo.pth")
    with pytest.raises(CheckpointError, match="photo"):
        load_transform(tmp_path / "lct_photo.pth", "art")


@pytest.mark.parametrize("kind", ["lct", "sct"])
@pytest.mark.parametrize("mode", ["photo", "art"])
def test_transform_loads_either_kind(tmp_path, mode, kind):
    state = transform_state(mode, seed=4)
    torch.save(state, tmp_path / "t.pth")
    transform = load_transform(tmp_path / "t.pth", mode, kind)
    assert type(transform).__name__ == kind.upper()
    assert_same_weights(transform, state)


def test_decoder_file_as_transform_is_refused(tmp_path):
    torch.save(full_decoder_state(), tmp_path / "decoder.pth")
    with pytest.raises(CheckpointError, match="not an LCT/SCT"):
        load_transform(tmp_path / "decoder.pth", "photo")
    torch.save(transform_state("photo"), tmp_path / "lct.pth")
    with pytest.raises(CheckpointError, match="missing layers"):
        load_decoder(tmp_path / "lct.pth", "photo")


def test_misshapen_weights_are_refused(tmp_path):
    state = full_decoder_state()
    state["28.weight"] = torch.zeros(3, 32, 3, 3)
    torch.save(state, tmp_path / "decoder.pth")
    with pytest.raises(CheckpointError, match="28.weight"):
        load_decoder(tmp_path / "decoder.pth", "photo")


# ---------------------------------------------------------------------------------------------
# Files that are not checkpoints
# ---------------------------------------------------------------------------------------------

class NotWeights:
    """An arbitrary picklable object: weights_only must refuse to rebuild it."""

    def __init__(self):
        self.value = 3


def _write_bad_files(folder) -> list[str]:
    gen = torch.Generator().manual_seed(5)
    files = {
        "text.pth": b"these are not weights\n",
        "random.pth": bytes(torch.randint(0, 256, (4096,), generator=gen, dtype=torch.uint8).tolist()),
        "empty.pth": b"",
        "pickle.pth": pickle.dumps(NotWeights(), protocol=2),
        "pickled_dict.pth": pickle.dumps({"a": [1, 2]}, protocol=2),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    torch.save(NotWeights(), folder / "torch_object.pth")
    torch.save(argparse.Namespace(lr=1e-4), folder / "namespace.pth")
    torch.save([torch.zeros(2)], folder / "tensor_list.pth")
    torch.save({"a": torch.zeros(2), "epoch": 3}, folder / "mixed_dict.pth")
    torch.save(torch.zeros(3), folder / "tensor.pth")
    torch.save({1: torch.zeros(2)}, folder / "int_keys.pth")
    torch.save(full_decoder_state(), folder / "whole.pth")
    whole = (folder / "whole.pth").read_bytes()
    (folder / "truncated.pth").write_bytes(whole[:len(whole) // 2])
    (folder / "whole.pth").unlink()
    torch.save({"a": torch.zeros(50)}, folder / "legacy.pth", _use_new_zipfile_serialization=False)
    legacy = (folder / "legacy.pth").read_bytes()
    (folder / "truncated_legacy.pth").write_bytes(legacy[:len(legacy) - 20])
    (folder / "legacy.pth").unlink()
    return sorted(p.name for p in folder.iterdir())


def test_non_checkpoints_raise_checkpoint_error(tmp_path):
    names = _write_bad_files(tmp_path)
    assert len(names) == 13
    for name in names:
        for load in (load_state_dict, lambda p: load_encoder(p, "photo"), lambda p: load_decoder(p, "art"),
                     lambda p: load_transform(p, "photo")):
            with pytest.raises(CheckpointError) as err:
                load(tmp_path / name)
            assert isinstance(err.value, UserError)
            assert name in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict(tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="is a folder: give a checkpoint file"):
        load_state_dict(tmp_path)                       # a folder is not a checkpoint (issue 27, also seen)


# ---------------------------------------------------------------------------------------------
# Encoder files
# ---------------------------------------------------------------------------------------------

def test_shared_relu3_1_file_loads_in_photo_mode_only(vgg_relu3_1):
    state = torch.load(vgg_relu3_1, weights_only=True)
    encoder = load_encoder(vgg_relu3_1, "photo")
    assert len(encoder) == 18
    assert_same_weights(encoder, state)
    assert not any(p.requires_grad for p in encoder.parameters())
    with pytest.raises(CheckpointError, match="missing layers 19") as err:
        load_encoder(vgg_relu3_1, "art")
    assert "relu4_1" in str(err.value)


def test_full_vgg_file_loads_in_both_modes(tmp_path):
    state = full_sequential(vgg_layout(), seed=6).state_dict()
    assert "51.weight" in state                          # up to relu5_4 (child 52)
    torch.save(state, tmp_path / "vgg_normalised.pth")
    for mode, children in [("photo", 18), ("art", 31)]:
        encoder = load_encoder(tmp_path / "vgg_normalised.pth", mode)
        assert len(encoder) == children
        assert_same_weights(encoder, state)


# ---------------------------------------------------------------------------------------------
# Stylising from a reference-layout checkpoint pair
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["lct", "sct"])
def test_stylizer_from_reference_layout_checkpoints(tmp_path, vgg_relu3_1, kind):
    from glfa.inference import Stylizer

    decoder = OrderedDict((k, v * 0.5) for k, v in full_decoder_state(seed=7).items())
    torch.save(decoder, tmp_path / "decoder_iter_160000.pth.tar")
    torch.save(transform_state("photo", seed=8), tmp_path / f"{kind}_iter_160000.pth.tar")
    stylizer = Stylizer.from_checkpoints(decoder=tmp_path / "decoder_iter_160000.pth.tar",
                                         transform=tmp_path / f"{kind}_iter_160000.pth.tar",
                                         vgg=vgg_relu3_1, mode="photo", kind=kind, device="cpu")
    gen = torch.Generator().manual_seed(9)
    style = torch.rand(3, 40, 48, generator=gen)
    for height, width in [(32, 48), (37, 53), (13, 17)]:
        content = torch.rand(3, height, width, generator=gen)
        out = stylizer.stylize(content, [style])
        assert out.shape == (3, height, width)
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    blended = stylizer.stylize(content, [style, style.flip(-1)], weights=[0.3, 0.7], alpha=0.5,
                               preserve_color=True)
    assert blended.shape == (3, 13, 17)
    with pytest.raises(UserError, match="at least"):
        stylizer.stylize(torch.rand(3, 8, 40), [style])


def test_glfa_transform_keys_load(tmp_path):
    """The GLFA training code names the branches ``cConv``/``sConv``: they load as ``cnet``/``snet``."""
    state = transform_state("photo", seed=5)
    glfa = {k.replace("cnet.", "cConv.").replace("snet.", "sConv."): v for k, v in state.items()}
    assert any(k.startswith("cConv.") for k in glfa) and not any(k.startswith("cnet.") for k in glfa)
    torch.save(glfa, tmp_path / "glfa_lct.pth")
    assert_same_weights(load_transform(tmp_path / "glfa_lct.pth", "photo"), state)
