"""scripts/gpu_train.sh end to end on the CPU with tiny settings (a fresh run, then one continued
from the state it brought back), and scripts/state_parts.py, which lets that state travel."""
import os
import subprocess
from pathlib import Path

import pytest
import torch

from glfa.checkpoint import load_state_dict, load_training_state, save_training_state
from scripts import state_parts

REPO = Path(__file__).resolve().parents[1]


def gpu_train(training_folders: tuple[Path, Path], training_vgg: Path, tmp_path: Path, iters: int,
              **env: str) -> subprocess.CompletedProcess:
    settings = {"DEVICE": "cpu", "AMP": "off", "BATCH": "1", "IMAGE": "20", "CROP": "16", "ITERS": str(iters),
                "MINUTES": "0", "WARMUP": "1", "WORKERS": "0", "DATA": str(training_folders[0]),
                "RUN": str(tmp_path / "run"),
                "EXTRA": f"--vgg {training_vgg} --num_s 4"}
    return subprocess.run(["bash", str(REPO / "scripts" / "gpu_train.sh")], env={**os.environ, **settings, **env},
                          capture_output=True, text=True, timeout=300)


def test_gpu_train_writes_what_a_gpu_machine_can_return_and_continues(training_folders, training_vgg,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = gpu_train(training_folders, training_vgg, tmp_path, 2, OUT=str(out))
    assert done.returncode == 0, done.stderr
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "decoder_iter_2.pth.tar" in files and "lct_iter_2.pth.tar" in files and "iter_2.json" in files
    assert "ema/decoder_iter_2.pth.tar" in files and "train.log" in files
    assert any(name.startswith("training_state_iter_2.part1of") for name in files)
    assert len(files) <= 8 and all((out / name).stat().st_size <= 16 * 2**20 for name in files)
    assert "ms an iteration" in (out / "train.log").read_text()
    shipped = load_state_dict(REPO / "experiments" / "photo" / next(
        p.name for p in (REPO / "experiments" / "photo").glob("decoder_iter_*.pth.tar")))
    started = load_state_dict(out / "decoder_iter_2.pth.tar")
    assert started.keys() == shipped.keys()

    again = tmp_path / "again"
    done = gpu_train(training_folders, training_vgg, tmp_path, 4, OUT=str(again), RESUME=str(out),
                     RUN=str(tmp_path / "run2"))
    assert done.returncode == 0, done.stderr
    assert "resuming from" in (again / "train.log").read_text()
    assert (again / "decoder_iter_4.pth.tar").is_file()


def test_gpu_train_without_photos_is_one_error_line(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_train.sh")], capture_output=True, text=True,
                          env={**os.environ, "DATA": str(tmp_path / "none"), "OUT": str(tmp_path / "out")})
    assert done.returncode == 2 and done.stderr.strip().startswith("error: no training photos")


def test_issue27_item4_gpu_train_refuses_a_run_or_out_folder_holding_an_earlier_run(tmp_path: Path) -> None:
    """issue 27 item 4: a second run into the RUN folder of a first (4 iterations, then 2) handed
    back the first run's iteration-4 files; a RUN or OUT holding files is now refused before any
    work, in one line, and nothing is written."""
    data = tmp_path / "photos"
    data.mkdir()
    earlier = tmp_path / "earlier"
    (earlier / "ema").mkdir(parents=True)
    for name in ("decoder_iter_4.pth.tar", "lct_iter_4.pth.tar", "iter_4.json", "training_state_iter_4.pth",
                 "ema/decoder_iter_4.pth.tar", "ema/lct_iter_4.pth.tar"):
        (earlier / name).write_bytes(b"an earlier run's file")
    for run, out in ((earlier, tmp_path / "out"), (tmp_path / "run", earlier)):
        done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_train.sh")], capture_output=True, text=True,
                              env={**os.environ, "DATA": str(data), "RUN": str(run), "OUT": str(out), "ITERS": "2"})
        assert done.returncode == 2 and done.stderr.splitlines() == [
            f"error: {earlier} holds an earlier run's files: give each run an empty RUN and OUT"], done.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


