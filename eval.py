r"""Evaluate trained models on content/style pairs: SSIM (luminance and edges), Gram and mean/std
losses, time per image; a CSV, a Markdown table, comparison figures and a contact sheet.

Example: python eval.py --pairs_dir=../shared/data/photo_pairs \
             --model lct_wce=experiments/decoder_iter_160000.pth.tar,experiments/lct_iter_160000.pth.tar \
             --model sct_ccpl=experiments/sct_ccpl --baselines reinhard,adain --output=output/eval
Every pair of two folders, with the shipped model: python eval.py --content_dir test/content \
             --style_dir test/style --every_pair
Region by region (docs/regions.md): python eval.py --pairs_dir=../shared/data/photo_pairs --seg --auto_regions 3
"""
import argparse
from pathlib import Path

from glfa.autoregions import DEFAULT_REGIONS
from glfa.cli import (add_amp_flag, add_device_flag, add_mode_flag, add_smoothing_flags, add_vgg_flag, command_parser,
                      run_main, run_options, stylize_options)
from glfa.flagtypes import non_negative_int, positive_int, region_count, unit_float, zoom_box
from glfa.eval import (EVALUATION, Figures, Lineup, baseline_list, evaluate, find_pairs, parse_model,
                       shipped_model_spec, with_segments, write_tables)
from glfa.paths import REPO_ROOT


def baseline_type(text: str) -> list[str]:
    try:
        return baseline_list(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    pairs = parser.add_argument_group("pairs (one of)")
    pairs.add_argument("--pairs_dir", help="folder with content/ and style/ images paired by number (in7 ↔ tar7)")
    pairs.add_argument("--content_dir", help="content images, paired by number with --style_dir")
    pairs.add_argument("--style_dir", help="style images, paired by number with --content_dir")
    pairs.add_argument("--pairs", help="text file, one 'content style' pair of image paths a line")
    pairs.add_argument("--every_pair", "--all_pairs", action="store_true",
                       help="pair every content image with every style image instead of by number "
                            "(e.g. --content_dir test/content --style_dir test/style)")
    models = parser.add_argument_group("models")
    models.add_argument("--model", action="append", metavar="NAME=DECODER,TRANSFORM[,lct|sct]",
                        help="a model to evaluate (repeat for several); NAME=FOLDER takes the folder's latest "
                             "decoder_iter_N/lct_iter_N (or sct_iter_N) checkpoints (default: the shipped photo "
                             "model, named shipped)")
    models.add_argument("--baselines", type=baseline_type, default=None,
                        help="also evaluate these, comma-separated: reinhard (colour transfer, no network), "
                             "adain (AdaIN decoded by the first model's decoder)")
    models.add_argument("--adain_decoder", metavar="PATH",
                        help="the decoder of the adain baseline (default: the first model's), e.g. a decoder "
                             "trained with train.py --objective reconstruction")
    models.add_argument("--alpha", type=unit_float, default=EVALUATION.alpha,
                        help="every --model's blend of the transformed feature with the content's (0 keeps the "
                             "content, 1 is full stylisation; the baselines stay at 1)")
    add_smoothing_flags(models, "every --model's results (the baselines are never finished)")
    models.add_argument("--raw", action="store_true",
                        help="also evaluate every --model's raw output, unfinished (as NAME+raw)")
    models.add_argument("--seg", action="store_true",
                        help="also evaluate every --model region by region (as NAME+seg), with the maps in "
                             "content_seg/ and style_seg/ beside content/ and style/ of --pairs_dir")
    models.add_argument("--auto_regions", type=region_count, nargs="?", const=DEFAULT_REGIONS,
                        default=EVALUATION.auto_regions,
                        metavar="K", help="also evaluate every --model with K automatic regions (as NAME+autoK; "
                                          f"K defaults to {DEFAULT_REGIONS})")
    add_vgg_flag(models)
    add_mode_flag(models, "--testing_mode")
    parser.add_argument("--content_size", type=non_negative_int, default=EVALUATION.content_size,
                        help="shorter side of the content images (0 keeps the original size)")
    parser.add_argument("--style_size", type=non_negative_int,
                        help="shorter side of the style images (default: --content_size)")
    parser.add_argument("--long_side", type=non_negative_int, default=EVALUATION.long_side,
                        help="resize every content and style image to this longer side instead (e.g. 512; "
                             "0: use --content_size and --style_size)")
    parser.add_argument("--zoom", type=zoom_box, default=",".join(map(str, Figures.zoom)),
                        help="region enlarged in the figures, x,y,w,h as fractions of the image, or none")
    parser.add_argument("--figure_height", type=positive_int, default=Figures.height,
                        help="height of each figure panel in px")
    parser.add_argument("--output", default=str(REPO_ROOT / "output" / "eval"),
                        help="folder for tables, results and figures")
    add_device_flag(parser)
    add_amp_flag(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    sources = [bool(args.pairs_dir), bool(args.content_dir or args.style_dir), bool(args.pairs)]
    if sum(sources) != 1:
        parser.error("give exactly one of --pairs_dir, --content_dir with --style_dir, or --pairs")
    if bool(args.content_dir) != bool(args.style_dir):
        parser.error("--content_dir and --style_dir go together")
    if args.every_pair and args.pairs:
        parser.error("--every_pair pairs folders; it does not apply to --pairs")
    if args.seg and (not args.pairs_dir or args.every_pair):
        parser.error("--seg reads the maps beside the numbered pairs of --pairs_dir (content_seg/, style_seg/)")
    if args.style_size is None:
        args.style_size = args.content_size
    args.options = stylize_options(args, parser)
    if args.raw and args.options.smooth is None:
        parser.error("--raw adds the unfinished output beside the finished one: with --no-smooth the models' "
                     "rows are raw already")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run = run_options(args)                             # a precision refused before any file is read
    models = [parse_model(text) for text in args.model] if args.model else [shipped_model_spec()]
    pairs = find_pairs(args.pairs_dir, args.content_dir, args.style_dir, args.pairs, args.every_pair)
    pairs = with_segments(pairs, args.pairs_dir) if args.seg else pairs
    lineup = Lineup(models, args.vgg, args.testing_mode, tuple(args.baselines or ()), args.raw, args.adain_decoder)
    rows = evaluate(pairs, lineup, args.output, args.options, run, Figures(args.zoom, args.figure_height))
    print(write_tables(rows, args.output))
    print(f"wrote {Path(args.output) / 'metrics.csv'}, metrics.md, figures/ and contact_sheet.png")


if __name__ == "__main__":
    run_main(main)
