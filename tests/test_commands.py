"""What every command shares: complete, alike --help; one spelling of the mode, transform and list
flags (with the others as aliases); defaults resolved from the repository root, so the commands
run from any folder; the one-line error when the shipped model is missing; and the layering
(stylising never imports the training loop)."""
import argparse
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from glfa.cli import transform_choice
from glfa.errors import UserError
from glfa.inference import Stylizer
from helpers import REPO_ROOT, copy_repository, run_script, write_model

COMMANDS = ("train.py", "test.py", "eval.py", "video.py", "scripts/benchmark.py", "scripts/ablation.py",
            "scripts/regions.py", "models/download.py")
PHOTOS = REPO_ROOT / "test"


def command(path: str) -> dict:
    """A command's module namespace, loaded without running its ``main``."""
    return runpy.run_path(str(REPO_ROOT / path), run_name="command_under_test")


@pytest.mark.parametrize("path", COMMANDS)
def test_help_is_complete_and_alike(path: str):
    parser = command(path)["build_parser"]()
    assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
    undocumented = [a.option_strings for a in parser._actions if not (a.help or "").strip()]
    assert undocumented == []
    text = parser.format_help()
    assert "(default:" in text and "(default: None)" not in text
    assert "tar7.png" not in text


@pytest.mark.parametrize("path, reference, needed", [
    ("train.py", "training_mode", ["--content_dir", "c", "--style_dir", "s"]),
    ("test.py", "testing_mode", ["--content", "c.jpg", "--style", "s.jpg"]),
    ("eval.py", "testing_mode", ["--pairs", "p.txt"]),
    ("video.py", "testing_mode", ["--frames_dir", "f", "--style", "s.jpg"]),
    ("scripts/benchmark.py", "mode", []),
    ("scripts/ablation.py", "training_mode", ["--content_dir", "c", "--style_dir", "s", "--pairs", "p.txt"]),
])
def test_every_mode_spelling_works_everywhere(path: str, reference: str, needed: list[str]):
    parse_args = command(path)["parse_args"]
    assert getattr(parse_args(needed), reference) == "photo"
    for flag in ("--testing_mode", "--training_mode", "--mode"):
        args = parse_args([*needed, flag, "artistic"])
        assert getattr(args, reference) == "art"
        if getattr(args, "vgg", None):           # resolved when parsing: it follows the mode
            assert Path(args.vgg).name == "vgg_normalised.pth"


def test_default_encoder_follows_the_mode_and_an_explicit_one_wins():
    parse_args = command("train.py")["parse_args"]
    needed = ["--content_dir", "c", "--style_dir", "s"]
    assert parse_args(needed).vgg == str(REPO_ROOT / "models" / "vgg_normalised_conv3_1.pth")
    assert parse_args([*needed, "--training_mode", "art"]).vgg == str(REPO_ROOT / "models" / "vgg_normalised.pth")
    assert parse_args([*needed, "--vgg", "mine.pth", "--training_mode", "art"]).vgg == "mine.pth"
    assert parse_args(needed).save_dir == str(REPO_ROOT / "experiments")


@pytest.mark.parametrize("path, needed", [
    ("test.py", ["--content", "c.jpg", "--style", "s.jpg"]),
    ("video.py", ["--frames_dir", "f", "--style", "s.jpg"]),
])
def test_transform_flags_mean_the_same_in_test_and_video(path: str, needed: list[str]):
    parse_args = command(path)["parse_args"]
    for flags, expected in ((["--LCT", "t.pth"], ("t.pth", "lct")), (["--SCT", "t.pth"], ("t.pth", "sct")),
                            (["--LCT", "t.pth", "--transform", "sct"], ("t.pth", "sct")), ([], (None, "lct"))):
        assert transform_choice(parse_args([*needed, *flags])) == expected      # as stylizer_from_flags reads them
    with pytest.raises(SystemExit):
        parse_args([*needed, "--LCT", "a.pth", "--SCT", "b.pth"])


