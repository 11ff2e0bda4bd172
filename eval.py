"""Evaluate trained models on content/style pairs: SSIM (luminance and edges), Gram and mean/std
losses, time per image; a CSV, a Markdown table, comparison figures and a contact sheet.

Example: python eval.py --pairs_dir=../shared/data/photo_pairs --vgg=models/vgg_normalised.pth \
             --model lct_wce=experiments/decoder_iter_160000.pth.tar,experiments/lct_iter_160000.pth.tar \
             --model sct_ccpl=experiments/sct_ccpl --output=output/eval
"""
import argparse
from pathlib import Path

from cli import UserError, mode_name, non_negative_int, positive_int, resolve_device, run_main


def zoom_box(text: str) -> tuple[float, float, float, float] | None:
    """``--zoom x,y,w,h`` as fractions of the image, or ``none``."""
    if text.lower() == "none":
        return None
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not four comma-separated fractions x,y,w,h") from None
    if not (0 <= x < 1 and 0 <= y < 1 and w > 0 and h > 0 and x + w <= 1 and y + h <= 1):
        raise argparse.ArgumentTypeError(f"zoom box {text} must lie inside the image (fractions of 0 to 1)")
    return x, y, w, h


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pairs = parser.add_argument_group("pairs (one of)")
    pairs.add_argument("--pairs_dir", help="folder with content/ and style/ images paired by number (in7 ↔ tar7)")
    pairs.add_argument("--content_dir", help="content images, paired by number with --style_dir")
    pairs.add_argument("--style_dir", help="style images, paired by number with --content_dir")
    pairs.add_argument("--pairs", help="text file, one 'content style' pair of image paths a line")
    models = parser.add_argument_group("models")
    models.add_argument("--model", action="append", required=True, metavar="NAME=DECODER,TRANSFORM[,lct|sct]",
                        help="a model to evaluate (repeat for several); NAME=FOLDER takes the folder's latest "
                             "decoder_iter_N/lct_iter_N (or sct_iter_N) checkpoints")
    models.add_argument("--vgg", default="models/vgg_normalised.pth", help="VGG encoder weights")
    models.add_argument("--testing_mode", type=mode_name, default="photo", help="photo or art")
    parser.add_argument("--content_size", type=non_negative_int, default=512,
                        help="shorter side of the content images (0 keeps the original size)")
    parser.add_argument("--style_size", type=non_negative_int, default=None,
                        help="shorter side of the style images (default: --content_size)")
    parser.add_argument("--zoom", type=zoom_box, default=(0.4, 0.4, 0.25, 0.25),
                        help="region enlarged in the figures, x,y,w,h as fractions, or none (default 0.4,0.4,0.25,0.25)")
    parser.add_argument("--figure_height", type=positive_int, default=256, help="height of each figure panel in px")
    parser.add_argument("--output", default="output/eval", help="folder for tables, results and figures")
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: cuda when present)")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="off",
                        help="mixed precision for stylising (off by default, for exact metrics)")
    args = parser.parse_args(argv)
    sources = [bool(args.pairs_dir), bool(args.content_dir or args.style_dir), bool(args.pairs)]
    if sum(sources) != 1:
        parser.error("give exactly one of --pairs_dir, --content_dir with --style_dir, or --pairs")
    if bool(args.content_dir) != bool(args.style_dir):
        parser.error("--content_dir and --style_dir go together")
    if args.style_size is None:
        args.style_size = args.content_size
    return args


def main(argv: list[str] | None = None) -> None:
    from evaluation import evaluate, pairs_by_number, parse_model, read_pairs_file, write_tables
    from training import autocast_dtype

    args = parse_args(argv)
    models = [parse_model(text) for text in args.model]
    if args.pairs:
        pairs = read_pairs_file(args.pairs)
    elif args.pairs_dir:
        root = Path(args.pairs_dir)
        if not root.is_dir():
            raise UserError(f"--pairs_dir {root} is not a folder")
        pairs = pairs_by_number(root / "content", root / "style")
    else:
        pairs = pairs_by_number(args.content_dir, args.style_dir)
    device = resolve_device(args.device)
    rows = evaluate(pairs, models, args.vgg, args.output, args.testing_mode, device, args.content_size,
                    args.style_size, args.zoom, args.figure_height, autocast_dtype(args.amp, device))
    print(write_tables(rows, args.output))
    print(f"wrote {Path(args.output) / 'metrics.csv'}, metrics.md, figures/ and contact_sheet.png")


if __name__ == "__main__":
    run_main(main)
