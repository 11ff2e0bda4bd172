"""``torchrun --nproc_per_node=2 train.py`` on the CPU (gloo): ranks split the images, rank 0
alone writes, and a SIGTERM stops every rank at the same iteration with a state saved."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from glfa.checkpoint import load_training_state
from glfa.images import list_images
from sampler import InfiniteSampler

REPO = Path(__file__).resolve().parents[1]
BATCH, ITERATIONS = 2, 3

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this PyTorch build has no gloo backend")


def torchrun(flags: list[str], run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "--log-dir", str(run_dir / "ranks"), "--redirects", "3", str(REPO / "train.py"), *flags,
            "--save_dir", str(run_dir / "exp"), "--log_dir", str(run_dir / "logs"), *extra]


def rank_output(run_dir: Path, rank: int, stream: str) -> str:
    (path,) = (run_dir / "ranks").glob(f"*/attempt_0/{rank}/{stream}.log")
    return path.read_text()


def recorded_samples(run_dir: Path, rank: int) -> list[tuple[list[int], list[int]]]:
    """``TRAIN_SAMPLE_LOG`` lines: per iteration, the content and style indexes of the batch."""
    lines = (run_dir / "samples" / f"samples_rank{rank}.txt").read_text().splitlines()
    batches = []
    for number, line in enumerate(lines, start=1):
        iteration, rest = line.split(" ", 1)
        content, style = rest.split(" | ")
        assert int(iteration) == number
        batches.append(([int(i) for i in content.split()], [int(i) for i in style.split()]))
    return batches


def sample_env(run_dir: Path) -> dict[str, str]:
    return {**os.environ, "TRAIN_SAMPLE_LOG": str(run_dir / "samples"), "OMP_NUM_THREADS": "1"}


def test_two_ranks_draw_different_images_and_rank0_alone_writes(training_flags: list[str], tmp_path: Path,
                                                               training_folders: tuple[Path, Path]) -> None:
    command = torchrun(training_flags, tmp_path, "--contrastive", "ccpl", "--max_iter", str(ITERATIONS),
                       "--save_model_interval", "2")
    done = subprocess.run(command, cwd=tmp_path, env=sample_env(tmp_path), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    # Each rank took its own share of the same seeded passes, as the sampler defines them.
    sizes = [len(list_images(folder)) for folder in training_folders]
    firsts = []
    for rank in range(2):
        batches = recorded_samples(tmp_path, rank)
        assert len(batches) == ITERATIONS
        for stream, (size, seed) in enumerate(zip(sizes, (0, 1))):
            drawn = [i for batch in batches for i in batch[stream]]
            expected = InfiniteSampler(size, seed, rank=rank, num_replicas=2)
            assert drawn == [index for index, _ in zip(expected, range(len(drawn)))]
        firsts.append({i for batch in batches[:2] for i in batch[0]})  # 4 of the 8 content images each
    assert not firsts[0] & firsts[1] and len(firsts[0] | firsts[1]) == 8

    # Rank 0 alone wrote: one TensorBoard file, the saves reported by rank 0 only.
    assert len(list((tmp_path / "logs").glob("events.out.tfevents.*"))) == 1
    names = {p.name for p in (tmp_path / "exp").iterdir()}
    assert names == {f"{kind}_iter_{i}.{ext}" for i in (2, 3) for kind, ext in
                     (("decoder", "pth.tar"), ("lct", "pth.tar"), ("grid", "png"), ("training_state", "pth"))} | \
        {"iter_2.json", "iter_3.json"}
    assert rank_output(tmp_path, 0, "stdout").count("saved weights, grid and training_state") == 2
    assert "saved" not in rank_output(tmp_path, 1, "stdout")
    assert "train:" in rank_output(tmp_path, 0, "stderr") and "train:" not in rank_output(tmp_path, 1, "stderr")
    state = load_training_state(tmp_path / "exp" / "training_state_iter_3.pth")
    assert state["world_size"] == 2 and state["draws"] == ITERATIONS * BATCH


def test_sigterm_stops_every_rank_at_the_same_iteration(training_flags: list[str], tmp_path: Path) -> None:
    command = torchrun(training_flags, tmp_path, "--contrastive", "none", "--max_iter", "1000",
                       "--save_model_interval", "2")
    launcher = subprocess.Popen(command, cwd=tmp_path, env=sample_env(tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "exp" / "training_state_iter_2.pth").exists():
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[1][-3000:]
        time.sleep(0.05)
    launcher.send_signal(signal.SIGTERM)  # torchrun passes it on to both ranks
    launcher.communicate(timeout=120)

    stopped = [len(recorded_samples(tmp_path, rank)) for rank in range(2)]
    assert stopped[0] == stopped[1] >= 2
    message = rank_output(tmp_path, 0, "stderr")
    assert f"stopped by SIGTERM at iteration {stopped[0]}" in message
    state = load_training_state(tmp_path / "exp" / f"training_state_iter_{stopped[0]}.pth")
    assert state["iteration"] == stopped[0] and state["world_size"] == 2