def test_list_flags_take_commas_and_old_spellings_stay():
    ablation = command("scripts/ablation.py")["parse_args"]
    needed = ["--content_dir", "c", "--style_dir", "s", "--pairs", "p.txt"]
    names = lambda args: [v.name for v in args.variants]  # noqa: E731
    assert names(ablation(needed)) == ["lct_wce", "lct_ccpl", "sct_wce", "sct_ccpl"]
    assert names(ablation([*needed, "--variants", "sct_ccpl,lct_wce"])) == ["sct_ccpl", "lct_wce"]
    assert names(ablation([*needed, "--variants", "sct_ccpl", "lct_wce,sct_wce"])) == ["sct_ccpl", "lct_wce", "sct_wce"]
    benchmark = command("scripts/benchmark.py")["parse_args"]
    assert benchmark(["--crop", "64"]).crop_size == benchmark(["--crop_size", "64"]).crop_size == 64
    assert benchmark(["--sizes", "48,96", "--skip", "train,loader"]).sizes == [48, 96]


def test_stylising_does_not_import_the_training_loop():
    code = ("import sys, glfa, test, eval, video, glfa.video, glfa.eval, glfa.stylize; "
            "print(sorted(m for m in sys.modules if m in ('glfa.train', 'tensorboardX')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_test_py_runs_from_another_folder_with_the_encoder_from_the_repository(tmp_path: Path):
    decoder, transform = write_model(tmp_path / "model", 1)
    done = subprocess.run([sys.executable, str(REPO_ROOT / "test.py"), "--content", str(PHOTOS / "content/coast_dune.jpg"),
                           "--style", str(PHOTOS / "style/night_lake.jpg"), "--decoder", str(decoder), "--LCT",
                           str(transform), "--content_size", "32", "--style_size", "32", "--device", "cpu",
                           "--output", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "coast_dune_stylized_night_lake.jpg").is_file()


def test_commands_use_the_shipped_model_and_say_so_when_it_is_missing(tmp_path: Path):
    clone = copy_repository(tmp_path / "clone")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pairs = elsewhere / "pairs.txt"
    pairs.write_text(f"{clone / 'test/content/coast_dune.jpg'} {clone / 'test/style/sunset_boats.jpg'}\n")
    stylise = [sys.executable, str(clone / "test.py"), "--content_dir", str(clone / "test/content"), "--style",
               str(clone / "test/style/sunset_boats.jpg"), "--content_size", "32", "--style_size", "32", "--device", "cpu",
               "--output", "stylised"]
    evaluate = [sys.executable, str(clone / "eval.py"), "--pairs", str(pairs), "--content_size", "32",
                "--figure_height", "32", "--device", "cpu", "--output", "evaluated"]
    for argv in (stylise, evaluate):
        done = subprocess.run(argv, cwd=elsewhere, capture_output=True, text=True, timeout=300)
        error = one_error_line(done)
        assert "the shipped model is missing" in error and "--decoder and --LCT" in error and "train.py" in error
        assert str(clone / "experiments" / "photo") in error

    write_model(clone / "experiments" / "photo", 4)
    for argv in (stylise, evaluate):
        done = subprocess.run(argv, cwd=elsewhere, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((elsewhere / "stylised").glob("*_stylized_sunset_boats.jpg"))) == 3
    assert "| shipped |" in (elsewhere / "evaluated" / "metrics.md").read_text()


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "cuda:99"])
@pytest.mark.parametrize("script", ["test.py", "train.py", "app.py"])
def test_issue27_item15_devices_other_than_cpu_and_cuda_are_one_error_line(script: str, device: str,
                                                                          tmp_path: Path, capsys):
    """issue 27 item 15: --device mps, xpu or meta gave a traceback in test.py, train.py and
    app.py (and a GPU number this machine lacks would have too); one line now, before any work."""
    if script == "app.py":
        pytest.importorskip("gradio", reason="the web demo needs Gradio")
    photo = PHOTOS / "content" / "coast_dune.jpg"
    flags = {"test.py": ["--content", photo, "--style", photo, "--output", tmp_path / "out"],
             "train.py": ["--content_dir", PHOTOS / "content", "--style_dir", PHOTOS / "style", "--save_dir",
                          tmp_path / "run", "--log_dir", tmp_path / "logs", "--max_iter", "1"],
             "app.py": ["--port", "0"]}[script]
    code, _, err = run_script(script, [*flags, "--device", device], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: --device {device}"), err
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


def test_issue27_item15_the_api_refuses_other_devices_in_one_line():
    """issue 27 item 15: Stylizer.from_checkpoints(device='mps') raised a traceback of torch's."""
    with pytest.raises(UserError, match="this code runs on the CPU or a CUDA GPU"):
        Stylizer.from_checkpoints(device="mps")
