r"""The paper's ablations: train LCT/SCT × WCE/CCPL with the same data, seed and iteration
budget (one ``train.py`` run each), evaluate all four on the same pairs, write one table.

A variant whose final checkpoints are already there, trained with the same arguments (read from
the ``iter_N.json`` record train.py writes beside them), is not trained again, so an interrupted
ablation picks up where it stopped; checkpoints trained otherwise stop the run (use --retrain).

Tiny CPU run (a smoke test on the bundled photos):
    python scripts/ablation.py --content_dir=test/content --style_dir=test/style --pairs_dir=test \
        --every_pair --max_iter=3 --batch_size=1 --image_size=64 --crop_size=32 --n_threads=0 \
        --content_size=64 --device=cpu --output=output/ablation_tiny
"""
import argparse
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from glfa.cli import (add_device_flag, add_mode_flag, add_vgg_flag, command_parser, run_main, training_config,
                      training_parser)
from glfa.config import TrainConfig, differences
from glfa.device import resolve_device
from glfa.errors import UserError
from glfa.eval import (EVALUATION, METRICS, Lineup, ModelFiles, Pair, Row, average_rows, evaluate, find_pairs,
                       metrics_table, standard_error_rows, write_tables)
from glfa.figures import contact_sheet
from glfa.flagtypes import non_negative_int, positive_int
from glfa.images import read_image
from glfa.options import RunOptions
from glfa.paths import REPO_ROOT, default_vgg
from glfa.runfolder import RunFolder
from glfa.tables import write_csv

VARIANTS = ("lct_wce", "lct_ccpl", "sct_wce", "sct_ccpl")
# The train.py settings the ablation gives every variant itself (train_argv); --train_args may not repeat them.
OWN_SETTINGS = ("content_dir", "style_dir", "vgg", "training_mode", "transform", "contrastive", "save_dir", "log_dir",
                "max_iter", "save_model_interval", "batch_size", "image_size", "crop_size", "n_threads", "seed",
                "device")


@dataclass(frozen=True)
class Variant:
    """One cell of the ablation: a transform and a contrastive loss."""

    transform: str
    contrastive: str

    @property
    def name(self) -> str:
        return f"{self.transform}_{self.contrastive}"


