"""scripts/learning_curve.py: training hours from TensorBoard events, and a curve from a real
(2-iteration) training run; damaged caches and event files (issue 20, case 12)."""
import csv
import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboardX import SummaryWriter

from glfa.cli import run_main
from helpers import write_model
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
                         "--output", str(tmp_path / "curve"), "--device", "cpu", "--start_cpu_hours", "2"])
    with open(tmp_path / "curve" / "curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert float(rows[0]["hours"]) == 0 and float(rows[1]["hours"]) > 0
    assert 2 < float(rows[0]["cpu_hours"]) < float(rows[1]["cpu_hours"]) < 2.1   # the warm start's hours added
    assert all(-1 <= float(r["ssim"]) <= 1 and float(r["gram_loss"]) > 0 for r in rows)
    assert all(float(r["ssim_stderr"]) >= 0 for r in rows)
    assert "| iteration | training hours | CPU hours | SSIM ↑ | Gram loss ↓ |" in capsys.readouterr().out
    assert (tmp_path / "curve" / "curve.png").stat().st_size > 1000


def test_earlier_results_are_read_back(tmp_path: Path):
    from glfa.eval import Pair, Row, write_metrics_csv
    pairs = [Pair("a_b", Path("a"), Path("b")), Pair("c_d", Path("c"), Path("d"))]
    rows = [Row("a_b", "iter_5", 0.5, 0.4, 1e-3, 0.1, 0.2, 0.0, 0.0, 1.0, 5.0), Row("c_d", "iter_5", 0.7, 0.6, 3e-3, 0.3, 0.4, 0.01, 0.0, 0.9, 3.0)]
    write_metrics_csv(rows, tmp_path / "metrics.csv")
    assert learning_curve.earlier_rows(tmp_path / "metrics.csv", pairs) == rows
    assert learning_curve.earlier_rows(tmp_path / "metrics.csv", pairs[:1]) is None      # other pairs
    assert learning_curve.earlier_rows(tmp_path / "missing.csv", pairs) is None


def damage_record(path: Path, index: int) -> None:
    """Overwrite the payload of the ``index``-th record of a TensorBoard event file with bytes
    that are no protobuf message (its framing left intact)."""
    data, offset = bytearray(path.read_bytes()), 0
    for _ in range(index):
        offset += 12 + struct.unpack_from("<Q", data, offset)[0] + 4
    length = struct.unpack_from("<Q", data, offset)[0]
    data[offset + 12:offset + 12 + length] = b"\xff" * length
    path.write_bytes(bytes(data))


def short_run(tmp_path: Path, training_vgg: Path) -> tuple[list[str], Path, Path]:
    """Two random checkpoints (iterations 1 and 2) with a TensorBoard log whose record of step 3
    is corrupt: the script's argv, the event file and the output folder."""
    run, output = tmp_path / "run", tmp_path / "curve"
    for iteration in (1, 2):
        write_model(run, iteration, seed=iteration)
    writer = SummaryWriter(str(run / "logs"))
    for step, wall in [(1, 1000.0), (2, 1012.0), (3, 1030.0), (4, 1040.0)]:
        writer.add_scalar("loss/total", 1.0 / step, step, walltime=wall)
    writer.close()
    events = next((run / "logs").glob("events.out.tfevents.*"))
    damage_record(events, 3)                       # records: the file version, then steps 1, 2, 3, 4
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{REPO / 'test/content/coast_dune.jpg'} {REPO / 'test/style/night_lake.jpg'}\n")
    argv = ["--run_dir", str(run), "--pairs", str(pairs), "--content_size", "32", "--vgg", str(training_vgg),
            "--output", str(output), "--device", "cpu"]
    return argv, events, output


def curve_messages(argv: list[str], capsys: pytest.CaptureFixture) -> list[str]:
    """Run the script's main as its command does; its note, warning and error lines (no traceback),
    after checking the curve it wrote: iterations 1 and 2, finite, with the hours logged before
    the corrupt record."""
    run_main(lambda: learning_curve.main(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-2000:]
    with open(Path(argv[argv.index("--output") + 1]) / "curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert float(rows[1]["hours"]) == pytest.approx(12 / 3600)
    assert all(math.isfinite(float(r["ssim"])) for r in rows)
    return [line for line in err.splitlines() if line.startswith(("note:", "warning:", "error:"))]


def test_issue20_12_damaged_caches_and_event_records_are_one_line_each(tmp_path: Path, training_vgg: Path,
                                                                       capsys: pytest.CaptureFixture):
    """Case 12: a damaged cached ``metrics.csv`` or a corrupt TensorBoard record gave a traceback.
    Through the script's main: the damaged cache is evaluated again with one note, the corrupt
    record stops reading that file with one warning, and the curve is written."""
    argv, events, output = short_run(tmp_path, training_vgg)
    for name, text in (("iter_1", "pair,model,ssim,edge_ssim\nx,iter_1,0.5,\n"), ("iter_2", "")):
        (output / name).mkdir(parents=True)
        (output / name / "metrics.csv").write_text(text)
    messages = curve_messages(argv, capsys)
    assert len(messages) == 2, messages
    assert messages[0].startswith(f"warning: {events} holds a damaged record at byte ") and "left out" in messages[0]
    assert messages[1].startswith(f"note: {output / 'iter_1' / 'metrics.csv'} is damaged")
    assert messages[1].endswith("evaluating that checkpoint again")


def test_issue20_12_cached_non_finite_metrics_are_evaluated_again(tmp_path: Path, training_vgg: Path,
                                                                  capsys: pytest.CaptureFixture):
    """Case 12: a cached ``metrics.csv`` holding NaN (evaluate writes a broken model's numbers
    before it refuses them) was read back into the curve; it is evaluated again, with a note."""
    argv, _, output = short_run(tmp_path, training_vgg)
    assert len(curve_messages(argv, capsys)) == 1                    # the corrupt record's warning
    cache = output / "iter_2" / "metrics.csv"
    header, first = cache.read_text().splitlines()
    fields = first.split(",")
    cache.write_text("\n".join([header, ",".join([*fields[:2], "nan", *fields[3:]])]) + "\n")
    messages = curve_messages(argv, capsys)
    assert messages[1:] == [f"note: {cache} is damaged or holds non-finite metrics; evaluating that checkpoint again"]


def test_issue27_item14_training_hours_come_from_the_runs_own_log_folder_or_say_why_not(
        tmp_path: Path, training_vgg: Path, capsys: pytest.CaptureFixture):
    """issue 27 item 14: a run that logged to the default logs/ (not RUN_DIR/logs) gave NaN
    training hours with no note, and so did a --log_dir that does not exist. The folder the run's
    record names is read; without events there is one note and a dash; a missing --log_dir is an
    error."""
    argv, events, output = short_run(tmp_path, training_vgg)
    run = Path(argv[argv.index("--run_dir") + 1])
    elsewhere = tmp_path / "default_logs"
    (run / "logs").rename(elsewhere)
    (run / "iter_2.json").write_text(json.dumps({"iteration": 2, "args": {"log_dir": str(elsewhere)}}))
    messages = curve_messages(argv, capsys)                       # the hours of the run's own folder
    assert len(messages) == 1 and messages[0].startswith("warning:") and str(elsewhere) in messages[0]
    (run / "iter_2.json").unlink()
    run_main(lambda: learning_curve.main(argv))
    out, err = capsys.readouterr()
    assert [line for line in err.splitlines() if line.startswith("note:")] == [
        f"note: no TensorBoard events in {run / 'logs'}: the training hours are left blank (give the run's --log_dir)"]
    assert "| 2 | – |" in out
    with pytest.raises(SystemExit) as exited:
        run_main(lambda: learning_curve.main([*argv, "--log_dir", str(tmp_path / "missing")]))
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: --log_dir {tmp_path / 'missing'} is not a folder"
