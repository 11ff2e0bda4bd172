"""Training that loses nothing and is never silently wrong: one run per --save_dir, resuming the
run written last, full disks, damaged or non-finite training states, prompt stops, and the
record of what produced every save."""
import copy
import errno
import hashlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import glfa.checkpoint as checkpoint
import glfa.train as training
from glfa.checkpoint import load_training_state, save_state_dict, save_training_state
from glfa.cli import run_main
from glfa.errors import UserError
from glfa.provenance import git_commit, git_modified
from glfa.runfolder import RunFolder
from net import StyleTransferNet, build_encoder
from train import parse_args

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--contrastive", "none", "--save_model_interval", "1", "--keep_last", "0"]


def args_for(flags: list[str], run_dir: Path, *extra: str):
    return parse_args([*flags, *QUICK, "--save_dir", str(run_dir / "exp"), "--log_dir", str(run_dir / "logs"),
                       *extra])


def run_training(flags: list[str], run_dir: Path, *extra: str) -> int:
    return training.train(args_for(flags, run_dir, *extra))


def one_error_line(capsys: pytest.CaptureFixture, flags: list[str], run_dir: Path, *extra: str) -> str:
    """Train through ``run_main`` and return its only line, which must be an ``error:`` line (status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: sys.exit(run_training(flags, run_dir, *extra)))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1 and err.rstrip().endswith(errors[0]), err[-2000:]
    return errors[0]


def state_file(run_dir: Path, iteration: int) -> Path:
    return run_dir / "exp" / f"training_state_iter_{iteration}.pth"


@pytest.fixture(scope="module")
def saved_state(training_flags: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The training state after one iteration of a tiny run."""
    run_dir = tmp_path_factory.mktemp("one_iteration")
    assert run_training(training_flags, run_dir, "--max_iter", "1") == 0
    return load_training_state(state_file(run_dir, 1))


# --------------------------------------------------------------------------------------------
# Data loss
# --------------------------------------------------------------------------------------------

