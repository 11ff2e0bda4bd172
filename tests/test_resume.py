"""Resumable training: exact continuation, graceful stop (SIGTERM), hard kill (SIGKILL),
atomic saves, TensorBoard continuation and refused mismatches."""
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboardX.proto.event_pb2 import Event

import glfa.checkpoint as checkpoint
import glfa.train as training
from glfa.checkpoint import load_training_state
from glfa.errors import UserError
from glfa.runfolder import RunFolder
from glfa.schedule import learning_rate
from train import parse_args

REPO = Path(__file__).resolve().parents[1]
# CCPL (random anchors; WCE shares the sampling) and a steep schedule, so anchors and learning rate must both be restored.
RUN_FLAGS = ["--contrastive", "ccpl", "--lr_decay", "0.5", "--save_model_interval", "1", "--keep_last", "0"]


def argv(flags: list[str], run_dir: Path, *extra: str) -> list[str]:
    return [*flags, *RUN_FLAGS, "--save_dir", str(run_dir / "exp"), "--log_dir", str(run_dir / "logs"), *extra]


def state_path(run_dir: Path, iteration: int) -> Path:
    return run_dir / "exp" / f"training_state_iter_{iteration}.pth"


@pytest.fixture(scope="module")
def reference(training_flags: list[str], tmp_path_factory: pytest.TempPathFactory):
    """``reference(n)``: the training state file after ``n`` iterations of an uninterrupted run
    (run on first need, and run again, longer, if a test needs more iterations)."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    done = [0]

    def state_file(iteration: int) -> Path:
        if iteration > done[0]:
            shutil.rmtree(run_dir / "exp", ignore_errors=True)
            done[0] = max(iteration, 6)
            assert training.train(parse_args(argv(training_flags, run_dir, "--max_iter", str(done[0])))) == 0
        return state_path(run_dir, iteration)

    return state_file


def assert_same_state(a: dict, b: dict) -> None:
    """Same iteration, sampler position, weights, optimiser moments and learning rate."""
    assert (a["iteration"], a["draws"]) == (b["iteration"], b["draws"])
    for part in ("decoder", "transform", "heads"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for index, moments in a["optimizer"]["state"].items():
        for name, value in moments.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name]), f"optimizer {index}.{name} differs"


def read_events(log_dir: Path) -> list[Event]:
    """Every event of the TensorBoard files in ``log_dir`` (TFRecord framing: length, crc, data, crc)."""
    events = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            events.append(Event.FromString(data[offset + 12:offset + 12 + length]))
            offset += 12 + length + 4
    return events


def test_resumed_run_equals_uninterrupted_run(training_flags: list[str], tmp_path: Path, reference) -> None:
    saved = state_path(tmp_path, 3)
    saved.parent.mkdir()
    shutil.copy(reference(3), saved)
    # Loader workers this time: crops are seeded per draw, so they must not change the result.
    args = parse_args(argv(training_flags, tmp_path, "--max_iter", "5", "--resume", str(saved), "--n_threads", "2"))
    assert training.train(args) == 0
    resumed = load_training_state(state_path(tmp_path, 5))
    assert_same_state(resumed, load_training_state(reference(5)))
    expected_lr = learning_rate(1e-4, 0.5, 4)
    assert resumed["optimizer"]["param_groups"][0]["lr"] == pytest.approx(expected_lr, rel=1e-12)

    # TensorBoard continues: the writer purges anything logged from iteration 4 on, then logs 4 and 5.
    events = read_events(tmp_path / "logs")
    assert [e.step for e in events if e.HasField("session_log")] == [4]
    lr = {e.step: e.summary.value[0].simple_value for e in events
          if e.HasField("summary") and e.summary.value[0].tag == "lr"}
    assert sorted(lr) == [4, 5] and lr[5] == pytest.approx(expected_lr, rel=1e-6)


def start_training(flags: list[str], run_dir: Path) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "train.py"), *argv(flags, run_dir, "--max_iter", "1000")]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_sigterm_saves_a_state_that_resumes_exactly(training_flags: list[str], tmp_path: Path, reference) -> None:
    process = start_training(training_flags, tmp_path)
    wait_for(state_path(tmp_path, 1), process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    stopped_at = int(err.split("stopped by SIGTERM at iteration ")[1].split(";")[0])
    assert stopped_at >= 1 and "--resume auto" in err
    stopped = load_training_state(state_path(tmp_path, stopped_at))
    assert_same_state(stopped, load_training_state(reference(stopped_at)))

    args = parse_args(argv(training_flags, tmp_path, "--max_iter", str(stopped_at + 1), "--resume", "auto"))
    assert training.train(args) == 0
    assert_same_state(load_training_state(state_path(tmp_path, stopped_at + 1)),
                      load_training_state(reference(stopped_at + 1)))


def test_sigkill_leaves_only_complete_states(training_flags: list[str], tmp_path: Path, reference) -> None:
    process = start_training(training_flags, tmp_path)
    wait_for(state_path(tmp_path, 1), process)
    process.kill()
    process.communicate(timeout=60)
    states = RunFolder(tmp_path / "exp").training_states()
    for iteration, path in states:
        assert load_training_state(path)["iteration"] == iteration
    last = states[-1][0]
    args = parse_args(argv(training_flags, tmp_path, "--max_iter", str(last + 1), "--resume", "auto"))
    assert training.train(args) == 0
    assert_same_state(load_training_state(state_path(tmp_path, last + 1)), load_training_state(reference(last + 1)))


def test_a_save_killed_midway_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "training_state_iter_1.pth"
    checkpoint.save_training_state({"iteration": 1}, path)

    def dies_while_writing(obj, file):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", dies_while_writing)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_training_state({"iteration": 2}, path)
    assert load_training_state(path)["iteration"] == 1
    assert RunFolder(tmp_path).training_states() == [(1, path)]


def test_mismatched_resume_is_refused_in_one_line(training_flags: list[str], tmp_path: Path, reference) -> None:
    saved = reference(1)
    command = [sys.executable, "train.py", *argv(training_flags, tmp_path, "--max_iter", "3"),
               "--resume", str(saved), "--transform", "sct"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: cannot resume")
    assert "--transform lct (now sct)" in done.stderr
    with pytest.raises(UserError, match=r"--training_mode photo \(now art\).*--contrastive ccpl \(now wce\)"):
        training.train(parse_args(argv(training_flags, tmp_path, "--resume", str(saved), "--training_mode", "art",
                                       "--contrastive", "wce", "--crop_size", "40", "--image_size", "40")))
    assert not list((tmp_path / "exp").iterdir())                   # the lock taken for the run is gone
