"""Stylise every content image with every style image (or a weighted mix of styles).

Examples:
  python test.py --content_dir=test/content --style_dir=test/style
      (the shipped photo model; --decoder and --LCT name other checkpoints)
  python test.py --content photo.jpg --style style.jpg \\
      --content_segment photo_seg.png --style_segment style_seg.png
      (region by region, with segmentation maps: docs/regions.md)
  python test.py --content photo.jpg --style style.jpg --auto_regions 3
      (region by region, with regions found automatically)
"""
import argparse
from pathlib import Path

from glfa.autoregions import DEFAULT_REGIONS
from glfa.cli import (add_amp_flag, add_blend_flags, add_device_flag, add_mode_flag, add_model_flags,
                      add_smoothing_flags, check_region_flags, command_parser, run_main, run_options,
                      stylize_options, stylizer_from_flags)
from glfa.flagtypes import non_negative_int, region_count, tile_side, weight_list
from glfa.options import RunOptions, StylizeOptions
from glfa.paths import REPO_ROOT
from glfa.stylize import (SAVE_EXTENSIONS, InputImages, Outputs, check_names, gather_inputs, gather_maps,
                          stylize_all)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    parser.add_argument("--content", help="one content image (or use --content_dir)")
    parser.add_argument("--content_dir", help="folder of content images")
    parser.add_argument("--style", help="one style image, or several separated by commas with "
                                        "--style_interpolation_weights (or use --style_dir)")
    parser.add_argument("--style_dir", help="folder of style images")
    add_model_flags(parser)
    add_mode_flag(parser, "--testing_mode")
    parser.add_argument("--content_size", type=non_negative_int, default=StylizeOptions.content_size,
                        help="resize the content image to this shorter side (0, the default: the photo's own "
                             "size, which the result keeps)")
    parser.add_argument("--style_size", type=non_negative_int, default=StylizeOptions.style_size,
                        help="resize the style image to this shorter side (0, the default: its own size; with "
                             "the finish the network sees it at the working size)")
    parser.add_argument("--crop", action="store_true", help="centre-crop to a square of --content_size/--style_size")
    parser.add_argument("--max_size", type=non_negative_int, default=StylizeOptions.max_size,
                        help="longest side of a resized image: longer ones are scaled down to it, with a note "
                             "(0: no limit)")
    parser.add_argument("--save_ext", default=".jpg",
                        help=f"extension of the output images: {', '.join(SAVE_EXTENSIONS)}")
    parser.add_argument("--output", default=str(REPO_ROOT / "output"), help="folder for the results")
    parser.add_argument("--contact_sheet", action="store_true",
                        help="also write contact_sheet.png in --output: content, style and result side by side")
    add_region_flags(parser)
    add_blend_flags(parser)
    add_smoothing_flags(parser)
    parser.add_argument("--style_interpolation_weights", type=weight_list,
                        help="e.g. 1,1,2: mix the --style images with these weights")
    add_device_flag(parser)
    add_amp_flag(parser)
    parser.add_argument("--tile_size", type=tile_side, default=RunOptions.tile_size,
                        help="stylise larger images in seamless tiles of this many pixels, at least 64 "
                             "(0: automatic, by free memory; small images stay whole)")
    parser.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels-last memory layout (default: on the CPU, where it is faster; off on GPUs)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder and decoder")
    return parser


def add_region_flags(parser: argparse.ArgumentParser) -> None:
    """Region-wise transfer: segmentation maps of both sides, or automatic regions."""
    regions = parser.add_argument_group("regions (docs/regions.md)")
    regions.add_argument("--content_segment", metavar="FILE",
                         help="colour-coded segmentation map of --content (comma-separated, one per image); "
                              "each region takes the style of the --style_segment region of its colour")
    regions.add_argument("--style_segment", metavar="FILE", help="colour-coded segmentation map of --style")
    regions.add_argument("--content_segment_dir", metavar="DIR",
                         help="maps of the --content_dir images, matched by file name (in7.jpg: in7.png)")
    regions.add_argument("--style_segment_dir", metavar="DIR", help="maps of the --style_dir images, by file name")
    regions.add_argument("--auto_regions", type=region_count, nargs="?", const=DEFAULT_REGIONS,
                         default=StylizeOptions.auto_regions,
                         metavar="K", help=f"with no maps: find K matching regions in content and style "
                                           f"(k-means on encoder features; K defaults to {DEFAULT_REGIONS})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.options = stylize_options(args, parser)
    if not args.save_ext.startswith("."):
        args.save_ext = "." + args.save_ext
    if args.save_ext.lower() not in SAVE_EXTENSIONS:
        parser.error(f"--save_ext must be one of {', '.join(SAVE_EXTENSIONS)}")
    if bool(args.content) == bool(args.content_dir):
        parser.error("give exactly one of --content and --content_dir")
    if bool(args.style) == bool(args.style_dir):
        parser.error("give exactly one of --style and --style_dir")
    check_names(args.content, "content")        # before the flags that depend on how many names there are
    check_names(args.style, "style")
    if args.style_interpolation_weights and not args.style:
        parser.error("--style_interpolation_weights needs --style with comma-separated images")
    if args.style and "," in args.style and not args.style_interpolation_weights:
        parser.error("several --style images are mixed, which needs --style_interpolation_weights "
                     "(e.g. 1,1); to stylise with each style in turn, use --style_dir")
    check_region_flags(args, parser)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run = run_options(args, progress=True)              # a precision refused before any file is read
    content_paths = gather_inputs(args.content, args.content_dir, "content")
    style_paths = gather_inputs(args.style, args.style_dir, "style")
    content_root = Path(args.content_dir) if args.content_dir else None
    style_root = Path(args.style_dir) if args.style_dir else None
    content_maps = gather_maps(args.content_segment, args.content_segment_dir, content_paths, content_root, "content")
    style_maps = gather_maps(args.style_segment, args.style_segment_dir, style_paths, style_root, "style")
    stylizer = stylizer_from_flags(args, run, args.options)
    written = stylize_all(stylizer, InputImages(content_paths, content_root, content_maps),
                          InputImages(style_paths, style_root, style_maps),
                          Outputs(Path(args.output), args.save_ext, args.contact_sheet),
                          args.options, args.style_interpolation_weights)
    print(written.line())


if __name__ == "__main__":
    run_main(main)
