"""scripts/ablation.py: four variants trained alike, evaluated together, one four-row table;
reusing checkpoints only when their record says they were trained alike (issue 20, case 13)."""
import csv
import json
import math
import os
from pathlib import Path

import pytest
from PIL import Image

from glfa.cli import run_main
from scripts import ablation

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def flags(training_folders: tuple[Path, Path], training_vgg: Path, tmp_path: Path) -> list[str]:
    """A 2-iteration ablation on the tiny training folders, evaluated on one 24×24 pair."""
    content, style = training_folders
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{next(content.glob('*.png'))} {next(style.glob('*.png'))}\n")
    return ["--content_dir", str(content), "--style_dir", str(style), "--vgg", str(training_vgg),
            "--max_iter", "2", "--batch_size", "1", "--image_size", "20", "--crop_size", "16",
            "--train_args", "--num_s 4", "--n_threads", "0", "--seed", "3", "--pairs", str(pairs),
            "--content_size", "24", "--device", "cpu", "--output", str(tmp_path / "ablation")]


def test_variants_differ_only_in_transform_and_loss(flags: list[str]):
    args = ablation.parse_args(flags)
    commands = {v.name: ablation.train_argv(args, v, Path("out") / v.name) for v in args.variants}
    assert list(commands) == ["lct_wce", "lct_ccpl", "sct_wce", "sct_ccpl"]
    shared = [{f for f in c if not f.startswith(("--transform=", "--contrastive=", "--save_dir=", "--log_dir="))}
              for c in commands.values()]
    assert all(s == shared[0] for s in shared)
    assert {"--max_iter=2", "--seed=3", "--num_s", "4"} <= shared[0]
    assert "--transform=sct" in commands["sct_ccpl"] and "--contrastive=ccpl" in commands["sct_ccpl"]


def test_tiny_ablation_writes_a_four_row_table_and_reuses_its_checkpoints(flags: list[str], tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture):
    ablation.main(flags)
    output = tmp_path / "ablation"
    printed = capsys.readouterr().out
    assert "| variant | transform | contrastive | SSIM ↑" in printed
    with open(output / "ablation.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["variant"], r["transform"], r["contrastive"]) for r in rows] == [
        ("lct_wce", "LCT", "WCE"), ("lct_ccpl", "LCT", "CCPL"), ("sct_wce", "SCT", "WCE"), ("sct_ccpl", "SCT", "CCPL")]
    assert all(float(r["gram_loss"]) > 0 and -1 <= float(r["ssim"]) <= 1 for r in rows)
    table = (output / "ablation.md").read_text().strip().splitlines()
    assert len(table) == 2 + 4
    for name, kind in (("lct_wce", "lct"), ("sct_ccpl", "sct")):
        assert (output / name / f"{kind}_iter_2.pth.tar").is_file()
        assert (output / "eval" / "results" / name).is_dir()
    assert (output / "eval" / "contact_sheet.png").is_file()
    assert all(" ± nan" in line for line in table[2:])              # one pair: no standard error
    assert all(math.isnan(float(r["ssim_stderr"])) for r in rows)
    for figure in ("wce_vs_ccpl.jpg", "lct_vs_sct.jpg"):          # the paper's two comparisons
        with Image.open(output / figure) as image:
            assert image.width > 4 * 100 and image.height > 192

    ablation.main(flags)                                    # checkpoints there: evaluation only
    assert capsys.readouterr().out.count(": reusing decoder_iter_2.pth.tar") == 4


def test_failed_training_is_one_error_line(flags: list[str], capsys: pytest.CaptureFixture):
    missing = str(Path(flags[flags.index("--output") + 1]) / "missing_state.pth")
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: ablation.main(flags + ["--variants", "sct_wce", "--train_args", f"--resume {missing}"]))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: training sct_wce failed (exit 2)")
    assert "checkpoint not found" in error[0] and "train.log" in error[0]
    with pytest.raises(SystemExit) as exit_info:                 # refused before any training starts
        run_main(lambda: ablation.main(flags + ["--variants", "sct_wce", "--train_args", "--num_l 9"]))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: sct_wce: --num_l 9 exceeds")


