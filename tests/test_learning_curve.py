"""scripts/learning_curve.py: training hours from TensorBoard events, and a curve from a real
(2-iteration) training run."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboardX import SummaryWriter

from scripts import learning_curve

REPO = Path(__file__).resolve().parents[1]


def test_training_hours_sum_the_gaps_and_skip_pauses(tmp_path: Path):
    writer = SummaryWriter(str(tmp_path / "logs"))
    for step, wall in [(1, 1000.0), (2, 1010.0), (3, 1030.0), (4, 5000.0), (5, 5006.0)]:
        writer.add_scalar("loss/total", 1.0 / step, step, walltime=wall)
        writer.add_scalar("lr", 1e-4, step, walltime=wall)
    writer.close()
    hours = learning_curve.training_hours(tmp_path / "logs", max_gap=300)
    assert hours == pytest.approx({1: 0.0, 2: 10 / 3600, 3: 30 / 3600, 4: 30 / 3600, 5: 36 / 3600})


def test_curve_of_a_short_run(tmp_path: Path, training_flags: list[str], training_vgg: Path,
                              capsys: pytest.CaptureFixture):
    run = tmp_path / "run"
    subprocess.run([sys.executable, str(REPO / "train.py"), *training_flags, "--max_iter", "2",
                    "--save_model_interval", "1", "--save_dir", str(run), "--log_dir", str(run / "logs")],
                   check=True, capture_output=True)
    learning_curve.main(["--run_dir", str(run), "--content_dir", str(REPO / "test/content"), "--style_dir",
                         str(REPO / "test/style"), "--every_pair", "--content_size", "32", "--vgg", str(training_vgg),
                         "--output", str(tmp_path / "curve"), "--device", "cpu"])
    with open(tmp_path / "curve" / "curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert float(rows[0]["hours"]) == 0 and float(rows[1]["hours"]) > 0
    assert all(-1 <= float(r["ssim"]) <= 1 and float(r["gram_loss"]) > 0 for r in rows)
    assert "| iteration | training hours | SSIM ↑ | Gram loss ↓ |" in capsys.readouterr().out
    assert (tmp_path / "curve" / "curve.png").stat().st_size > 1000


def test_earlier_results_are_read_back(tmp_path: Path):
    from glfa.eval import Pair, Row, write_metrics_csv
    pairs = [Pair("a_b", Path("a"), Path("b")), Pair("c_d", Path("c"), Path("d"))]
    rows = [Row("a_b", "iter_5", 0.5, 0.4, 1e-3, 0.1, 0.2), Row("c_d", "iter_5", 0.7, 0.6, 3e-3, 0.3, 0.4)]
    write_metrics_csv(rows, tmp_path / "metrics.csv")
    assert learning_curve.earlier_rows(tmp_path / "metrics.csv", pairs) == rows
    assert learning_curve.earlier_rows(tmp_path / "metrics.csv", pairs[:1]) is None      # other pairs
    assert learning_curve.earlier_rows(tmp_path / "missing.csv", pairs) is None