def test_a_second_run_on_a_save_dir_in_use_is_refused(training_flags: list[str], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    command = [sys.executable, str(REPO / "train.py"), *training_flags, *QUICK, "--max_iter", "100000",
               "--save_dir", str(tmp_path / "exp"), "--log_dir", str(tmp_path / "first_logs")]
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not state_file(tmp_path, 1).exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-2000:]
            time.sleep(0.05)
        error = one_error_line(capsys, training_flags, tmp_path, "--max_iter", "2", "--keep_last", "1")
        assert f"PID {first.pid}" in error and socket.gethostname() in error and "--save_dir" in error
        assert state_file(tmp_path, 1).exists()                      # not pruned by the refused run
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(training_flags: list[str], tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "train.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    assert run_training(training_flags, tmp_path, "--max_iter", "1") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"PID {pid}" in warnings[0] and "train.lock" in warnings[0]
    assert not (tmp_path / "exp" / "train.lock").exists()           # released at the end


def test_resume_auto_continues_the_run_written_last(training_flags: list[str], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    assert run_training(training_flags, tmp_path, "--max_iter", "4") == 0
    # Rewind, as the non-finite-loss message advises: resume an older state with a lower --lr and stop.
    assert run_training(training_flags, tmp_path, "--max_iter", "2", "--lr", "5e-5",
                        "--resume", str(state_file(tmp_path, 1))) == 0
    capsys.readouterr()
    assert run_training(training_flags, tmp_path, "--max_iter", "3", "--lr", "5e-5", "--resume", "auto") == 0
    out = capsys.readouterr().out
    assert f"resuming from {state_file(tmp_path, 2)}" in out and "written last" in out
    assert "training_state_iter_4.pth" in out                       # the abandoned run's state is named
    assert load_training_state(state_file(tmp_path, 3))["args"]["lr"] == 5e-5


class FullDisk:
    """A file that takes ``room`` bytes, then fails like a full disk."""

    def __init__(self, path: Path, mode: str, room: int):
        self.file, self.room = open(path, mode), room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.file.write(bytes(data)[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self) -> "FullDisk":
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


@pytest.mark.parametrize("room", [0, 1000], ids=["nothing written", "half written"])
def test_a_full_disk_is_one_line_keeps_the_previous_state_and_leaves_no_temporary_file(
        training_flags: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        room: int) -> None:
    def disk_fills_at_iteration_2(path, mode="r", *args, **kwargs):
        return FullDisk(path, mode, room) if "iter_2" in str(path) else open(path, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "open", disk_fills_at_iteration_2, raising=False)
    error = one_error_line(capsys, training_flags, tmp_path, "--max_iter", "3")
    assert "No space left on device" in error and "iter_2" in error and "--resume auto" in error
    exp = tmp_path / "exp"
    assert not [p.name for p in exp.iterdir() if ".tmp" in p.name or "iter_2" in p.name]
    assert load_training_state(state_file(tmp_path, 1))["iteration"] == 1
    monkeypatch.undo()

    # A run killed while saving leaves its temporary file: the next start removes it, then resumes.
    orphan = exp / ".training_state_iter_7.pth.tmp4242"
    orphan.write_bytes(b"half a checkpoint")
    assert run_training(training_flags, tmp_path, "--max_iter", "2", "--resume", "auto") == 0
    assert not orphan.exists() and "removed 1 temporary file" in capsys.readouterr().out
    assert load_training_state(state_file(tmp_path, 2))["iteration"] == 2


# --------------------------------------------------------------------------------------------
# Silently wrong results
# --------------------------------------------------------------------------------------------

def test_a_run_whose_every_step_is_skipped_is_an_error(training_flags: list[str], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    forward = StyleTransferNet.forward

    def always_nan(self, *args, **kwargs):
        losses, result = forward(self, *args, **kwargs)
        losses["content"] = losses["content"] * float("nan")
        return losses, result

    monkeypatch.setattr(StyleTransferNet, "forward", always_nan)
    with pytest.raises(training.TrainingDiverged, match="every step of this run was skipped"):
        run_training(training_flags, tmp_path, "--max_iter", "3")


DAMAGED_STATES = {
    "non-finite decoder weight": (lambda s: s["decoder"][next(iter(s["decoder"]))].view(-1)[0].fill_(float("nan")),
                                  "non-finite"),
    "non-finite optimiser moment": (lambda s: next(iter(s["optimizer"]["state"].values()))["exp_avg"].fill_(
        float("inf")), "non-finite"),
    "missing key": (lambda s: s.pop("optimizer"), "has no 'optimizer'"),
    "weight of the wrong shape": (lambda s: s["transform"].update({"cnet.0.weight": torch.zeros(2, 2)}), "has shape"),
    "moment of the wrong shape": (lambda s: next(iter(s["optimizer"]["state"].values())).update(
        exp_avg=torch.zeros(3)), "has shape"),
    "iteration is text": (lambda s: s.update(iteration="5"), "iteration"),
    "decoder is a list": (lambda s: s.update(decoder=[1, 2]), "decoder"),
    "weights are not tensors": (lambda s: s["decoder"].update({next(iter(s["decoder"])): 1.0}), "decoder"),
}


@pytest.mark.parametrize("case", DAMAGED_STATES, ids=list(DAMAGED_STATES))
def test_a_damaged_training_state_is_refused_in_one_line(case: str, saved_state: dict, training_flags: list[str],
                                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    damage, fragment = DAMAGED_STATES[case]
    state = copy.deepcopy(saved_state)
    damage(state)
    path = tmp_path / "damaged.pth"
    torch.save(state, path)
    error = one_error_line(capsys, training_flags, tmp_path, "--max_iter", "3", "--resume", str(path))
    assert str(path) in error and fragment in error
    assert not list((tmp_path / "exp").glob("*.pth*"))


# --------------------------------------------------------------------------------------------
# Stopping, resuming, precision
# --------------------------------------------------------------------------------------------

def test_sigterm_stops_at_the_iteration_it_arrives_in(training_flags: list[str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    step = training.forward_backward
    calls = itertools.count(1)

    def terminated_in_iteration_2(*args, **kwargs):
        if next(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(*args, **kwargs)

    monkeypatch.setattr(training, "forward_backward", terminated_in_iteration_2)
    assert run_training(training_flags, tmp_path, "--max_iter", "10") == 128 + signal.SIGTERM
    assert [n for n, _ in RunFolder(tmp_path / "exp").training_states()] == [1, 2]


def test_resuming_with_another_encoder_file_is_pointed_out(training_flags: list[str], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    assert run_training(training_flags, tmp_path, "--max_iter", "1") == 0
    torch.manual_seed(5)
    other = tmp_path / "other_vgg.pth"
    save_state_dict(build_encoder("photo"), other)
    capsys.readouterr()
    assert run_training(training_flags, tmp_path, "--max_iter", "2", "--resume", "auto", "--vgg", str(other)) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "--vgg" in line]
    assert len(notes) == 1 and str(other) in notes[0] and "another encoder" in notes[0]


def test_fp16_on_the_cpu_is_refused(training_flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    error = one_error_line(capsys, training_flags, tmp_path, "--max_iter", "1", "--amp", "fp16", "--device", "cpu")
    assert "fp16" in error and "--amp off" in error


# --------------------------------------------------------------------------------------------
# What produced each save
# --------------------------------------------------------------------------------------------

def test_every_save_records_what_produced_it(training_flags: list[str], training_vgg: Path, tmp_path: Path) -> None:
    assert run_training(training_flags, tmp_path, "--max_iter", "2") == 0
    assert run_training(training_flags, tmp_path, "--max_iter", "3", "--resume", "auto") == 0
    exp = tmp_path / "exp"
    records = [json.loads((exp / f"iter_{n}.json").read_text()) for n in (1, 2, 3)]
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = git.stdout.strip() if git.returncode == 0 and (REPO / ".git").exists() else "unknown"
    for n, record in enumerate(records, start=1):
        assert record["iteration"] == n and record["git_commit"] == commit
        assert record["versions"]["torch"] == torch.__version__
        assert {"torchvision", "python"} <= record["versions"].keys()
        assert record["vgg_sha256"] == hashlib.sha256(training_vgg.read_bytes()).hexdigest()
        assert record["args"]["max_iter"] == (2 if n < 3 else 3) and record["args"]["vgg"] == str(training_vgg)
        assert {"decoder_iter_%d.pth.tar" % n, "lct_iter_%d.pth.tar" % n} <= set(record["files"])
        assert load_training_state(state_file(tmp_path, n))["metadata"] == record
        assert all(isinstance(v, torch.Tensor)                       # the weights stay plain state dicts
                   for v in torch.load(exp / f"decoder_iter_{n}.pth.tar", weights_only=True).values())
    elapsed = [record["elapsed_seconds"] for record in records]
    assert 0 < elapsed[0] < elapsed[1] < elapsed[2]                 # cumulative across the resume
    assert git_commit(tmp_path) == "unknown"


def test_the_record_names_tracked_files_changed_since_the_commit(tmp_path: Path) -> None:
    """A run started from an uncommitted tree says which files its commit does not account for."""
    git = lambda *args: subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "net.py").write_text("a = 1\n")
    (tmp_path / "sampler.py").write_text("b = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    assert git_modified(tmp_path) == []
    (tmp_path / "net.py").write_text("a = 2\n")
    (tmp_path / "notes.txt").write_text("untracked files are not code the run used\n")
    assert git_modified(tmp_path) == ["net.py"]
    assert git_modified(tmp_path / "notes.txt") is None and git_modified(tmp_path.parent) is None


def test_a_training_state_without_a_record_still_resumes(saved_state: dict, training_flags: list[str],
                                                         tmp_path: Path) -> None:
    older = {k: v for k, v in saved_state.items() if k not in ("metadata", "format")}
    save_training_state(older, tmp_path / "older.pth")
    assert run_training(training_flags, tmp_path, "--max_iter", "2", "--resume", str(tmp_path / "older.pth")) == 0
    assert json.loads((tmp_path / "exp" / "iter_2.json").read_text())["elapsed_seconds"] > 0


def test_lock_is_refused_while_held_by_another_process(tmp_path: Path) -> None:
    code = ("import sys, time; from glfa.runfolder import RunFolder; "
            "RunFolder(sys.argv[1]).lock().acquire(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"PID {holder.pid} on host {socket.gethostname()}"):
            RunFolder(tmp_path).lock().acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunFolder(tmp_path).lock()
    lock.acquire()                                                  # the holder is gone: taken over
    lock.release()
    assert not (tmp_path / "train.lock").exists()
