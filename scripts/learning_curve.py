r"""The learning curve of a training run: evaluate every saved checkpoint (or every --every-th
iteration) on content/style pairs and tabulate SSIM and Gram loss against iterations and training
hours; a CSV, a Markdown table and a plot.

Checkpoints already evaluated on the same pairs in --output are read back, not evaluated again.
Training hours come from the run's TensorBoard events (the wall-clock time between logged
iterations, pauses of more than --max_gap seconds, e.g. between a stop and its resume, left out).

Example: python scripts/learning_curve.py --run_dir experiments/photo_run \
             --pairs_dir ../shared/data/photo_pairs --content_size 0 --output experiments/photo/curve
"""
import argparse
import csv
import math
import struct
import sys
from pathlib import Path

from google.protobuf.message import DecodeError
from PIL import Image
from tensorboardX.proto.event_pb2 import Event

from glfa.cli import add_device_flag, add_vgg_flag, command_parser, run_main
from glfa.device import resolve_device
from glfa.errors import UserError
from glfa.eval import (EVALUATION, METRICS, Figures, Lineup, ModelFiles, Pair, Row, average_rows, evaluate, find_pairs,
                       standard_error_rows)
from glfa.figures import line_chart
from glfa.flagtypes import non_negative_float, non_negative_int, positive_float, positive_int
from glfa.options import RunOptions
from glfa.runfolder import RunFolder
from glfa.tables import markdown_table, write_csv


def read_events(path: Path) -> list[tuple[int, float]]:
    """``(step, wall_time)`` of every scalar event in a TensorBoard event file (TFRecord framing:
    length, its CRC, the record, its CRC; the CRCs are not checked)."""
    steps: list[tuple[int, float]] = []
    data = path.read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        record = data[offset + 12: offset + 12 + length]
        offset += 12 + length + 4
        if len(record) < length:
            break                               # a file still being written ends mid-record
        try:
            event = Event.FromString(record)
        except DecodeError:
            print(f"warning: {path} holds a damaged record at byte {offset - 16 - length}; the events after "
                  "it are left out of the training hours", file=sys.stderr)
            break
        if event.HasField("summary"):
            steps.append((event.step, event.wall_time))
    return steps


def training_hours(log_dir: Path, max_gap: float) -> dict[int, float]:
    """Hours of training up to each logged iteration: the sum of the gaps between consecutive
    iterations, leaving out gaps longer than ``max_gap`` seconds (the run was stopped)."""
    first_time: dict[int, float] = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        for step, wall in read_events(path):
            first_time[step] = min(wall, first_time.get(step, wall))
    hours, total, previous = {}, 0.0, None
    for step in sorted(first_time):
        if previous is not None:
            gap = first_time[step] - previous
            total += gap if 0 <= gap <= max_gap else 0.0
        previous = first_time[step]
        hours[step] = total / 3600
    return hours


def log_folder(given: str | None, records: RunFolder, iteration: int) -> Path:
    """The run's TensorBoard folder: ``--log_dir``, else the ``--log_dir`` its record of
    ``iteration`` names (``train.py`` logs to ``logs/`` by default), else ``RUN_DIR/logs``. A
    given folder that does not exist is a ``UserError``."""
    if given:
        if not Path(given).is_dir():
            raise UserError(f"--log_dir {given} is not a folder")
        return Path(given)
    recorded = ((records.read_record(iteration) or {}).get("args") or {}).get("log_dir")
    return Path(recorded) if isinstance(recorded, str) and recorded else records.path / "logs"


def hours_note(log_dir: Path, hours: dict[int, float], iterations: list[int]) -> str | None:
    """The note for evaluated iterations the events give no training time for, None if all have one."""
    missing = [iteration for iteration in iterations if iteration not in hours]
    if not hours:
        return (f"note: no TensorBoard events in {log_dir}: the training hours are left blank "
                "(give the run's --log_dir)")
    if missing:
        return (f"note: {len(missing)} of the {len(iterations)} iterations (first {missing[0]}) are not in the "
                f"events in {log_dir}: their training hours are left blank")
    return None


def earlier_rows(path: Path, pairs: list[Pair]) -> list[Row] | None:
    """The rows an earlier run of this script wrote for a checkpoint, if it covered exactly
    ``pairs``: a curve grows as training goes on without evaluating old checkpoints again."""
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = [Row(r["pair"], r["model"], *(float(r[m]) for m in METRICS)) for r in csv.DictReader(handle)]
    except (ValueError, KeyError, TypeError, csv.Error):
        rows = None
    if rows is None or not all(math.isfinite(getattr(r, m)) for r in rows for m in METRICS):
        # unreadable, or the NaN of a broken model (evaluate writes each pair's numbers before it checks them)
        print(f"note: {path} is damaged or holds non-finite metrics; evaluating that checkpoint again",
              file=sys.stderr)
        return None
    return rows if sorted(r.pair for r in rows) == sorted(p.name for p in pairs) else None


