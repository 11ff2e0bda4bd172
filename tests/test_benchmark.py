"""The benchmark's comparison reference and its fast counterparts agree, and the benchmark
script runs end to end on the CPU at tiny sizes and prints its tables."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from glfa.benchmark import random_modules, reference_wce, step_loop_seconds, top_kernels
from net import WCE, build_network, sample_anchors

REPO = Path(__file__).resolve().parents[1]


def test_per_anchor_reference_matches_wce():
    torch.manual_seed(0)
    loss = WCE((8, 16), num_s=4, num_l=2)
    feats_result = [torch.randn(2, 8, 12, 10, requires_grad=True), torch.randn(2, 16, 6, 5, requires_grad=True)]
    feats_content = [torch.randn(2, 8, 12, 10), torch.randn(2, 16, 6, 5)]
    anchors = [sample_anchors(12, 10, 4), sample_anchors(6, 5, 4)]
    fast = loss(feats_result, feats_content, anchors)
    slow = reference_wce(feats_result, feats_content, loss, anchors)
    for name in ("nce", "kl"):
        assert slow[name].item() == pytest.approx(fast[name].item(), rel=1e-5)
    fast_grads = torch.autograd.grad(fast["nce"] + fast["kl"], feats_result)
    slow_grads = torch.autograd.grad(slow["nce"] + slow["kl"], feats_result)
    for fast_grad, slow_grad in zip(fast_grads, slow_grads):
        assert fast_grad.abs().sum() > 0
        torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-4, atol=1e-7)


def test_benchmark_script_prints_its_tables(tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--device", "cpu",
               "--vgg", str(tmp_path / "missing.pth"), "--batch_size", "1", "--crop", "32", "--sizes", "48",
               "--style_size", "32", "--share_batch", "1", "--share_crop", "32", "--warmup", "0", "--repeats", "1",
               "--contrastive", "wce,none", "--infer_precisions", "fp32", "--loader_dir", str(REPO / "test"),
               "--large_photos", "0", "--loader_batches", "1", "--loader_workers", "0", "--sync_steps", "1",
               "--profile", "3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "random weights" in out
    for heading in ("### Training step", "### WCE forward + backward", "### The per-step non-finite check",
                    "### Loader alone", "### Inference", "### Top kernels: training step, wce, fp32",
                    "### Top kernels: inference 48×48, fp32"):
        assert heading in out
    assert "| wce | fp32 |" in out and "| none | fp32 |" in out
    assert "| 48×48 | fp32 | whole |" in out
    assert "per-anchor slicing" in out


def test_benchmark_refuses_fp16_on_cpu(tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--device", "cpu", "--infer_precisions", "fp16"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error:") and "Traceback" not in done.stderr


def test_top_kernels_ranks_the_costliest_operators_first():
    """On the CPU the profile ranks operators by self time: a large matrix product outweighs a
    small addition, and the last row totals every row above it and more."""
    big, small = torch.randn(300, 300), torch.randn(10)
    rows = top_kernels(lambda: (big @ big, small + 1), torch.device("cpu"), rows=2, calls=2)
    assert rows[0][0] == "aten::mm" and rows[-1][0] == "all kernels"
    assert float(rows[0][1]) >= float(rows[1][1])
    assert float(rows[-1][1]) >= sum(float(row[1]) for row in rows[:-1]) - 0.02


def test_step_loop_takes_optimizer_steps_with_and_without_the_check():
    """Both loops train: the decoder's weights move, and each reports a positive time per step."""
    torch.manual_seed(0)
    network = build_network("photo", "lct", "wce")
    random_modules(network.stages)
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    for check in (False, True):
        before = [p.detach().clone() for p in network.decoder.parameters()]
        assert step_loop_seconds(network, content, style, None, steps=1, check=check) > 0
        assert any(not torch.equal(a, b) for a, b in zip(before, network.decoder.parameters()))