def variant_list(text: str) -> list[Variant]:
    """argparse type: comma-separated variant names."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown variant {text!r}: choose from {', '.join(VARIANTS)}")
    return [Variant(*name.split("_")) for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    train = parser.add_argument_group("training (the same for every variant)")
    train.add_argument("--content_dir", required=True, help="training content images")
    train.add_argument("--style_dir", required=True, help="training style images")
    add_vgg_flag(train)
    add_mode_flag(train, "--training_mode")
    train.add_argument("--max_iter", type=positive_int, default=160000, help="iteration budget of every variant")
    train.add_argument("--batch_size", type=positive_int, default=8, help="images per GPU (per process)")
    train.add_argument("--image_size", type=positive_int, default=512, help="images are resized to this square")
    train.add_argument("--crop_size", type=positive_int, default=256, help="random crop taken after resizing")
    train.add_argument("--save_model_interval", type=positive_int,
                       help="iterations between saves (default: --max_iter)")
    train.add_argument("--n_threads", type=non_negative_int, default=8, help="data loader workers")
    train.add_argument("--seed", type=int, default=0, help="the seed of every variant's training run")
    train.add_argument("--train_args", default="", help="more train.py flags for every variant, e.g. '--lr 2e-4'")
    train.add_argument("--variants", type=variant_list, nargs="+", metavar="VARIANT[,VARIANT]",
                       help=f"which variants to run, comma- or space-separated (default: all of {', '.join(VARIANTS)})")
    train.add_argument("--retrain", action="store_true", help="train again even where checkpoints exist")
    evaluation = parser.add_argument_group("evaluation (eval.py's pairs, one of)")
    evaluation.add_argument("--pairs_dir", help="folder with content/ and style/ images paired by number")
    evaluation.add_argument("--pairs", help="text file, one 'content style' pair a line")
    evaluation.add_argument("--every_pair", "--all_pairs", action="store_true",
                            help="with --pairs_dir: every content image with every style image, not by number")
    evaluation.add_argument("--content_size", type=non_negative_int, default=512,
                            help="shorter side of the content images (0 keeps the original size)")
    evaluation.add_argument("--style_size", type=non_negative_int,
                            help="shorter side of the style images (default: --content_size)")
    evaluation.add_argument("--long_side", type=non_negative_int, default=0,
                            help="resize every image to this longer side instead (e.g. 512)")
    evaluation.add_argument("--figure_pairs", type=positive_int, default=4,
                            help="pairs shown in the comparison figures wce_vs_ccpl.jpg and lct_vs_sct.jpg")
    parser.add_argument("--output", default=str(REPO_ROOT / "experiments" / "ablation"),
                        help="checkpoints, logs, evaluation, table")
    add_device_flag(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.pairs_dir) == bool(args.pairs):
        parser.error("give exactly one of --pairs_dir and --pairs")
    args.variants = [v for group in args.variants for v in group] if args.variants else variant_list(",".join(VARIANTS))
    if len(set(args.variants)) != len(args.variants):
        parser.error("--variants lists a variant twice")
    args.vgg = str(args.vgg or default_vgg(args.training_mode))
    args.save_model_interval = args.save_model_interval or args.max_iter
    args.style_size = args.content_size if args.style_size is None else args.style_size
    try:
        args.train_args = shlex.split(args.train_args)
    except ValueError as err:
        parser.error(f"--train_args {args.train_args!r} cannot be split into flags: {err}")
    if clashes := own_settings_in(args.train_args):
        parser.error(f"--train_args sets {', '.join(clashes)}, which the ablation sets for every variant: give "
                     "the ablation's own flag (the transform and loss are --variants)")
    return args


def own_settings_in(train_args: list[str]) -> list[str]:
    """The flags of ``train_args`` (an alias or an abbreviation as ``train.py`` takes it) that set
    one of ``OWN_SETTINGS``: they would override the ablation's own (``--max_iter 5`` trained to 5
    while the ablation evaluated its --max_iter)."""
    options = {option: action.dest for action in training_parser(None)._actions for option in action.option_strings}
    found = []
    for token in train_args:
        name = token.split("=", 1)[0]
        if not name.startswith("--"):
            continue
        dests = {options[name]} if name in options else {dest for option, dest in options.items()
                                                         if option.startswith(name)}
        if len(dests) == 1 and dests <= set(OWN_SETTINGS):
            found.append(name)
    return found


def train_argv(args: argparse.Namespace, v: Variant, folder: Path) -> list[str]:
    """The ``train.py`` flags of one variant: only the transform and loss differ."""
    argv = [f"--content_dir={args.content_dir}", f"--style_dir={args.style_dir}", f"--vgg={args.vgg}",
            f"--training_mode={args.training_mode}", f"--transform={v.transform}",
            f"--contrastive={v.contrastive}", f"--save_dir={folder}", f"--log_dir={folder / 'logs'}",
            f"--max_iter={args.max_iter}", f"--save_model_interval={args.save_model_interval}",
            f"--batch_size={args.batch_size}", f"--image_size={args.image_size}",
            f"--crop_size={args.crop_size}", f"--n_threads={args.n_threads}", f"--seed={args.seed}"]
    if args.device:
        argv.append(f"--device={args.device}")
    return argv + args.train_args


def variant_config(args: argparse.Namespace, v: Variant, folder: Path) -> TrainConfig:
    """The training configuration of one variant, checked before anything is trained."""
    try:
        return training_config(train_argv(args, v, folder))
    except UserError as err:
        raise UserError(f"{v.name}: {err}") from None
    except SystemExit:
        raise UserError(f"{v.name}: train.py refuses these flags (see above); check --train_args") from None


def check_reusable(config: TrainConfig, v: Variant, folder: RunFolder) -> None:
    """Checkpoints already in ``folder`` are reused only when the settings recorded beside them
    (``iter_N.json``) are those this ablation would train with; otherwise a ``UserError``."""
    record = folder.read_record(config.max_iter)
    if record is None or not isinstance(record.get("args"), dict):
        raise UserError(f"{v.name}: {folder.path} holds checkpoints of iteration {config.max_iter}, but no readable "
                        f"{folder.record(config.max_iter).name} says how they were trained; use --retrain to train "
                        "again, or another --output")
    changed = [f"--{name} {then} (now {now})" for name, then, now in differences(record["args"], config)]
    if changed:
        raise UserError(f"{v.name}: the checkpoints in {folder.path} were trained with {', '.join(changed)}; "
                        "use --retrain to train again, or another --output")


def train_variant(args: argparse.Namespace, v: Variant, path: Path) -> ModelFiles:
    """Train one variant (unless its final checkpoints exist, trained alike), its output going to ``train.log``."""
    config, folder = variant_config(args, v, path), RunFolder(path)
    decoder, transform = folder.decoder(config.max_iter), folder.transform(config.max_iter, v.transform)
    if decoder.is_file() and transform.is_file() and not args.retrain:
        check_reusable(config, v, folder)
        print(f"{v.name}: reusing {decoder.name} and {transform.name}")
        return ModelFiles(v.name, decoder, transform, v.transform)
    path.mkdir(parents=True, exist_ok=True)
    log_path = path / "train.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        command = [sys.executable, str(REPO_ROOT / "train.py"), *train_argv(args, v, path)]
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if finished.returncode != 0:
        last = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()][-1:]
        reason = (last or ["(no output)"])[0].strip()
        raise UserError(f"training {v.name} failed (exit {finished.returncode}): {reason} - full log in {log_path}")
    if not (decoder.is_file() and transform.is_file()):
        raise UserError(f"training {v.name} finished without writing {decoder.name} and {transform.name}")
    print(f"{v.name}: trained {args.max_iter} iterations in {time.perf_counter() - start:.1f} s")
    return ModelFiles(v.name, decoder, transform, v.transform)


def ablation_tables(rows: list[Row], variants: list[Variant], output: Path) -> str:
    """``ablation.csv`` and ``ablation.md``: one row per variant, its transform, its contrastive
    loss and its metrics' means over the pairs (± their standard errors in the Markdown; the CSV
    has the standard errors in ``*_stderr`` columns). Returns the Markdown table."""
    by_name = {v.name: v for v in variants}
    averages, errors = average_rows(rows), standard_error_rows(rows)
    labels = [[r.model, by_name[r.model].transform.upper(), by_name[r.model].contrastive.upper()] for r in averages]
    write_csv(output / "ablation.csv", ["variant", "transform", "contrastive", *METRICS,
                                        *(f"{m}_stderr" for m in METRICS)],
              ([*row_labels, *(getattr(r, m) for m in METRICS), *(getattr(e, m) for m in METRICS)]
               for r, e, row_labels in zip(averages, errors, labels)))
    table = metrics_table(averages, ("variant", "transform", "contrastive"), labels, errors)
    (output / "ablation.md").write_text(table + "\n")
    return table


# The paper's two comparisons: the contrastive loss with the transform fixed, and the transform
# with the loss fixed; each drawn from the first pair of variants that was trained.
COMPARISONS = {"wce_vs_ccpl": (("lct_wce", "lct_ccpl"), ("sct_wce", "sct_ccpl")),
               "lct_vs_sct": (("lct_wce", "sct_wce"), ("lct_ccpl", "sct_ccpl"))}


def comparison_figures(pairs: list[Pair], trained: list[str], evaluation: Path, output: Path, count: int,
                       content_size: int, style_size: int, long_side: int = 0) -> list[Path]:
    """``wce_vs_ccpl.jpg`` and ``lct_vs_sct.jpg``: content, style and the two variants' results for
    the first ``count`` pairs, from the evaluation's results; a comparison whose variants were not
    both trained is left out with a note."""
    written = []
    for name, options in COMPARISONS.items():
        chosen = next((option for option in options if set(option) <= set(trained)), None)
        if chosen is None:
            print(f"note: no {name.replace('_', ' ')} figure: train {' and '.join(options[0])} (--variants)")
            continue
        rows = [(pair.name, [read_image(pair.content, content_size, long_side=long_side),
                             read_image(pair.style, style_size, long_side=long_side),
                             *(read_image(evaluation / "results" / variant / f"{pair.name}.png")
                               for variant in chosen)])
                for pair in pairs[:count]]
        path = output / f"{name}.jpg"
        contact_sheet(rows, ["content", "style", *(v.replace("_", " + ").upper() for v in chosen)], 192).save(
            path, quality=90)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} exists and is not a folder")
    pairs = find_pairs(pairs_dir=args.pairs_dir, pairs_file=args.pairs, every_pair=args.every_pair)

    models = [train_variant(args, v, output / v.name) for v in args.variants]
    sizes = EVALUATION.replace(content_size=args.content_size, style_size=args.style_size, long_side=args.long_side)
    rows = evaluate(pairs, Lineup(models, args.vgg, args.training_mode), output / "eval", sizes, RunOptions(device))
    write_tables(rows, output / "eval")
    table = ablation_tables(rows, args.variants, output)
    figures = comparison_figures(pairs, [v.name for v in args.variants], output / "eval", output, args.figure_pairs,
                                 args.content_size, args.style_size, args.long_side)
    print(f"### Ablation: {args.max_iter} iterations, batch {args.batch_size}, seed {args.seed}, "
          f"{len(pairs)} pair(s)\n\n{table}\n")
    print(f"wrote {output / 'ablation.csv'}, ablation.md{''.join(', ' + p.name for p in figures)}; "
          f"per-pair metrics and figures in {output / 'eval'}")


if __name__ == "__main__":
    run_main(main)