def blank_or(hours: float) -> str:
    """Hours for the Markdown table: two decimals, or a dash where they are not known."""
    return f"{hours:.2f}" if math.isfinite(hours) else "–"


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    parser.add_argument("--run_dir", required=True, help="the training run's --save_dir (decoder_iter_N, lct_iter_N)")
    parser.add_argument("--log_dir", help="its TensorBoard --log_dir (default: the one its iter_N.json names, "
                                          "else RUN_DIR/logs)")
    parser.add_argument("--pairs_dir", help="folder with content/ and style/ images paired by number")
    parser.add_argument("--content_dir", help="content images (with --style_dir)")
    parser.add_argument("--style_dir", help="style images (with --content_dir)")
    parser.add_argument("--every_pair", action="store_true", help="pair every content with every style image")
    parser.add_argument("--every", type=positive_int, default=1,
                        help="evaluate only iterations that are multiples of this (and the last one)")
    parser.add_argument("--pairs", help="text file, one 'content style' pair of image paths a line")
    parser.add_argument("--content_size", type=non_negative_int, default=0,
                        help="shorter side of the content images (0 keeps the original size)")
    parser.add_argument("--long_side", type=non_negative_int, default=0,
                        help="resize every image to this longer side instead (e.g. 512)")
    parser.add_argument("--max_gap", type=positive_float, default=300.0,
                        help="longer pauses between logged iterations (seconds) do not count as training time")
    parser.add_argument("--start_cpu_hours", type=non_negative_float, default=0.0,
                        help="CPU hours spent before the run began (e.g. its warm start's), added to its own")
    parser.add_argument("--output", required=True, help="folder for curve.csv, curve.md, curve.png and the results")
    add_vgg_flag(parser)
    add_device_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_dir, output = Path(args.run_dir), Path(args.output)
    saved = RunFolder(run_dir).models()
    if not saved:
        raise UserError(f"no decoder_iter_N.pth.tar with a matching lct_/sct_iter_N.pth.tar in {run_dir}")
    chosen = [m for m in saved if m.iteration % args.every == 0 or m is saved[-1]]
    records = RunFolder(run_dir.parent if run_dir.name == "ema" else run_dir)
    log_dir = log_folder(args.log_dir, records, saved[-1].iteration)
    hours = training_hours(log_dir, args.max_gap) if log_dir.is_dir() else {}
    pairs = find_pairs(args.pairs_dir, args.content_dir, args.style_dir, args.pairs, every_pair=args.every_pair)
    device = resolve_device(args.device)
    if (note := hours_note(log_dir, hours, [m.iteration for m in chosen])) is not None:
        print(note, file=sys.stderr)

    sizes = EVALUATION.replace(content_size=args.content_size, style_size=args.content_size, long_side=args.long_side)
    table = []
    for saved_model in chosen:
        iteration = saved_model.iteration
        model = ModelFiles(f"iter_{iteration}", saved_model.decoder, saved_model.transform, saved_model.kind)
        rows = earlier_rows(output / model.name / "metrics.csv", pairs) or evaluate(
            pairs, Lineup([model], args.vgg), output / model.name, sizes, RunOptions(device), Figures(zoom=None))
        average, error = average_rows(rows)[0], standard_error_rows(rows)[0]
        cpu = (records.read_record(iteration) or {}).get("cpu_seconds")
        cpu_hours = args.start_cpu_hours + cpu / 3600 if isinstance(cpu, (int, float)) else float("nan")
        table.append((iteration, hours.get(iteration, float("nan")), cpu_hours, average.ssim, error.ssim,
                      average.gram_loss, error.gram_loss))
        print(f"iteration {iteration}: SSIM {average.ssim:.4f}, Gram loss {average.gram_loss:.4g}", flush=True)

    header = ["iteration", "training hours", "CPU hours", "SSIM ↑", "Gram loss ↓"]
    write_csv(output / "curve.csv", ["iteration", "hours", "cpu_hours", "ssim", "ssim_stderr", "gram_loss",
                                     "gram_loss_stderr"], table)
    text = markdown_table(header, [(n, blank_or(h), blank_or(c), f"{q:.4f} ± {qe:.4f}", f"{g:.4g} ± {ge:.2g}")
                                   for n, h, c, q, qe, g, ge in table])
    (output / "curve.md").write_text(text + "\n")
    iterations, _, _, ssim, _, gram, _ = (list(column) for column in zip(*table))
    panels = [line_chart({"SSIM": ssim}, "SSIM (luminance, vs content)", "iteration", "SSIM", x=iterations),
              line_chart({"Gram loss": gram}, "Gram loss (vs style)", "iteration", "Gram", x=iterations)]
    canvas = Image.new("RGB", (sum(p.width for p in panels), panels[0].height), "white")
    for index, panel in enumerate(panels):
        canvas.paste(panel, (index * panels[0].width, 0))
    canvas.save(output / "curve.png")
    print(text)
    print(f"wrote {output / 'curve.csv'}, curve.md and curve.png")


if __name__ == "__main__":
    run_main(main)
