"""Mixed precision: under bf16 autocast the statistics and loss helpers still compute in fp32,
and bf16 results agree with fp32 ones within stated tolerances (CPU autocast supports bf16).

Stated tolerances: each training loss (content, style, nce, kl) within 1% relative; stylised
images (values in [0, 1]) within 0.01 mean and 0.06 maximum absolute difference.

bf16 on a CPU that only emulates it (tens of times slower than fp32) is refused by the API and by
every command, before any model is loaded; with native bf16 it stays allowed (issue 20, case 15).
"""
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import glfa.device as device
from function import calc_cov, calc_mean_std, mean_norm
from glfa.cli import run_main
from glfa.errors import UserError
from glfa.inference import Stylizer
from helpers import REPO_ROOT, lively, write_model
from net import (build_decoder, build_encoder, build_network, build_transform, info_nce, neighbourhood_kl,
                 sample_anchors, sinkhorn_weights)

CONTENT, STYLE = REPO_ROOT / "test" / "content" / "coast_dune.jpg", REPO_ROOT / "test" / "style" / "sunset_boats.jpg"
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
    stylizer.run = dataclasses.replace(stylizer.run, amp_dtype=torch.bfloat16)
    mixed = stylizer.stylize(content, [style])
    assert full.std() > 0.05
    difference = (mixed - full).abs()
    assert 0 < difference.mean() < IMAGE_MEAN_ATOL       # bf16 was used, and stays close
    assert difference.max() < IMAGE_MAX_ATOL


# --------------------------------------------------------------------------------------------
# Issue 20, case 15: bf16 on a CPU that only emulates it
# --------------------------------------------------------------------------------------------

def load_command(name: str):
    """A command's module, loaded without running its ``main``."""
    spec = importlib.util.spec_from_file_location(f"precision_command_{name}", REPO_ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def emulated_bf16(monkeypatch: pytest.MonkeyPatch, native: bool = False) -> None:
    """Make this CPU look like one without (or with) native bf16, e.g. AVX2 only."""
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)


def random_stylizer(**options) -> Stylizer:
    return Stylizer(build_encoder("photo"), build_decoder("photo"), build_transform("lct"), "photo", device="cpu",
                    **options)


def test_issue20_15_the_api_refuses_emulated_bf16_and_allows_native(monkeypatch: pytest.MonkeyPatch):
    """Case 15: ``--amp bf16`` on a CPU without native bf16 ran a 3×3 convolution 70× slower than fp32."""
    emulated_bf16(monkeypatch)
    with pytest.raises(UserError, match="--amp bf16 needs a CPU with native bf16.*use --amp off"):
        random_stylizer(amp_dtype=torch.bfloat16)
    with pytest.raises(UserError, match="native bf16"):
        device.autocast_dtype("bf16", torch.device("cpu"))
    assert device.autocast_dtype("auto", torch.device("cpu")) is None        # auto never picks it on a CPU
    assert random_stylizer().run.amp_dtype is None
    emulated_bf16(monkeypatch, native=True)
    assert device.autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert random_stylizer(amp_dtype=torch.bfloat16).run.amp_dtype == torch.bfloat16


def run_command(capsys: pytest.CaptureFixture, name: str, argv: list) -> tuple[int, str]:
    """A command's ``main`` in this process: its exit status and stderr."""
    module = load_command(name)
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: sys.exit(module.main([str(arg) for arg in argv])))
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture
def command_inputs(tmp_path: Path) -> dict[str, list]:
    """Each command's flags for a run on the CPU whose model files do not exist: refusing the
    precision before anything is loaded is the only way for the error to be about bf16."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(2):
        Image.new("RGB", (32, 32), (40 * index, 90, 160)).save(frames / f"f{index}.png")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{CONTENT} {STYLE}\n")
    missing = [tmp_path / name for name in ("vgg.pth", "decoder.pth", "lct.pth")]
    model = ["--vgg", missing[0], "--decoder", missing[1], "--LCT", missing[2]]
    return {
        "train": ["--content_dir", REPO_ROOT / "test/content", "--style_dir", REPO_ROOT / "test/style", "--vgg",
                  missing[0], "--max_iter", "1", "--save_dir", tmp_path / "run", "--log_dir", tmp_path / "run/logs"],
        "test": ["--content", CONTENT, "--style", STYLE, *model, "--output", tmp_path / "out"],
        "eval": ["--pairs", pairs, "--vgg", missing[0], "--model", f"m={missing[1]},{missing[2]}",
                 "--output", tmp_path / "out"],
        "video": [frames, "--style", STYLE, *model, "--output", tmp_path / "out"],
    }


@pytest.mark.parametrize("name", ["train", "test", "eval", "video"])
def test_issue20_15_every_command_refuses_emulated_bf16_in_one_line_before_loading(
        name: str, command_inputs: dict[str, list], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture):
    """Case 15: train.py, test.py, eval.py and video.py refuse ``--amp bf16`` on such a CPU in one
    ``error:`` line, before any model is loaded and before anything is written."""
    emulated_bf16(monkeypatch)
    code, err = run_command(capsys, name, [*command_inputs[name], "--amp", "bf16", "--device", "cpu"])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err[-2000:]
    assert lines[0].startswith("error: --amp bf16 needs a CPU with native bf16") and "--amp off" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


def test_issue20_15_test_py_still_runs_bf16_on_a_cpu_with_native_bf16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture):
    """Case 15: with native bf16 (AVX512-BF16 or AMX) ``--amp bf16`` stays allowed on the CPU."""
    emulated_bf16(monkeypatch, native=True)
    decoder, transform = write_model(tmp_path / "model", 1)
    code, err = run_command(capsys, "test", ["--content", CONTENT, "--style", STYLE, "--decoder", decoder, "--LCT",
                                             transform, "--content_size", "32", "--style_size", "32", "--amp", "bf16",
                                             "--device", "cpu", "--output", tmp_path / "out"])
    assert code in (0, None), err[-2000:]
    assert (tmp_path / "out" / f"{CONTENT.stem}_stylized_{STYLE.stem}.jpg").is_file()