def test_state_parts_split_and_join_back_exactly(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    state = {"iteration": 3, "draws": 12, "world_size": 1, "args": {"lr": 1e-4}, "scaler": {}, "heads": {},
             "decoder": {"w": torch.randn(300, 300, generator=generator)},
             "transform": {"w": torch.randn(200, 200, generator=generator)},
             "optimizer": {"state": {0: {"exp_avg": torch.randn(300, 300, generator=generator)}}, "param_groups": []}}
    save_training_state(state, tmp_path / "training_state_iter_3.pth")
    paths = state_parts.split(tmp_path / "training_state_iter_3.pth", tmp_path / "parts", max_bytes=600_000)
    assert len(paths) >= 2 and all(p.stat().st_size <= 600_000 + 4096 for p in paths)
    state_parts.join(tmp_path / "parts", tmp_path / "joined.pth")
    joined = load_training_state(tmp_path / "joined.pth")
    assert torch.equal(joined["decoder"]["w"], state["decoder"]["w"])
    assert torch.equal(joined["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    paths[0].unlink()
    with pytest.raises(state_parts.UserError, match="not the complete parts"):
        state_parts.join(tmp_path / "parts", tmp_path / "joined.pth")
    with pytest.raises(state_parts.UserError, match="alone takes"):
        state_parts.split(tmp_path / "training_state_iter_3.pth", tmp_path / "small", max_bytes=1000)


def test_issue27_item5_join_refuses_parts_of_two_states_with_one_name(tmp_path: Path) -> None:
    """issue 27 item 5: part 1 of run A's state and part 2 of run B's, both named
    training_state_iter_3, joined into A's optimiser with B's weights; every part now carries the
    hash of its whole state, so join refuses the mix (and a part twice, or one of an old split)."""
    generator = torch.Generator().manual_seed(0)
    parts = {}
    for run in ("a", "b"):
        state = {"iteration": 3, "draws": 12, "world_size": 1, "args": {"lr": 1e-4}, "scaler": {}, "heads": {},
                 "decoder": {"w": torch.randn(300, 300, generator=generator)},
                 "transform": {"w": torch.randn(200, 200, generator=generator)},
                 "optimizer": {"state": {0: {"exp_avg": torch.randn(300, 300, generator=generator)}},
                               "param_groups": []}}
        save_training_state(state, tmp_path / run / "training_state_iter_3.pth")
        parts[run] = state_parts.split(tmp_path / run / "training_state_iter_3.pth", tmp_path / run / "parts",
                                       max_bytes=600_000)
    assert len(parts["a"]) == len(parts["b"]) >= 2
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for index, path in enumerate(parts["a"]):
        source = parts["b" if index == 1 else "a"][index]
        (mixed / path.name).write_bytes(source.read_bytes())
    with pytest.raises(state_parts.UserError, match="come from 2 different states"):
        state_parts.join(mixed, tmp_path / "joined.pth")
    assert not (tmp_path / "joined.pth").exists()
    twice = tmp_path / "twice"
    twice.mkdir()
    (twice / parts["a"][0].name).write_bytes(parts["a"][0].read_bytes())
    (twice / parts["a"][1].name.replace("part2", "part1_copy")).write_bytes(parts["a"][0].read_bytes())
    for path in parts["a"][2:]:
        (twice / path.name).write_bytes(path.read_bytes())
    with pytest.raises(state_parts.UserError, match="not the complete parts of one state"):
        state_parts.join(twice, tmp_path / "joined.pth")
    old = torch.load(parts["a"][0], weights_only=True)
    torch.save({key: value for key, value in old.items() if key not in ("sha256", "keys", "index")}
               | {"part_format": "glfa-training-state-part-1"}, parts["a"][0])
    with pytest.raises(state_parts.UserError, match="older state_parts.py"):
        state_parts.join(parts["a"][0].parent, tmp_path / "joined.pth")
