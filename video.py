"""Stylise a folder of video frames with one style and measure temporal consistency: the
frame-to-frame differences of the stylised frames against the content's and, with optical flow,
the warped error. Writes the frames, a preview GIF, the per-step CSV, a summary and figures.

Example: python video.py --frames_dir=frames/ --style=test/style/sunset_boats.jpg --output=output/video
         (the shipped photo model; --decoder and --LCT name other checkpoints)
"""
import argparse
from pathlib import Path

from glfa.cli import (UserError, add_amp_flag, add_blend_flags, add_device_flag, add_mode_flag, add_model_flags,
                      autocast_dtype, command_parser, non_negative_int, positive_float, positive_int, resolve_device,
                      run_main, transform_choice)
from glfa.cli import add_smoothing_flags, smoothing_choice
from glfa.images import read_image
from glfa.inference import Stylizer
from glfa.paths import REPO_ROOT
from glfa.video import list_frames, process_video, summary_markdown


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    parser.add_argument("--frames_dir", required=True, help="folder of frames (sorted naturally: 2 before 10)")
    parser.add_argument("--style", required=True, help="the style image")
    add_model_flags(parser)
    add_mode_flag(parser, "--testing_mode")
    parser.add_argument("--content_size", type=non_negative_int, default=512,
                        help="shorter side of the frames (0 keeps the original size)")
    parser.add_argument("--style_size", type=non_negative_int, default=512,
                        help="shorter side of the style image (0 keeps the original size)")
    add_blend_flags(parser)
    add_smoothing_flags(parser, "smooth each stylised frame")
    parser.add_argument("--flow", choices=("tvl1", "none"), default="tvl1",
                        help="optical flow for the warped error (tvl1: scikit-image, slow on large frames)")
    parser.add_argument("--fps", type=positive_float, default=10.0, help="frame rate of preview.gif")
    parser.add_argument("--preview_height", type=positive_int, default=256,
                        help="preview.gif frames are shrunk to at most this height")
    parser.add_argument("--output", default=str(REPO_ROOT / "output" / "video"),
                        help="folder for the frames, the GIF, the tables and the figures")
    add_device_flag(parser)
    add_amp_flag(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.transform_path, args.transform = transform_choice(args)
    args.smoothing = smoothing_choice(args)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} exists and is not a folder")
    frame_paths = list_frames(args.frames_dir)
    style = read_image(args.style, args.style_size)
    device = resolve_device(args.device)
    stylizer = Stylizer.from_checkpoints(decoder=args.decoder, transform=args.transform_path, vgg=args.vgg,
                                         mode=args.testing_mode, kind=args.transform, device=device,
                                         amp_dtype=autocast_dtype(args.amp, device), smooth=args.smoothing)
    means = process_video(stylizer, frame_paths, style, output, content_size=args.content_size, alpha=args.alpha,
                          preserve_color=args.preserve_color, flow=args.flow == "tvl1", fps=args.fps,
                          preview_height=args.preview_height)
    print(summary_markdown(means, len(frame_paths)))
    print(f"wrote {len(frame_paths)} frames to {output / 'frames'}, preview.gif, temporal.csv, temporal.md, "
          "consistency_plot.png and consistency_strip.png")


if __name__ == "__main__":
    run_main(main)
