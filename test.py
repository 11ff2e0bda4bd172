"""Stylise every content image with every style image (or a weighted mix of styles).

Example: python test.py --content_dir=test/content --style_dir=test/style \
             --decoder=experiments/decoder_iter_160000.pth.tar --LCT=experiments/lct_iter_160000.pth.tar
"""
import argparse
import sys
from pathlib import Path

import torch
from torchvision import transforms
from torchvision.utils import save_image
from tqdm import tqdm

from cli import UserError, mode_name, non_negative_int, resolve_device, run_main, unit_float
from data import UnreadableImage, list_images, load_rgb, read_image_or_fail

SAVE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def weight_list(text: str) -> list[float]:
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise argparse.ArgumentTypeError("weights must be non-negative with a positive sum")
    return weights


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--content", help="one content image (or use --content_dir)")
    parser.add_argument("--content_dir", help="folder of content images")
    parser.add_argument("--style", help="one style image, or several separated by commas with "
                                        "--style_interpolation_weights (or use --style_dir)")
    parser.add_argument("--style_dir", help="folder of style images")
    parser.add_argument("--vgg", default="models/vgg_normalised.pth")
    parser.add_argument("--decoder", default="experiments/decoder_iter_160000.pth.tar")
    transform = parser.add_mutually_exclusive_group()
    transform.add_argument("--LCT", dest="lct_path", help="transform checkpoint (default: "
                           "experiments/lct_iter_160000.pth.tar); LCT and SCT files hold the same weights")
    transform.add_argument("--SCT", dest="sct_path", help="the same, for CCPL's name (implies --transform sct)")
    parser.add_argument("--testing_mode", type=mode_name, default="photo", help="photo or art")
    parser.add_argument("--transform", choices=("lct", "sct"), default=None,
                        help="how the transform is applied (default: sct with --SCT, else lct)")
    parser.add_argument("--content_size", type=non_negative_int, default=512,
                        help="shorter side of the content image (0 keeps the original size)")
    parser.add_argument("--style_size", type=non_negative_int, default=512,
                        help="shorter side of the style image (0 keeps the original size)")
    parser.add_argument("--crop", action="store_true", help="centre-crop to a square of the given size")
    parser.add_argument("--save_ext", default=".jpg", help="extension of the output images")
    parser.add_argument("--output", default="output", help="folder for the results")
    parser.add_argument("--alpha", type=unit_float, default=1.0, help="0 keeps the content, 1 full stylisation")
    parser.add_argument("--preserve_color", action="store_true", help="keep the content's colours")
    parser.add_argument("--style_interpolation_weights", type=weight_list, default=None,
                        help="e.g. 1,1,2: mix the --style images with these weights")
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: cuda when present)")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="off",
                        help="mixed precision: off is fp32 like the reference code; bf16/fp16 are the fast "
                             "GPU path; auto: bf16 on capable GPUs, off on CPU")
    parser.add_argument("--tile_size", type=non_negative_int, default=0,
                        help="stylise larger images in seamless tiles of this many pixels "
                             "(0: automatic, by free memory; small images stay whole)")
    parser.add_argument("--channels_last", action="store_true", help="channels-last memory layout")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder and decoder")
    args = parser.parse_args(argv)
    args.transform_path = args.sct_path or args.lct_path or "experiments/lct_iter_160000.pth.tar"
    args.transform = args.transform or ("sct" if args.sct_path else "lct")
    if not args.save_ext.startswith("."):
        args.save_ext = "." + args.save_ext
    if args.save_ext.lower() not in SAVE_EXTENSIONS:
        parser.error(f"--save_ext must be one of {', '.join(SAVE_EXTENSIONS)}")
    if bool(args.content) == bool(args.content_dir):
        parser.error("give exactly one of --content and --content_dir")
    if bool(args.style) == bool(args.style_dir):
        parser.error("give exactly one of --style and --style_dir")
    if args.style_interpolation_weights and not args.style:
        parser.error("--style_interpolation_weights needs --style with comma-separated images")
    if args.style and "," in args.style and not args.style_interpolation_weights:
        parser.error("several --style images are mixed, which needs --style_interpolation_weights "
                     "(e.g. 1,1); to stylise with each style in turn, use --style_dir")
    return args


def image_transform(size: int, crop: bool) -> transforms.Compose:
    """Resize the shorter side to ``size`` (0 keeps it), optionally centre-crop, to tensor."""
    steps = []
    if size:
        steps.append(transforms.Resize(size))
        if crop:
            steps.append(transforms.CenterCrop(size))
    return transforms.Compose(steps + [transforms.ToTensor()])


def gather_inputs(single: str | None, folder: str | None, what: str) -> list[Path]:
    if single:
        return [Path(p) for p in single.split(",")]
    paths = list_images(folder)
    if not paths:
        raise UserError(f"no {what} images in {folder}")
    return paths


def main() -> None:
    from inference import Stylizer, read_ahead
    from training import autocast_dtype

    args = parse_args()
    device = resolve_device(args.device)
    content_paths = gather_inputs(args.content, args.content_dir, "content")
    style_paths = gather_inputs(args.style, args.style_dir, "style")
    weights = args.style_interpolation_weights
    if weights and len(weights) != len(style_paths):
        raise UserError(f"{len(weights)} interpolation weights for {len(style_paths)} style images")

    stylizer = Stylizer(args.vgg, args.decoder, args.transform_path, args.testing_mode, args.transform,
                        device, autocast_dtype(args.amp, device), args.tile_size, args.channels_last, args.compile)
    content_tf = image_transform(args.content_size, args.crop)
    style_tf = image_transform(args.style_size, args.crop)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)

    failures: list[Path] = []

    def read(path: Path, transform: transforms.Compose, named: bool, size: int) -> torch.Tensor | None:
        """A file the user named must be readable; one found in a folder is skipped with a warning.
        JPEGs far larger than ``size`` are decoded at a reduced scale (draft mode)."""
        draft = size or None
        if named:
            return transform(read_image_or_fail(path, draft))
        try:
            return transform(load_rgb(path, draft))
        except UnreadableImage as err:
            print(f"warning: skipping unreadable image {err}", file=sys.stderr)
            failures.append(path)
            return None

    styles = [(p, read(p, style_tf, bool(args.style), args.style_size)) for p in style_paths]
    styles = [(p, s) for p, s in styles if s is not None]
    if not styles:
        raise UserError(f"none of the style images in {args.style_dir} can be read")
    if weights:
        jobs = [("_interpolation", [s for _, s in styles], weights)]  # CCPL's name for a style mix
    else:
        jobs = [(f"_stylized_{p.stem}", [s], None) for p, s in styles]

    contents = read_ahead(content_paths, lambda path: read(path, content_tf, bool(args.content), args.content_size))
    with tqdm(total=len(content_paths) * len(jobs), desc="stylise", unit="pair", dynamic_ncols=True) as progress:
        for content_path, content in contents:
            if content is None:
                progress.update(len(jobs))
                continue
            for suffix, style_images, style_weights in jobs:
                total = sum(style_weights) if style_weights else None
                result = stylizer.stylize(content, style_images,
                                          [w / total for w in style_weights] if style_weights else None,
                                          args.alpha, args.preserve_color)
                save_image(result, output / f"{content_path.stem}{suffix}{args.save_ext}")
                progress.update()
    if failures:
        raise UserError(f"{len(failures)} image(s) could not be read and were skipped (see warnings above)")


if __name__ == "__main__":
    run_main(main)