def test_checkpoints_are_reused_only_when_trained_with_the_same_arguments(flags: list[str], tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture):
    one = flags + ["--variants", "lct_wce"]
    ablation.main(one)
    ablation.main(one)
    assert "lct_wce: reusing decoder_iter_2.pth.tar" in capsys.readouterr().out
    for changed, difference in ((["--seed", "4"], "--seed 3 (now 4)"),
                                (["--batch_size", "2"], "--batch_size 1 (now 2)"),
                                (["--train_args", "--num_s 2"], "--num_s 4 (now 2)")):
        with pytest.raises(SystemExit) as exit_info:
            run_main(lambda: ablation.main(one + changed))
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and difference in error[0] and "--retrain" in error[0], error
    (tmp_path / "ablation" / "lct_wce" / "iter_2.json").unlink()     # trained by an older train.py: unknown
    with pytest.raises(SystemExit):
        run_main(lambda: ablation.main(one))
    assert "--retrain" in capsys.readouterr().err
    ablation.main(one + ["--seed", "4", "--retrain"])
    assert "lct_wce: trained 2 iterations" in capsys.readouterr().out


def test_issue20_13_unbalanced_quotes_in_train_args_are_a_parser_error(flags: list[str],
                                                                       capsys: pytest.CaptureFixture):
    """Case 13: ``--train_args='--lr "2e-4'`` gave shlex's traceback; now the parser's error line."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: ablation.main(flags + ["--train_args", '--lr "2e-4']))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "--train_args '--lr \"2e-4' cannot be split into flags: No closing quotation" in errors[0]


@pytest.mark.parametrize("train_args, named", [("--max_iter 5", "--max_iter"), ("--lr 2e-4 --max_it=5", "--max_it"),
                                               ("--mode art", "--mode"), ("--save_dir elsewhere", "--save_dir")])
def test_issue27_also_train_args_may_not_override_the_ablations_own_settings(flags: list[str], train_args: str,
                                                                            named: str, capsys: pytest.CaptureFixture):
    """issue 27, also seen: --train_args "--max_iter 5" trained to 5 while the ablation evaluated
    its own --max_iter; a setting the ablation gives every variant is refused in --train_args."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: ablation.main(flags + ["--train_args", train_args]))
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert exit_info.value.code == 2 and len(errors) == 1
    assert f"--train_args sets {named}, which the ablation sets for every variant" in errors[0]


@pytest.mark.parametrize("record", [{"args": []}, {"args": None}, {"args": "--seed 3"}, [], "not json"])
def test_issue20_13_a_record_without_an_args_object_is_one_error_line(record, flags: list[str], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture):
    """Case 13: an ``iter_N.json`` whose ``args`` is ``[]`` or ``null`` gave an AttributeError
    traceback; like a missing record, it cannot say how the checkpoints were trained."""
    folder = tmp_path / "ablation" / "lct_wce"
    folder.mkdir(parents=True)
    for name in ("decoder_iter_2.pth.tar", "lct_iter_2.pth.tar"):
        (folder / name).write_bytes(b"")
    (folder / "iter_2.json").write_text(record if isinstance(record, str) else json.dumps(record))
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: ablation.main(flags + ["--variants", "lct_wce"]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"error: lct_wce: {folder} holds checkpoints of iteration 2, but no readable iter_2.json says how they "
        "were trained; use --retrain to train again, or another --output"]


def test_issue20_13_the_same_folders_given_relative_or_absolute_are_reused(flags: list[str], tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture):
    """Case 13: the same folders given relative and then absolute were refused for reuse."""
    monkeypatch.chdir(tmp_path)
    paths = {"--content_dir", "--style_dir", "--vgg", "--pairs", "--output"}
    relative = [os.path.relpath(value, tmp_path) if name in paths else value
                for name, value in zip([None, *flags], flags)]
    assert relative != flags and not Path(relative[relative.index("--vgg") + 1]).is_absolute()
    ablation.main(relative + ["--variants", "lct_wce"])
    assert "lct_wce: trained 2 iterations" in capsys.readouterr().out
    ablation.main(flags + ["--variants", "lct_wce"])                 # the same folders, absolute
    assert "lct_wce: reusing decoder_iter_2.pth.tar and lct_iter_2.pth.tar" in capsys.readouterr().out
