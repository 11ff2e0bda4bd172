"""Stylise a video file (.mp4, .mov, .webm) or a folder of video frames with one style and measure
temporal consistency: the frame-to-frame differences of the stylised frames against the content's
and, with optical flow, the warped error. Writes the stylised frames, <name>_stylized.mp4 (the
input's frame count and rate), a preview GIF, the per-step CSV, a summary and figures.

Example: python video.py clip.mp4 --style=test/style/sunset_boats.jpg --output=output/video
         python video.py frames/ --style=test/style/sunset_boats.jpg --fps=24
         python video.py frames/ --style=s.jpg --style_segment=s_seg.png --content_segment_dir=frames_seg/
         (the shipped photo model; --decoder and --LCT name other checkpoints)
"""
import argparse
from pathlib import Path

from glfa.autoregions import DEFAULT_REGIONS
from glfa.cli import (add_amp_flag, add_blend_flags, add_device_flag, add_mode_flag, add_model_flags,
                      add_smoothing_flags, check_region_flags, command_parser, run_main, run_options, stylize_options,
                      stylizer_from_flags)
from glfa.clips import VIDEO_EXTENSIONS, clip_files, open_clip
from glfa.errors import UserError
from glfa.flagtypes import frame_rate, non_negative_int, positive_int, region_count
from glfa.images import InputFiles, list_images, read_image
from glfa.options import StylizeOptions
from glfa.paths import REPO_ROOT
from glfa.segments import check_map_file, read_label_map
from glfa.video import (VIDEO_WORKING_SIZE, VideoOutput, frame_regions, output_files, process_video,
                        stylised_video_name, summary_markdown)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    parser.add_argument("input", nargs="?", metavar="VIDEO_OR_FOLDER",
                        help=f"a video file ({', '.join(VIDEO_EXTENSIONS)}, any case) or a folder of frames")
    parser.add_argument("--frames_dir", help="folder of frames (sorted naturally: 2 before 10); the same as "
                                             "giving the folder as VIDEO_OR_FOLDER")
    parser.add_argument("--style", required=True, help="the style image")
    add_model_flags(parser)
    add_mode_flag(parser, "--testing_mode")
    parser.add_argument("--content_size", type=non_negative_int, default=StylizeOptions.content_size,
                        help="resize the frames to this shorter side (0, the default: their own size)")
    parser.add_argument("--style_size", type=non_negative_int, default=StylizeOptions.style_size,
                        help="resize the style image to this shorter side (0, the default: its own size; with "
                             "the finish the network sees it at the working size)")
    regions = parser.add_argument_group("regions (docs/regions.md)")
    regions.add_argument("--style_segment", metavar="FILE", help="colour-coded segmentation map of --style")
    regions.add_argument("--content_segment", metavar="FILE", help="one map for every frame (a still camera)")
    regions.add_argument("--content_segment_dir", metavar="DIR",
                         help="a map per frame, matched by frame name (frame10.png: frame10.png; a video "
                              "file's frames are frame_000001 onwards)")
    regions.add_argument("--auto_regions", type=region_count, nargs="?", const=DEFAULT_REGIONS,
                         default=StylizeOptions.auto_regions,
                         metavar="K", help=f"with no maps: find K matching regions in every frame and the style "
                                           f"(K defaults to {DEFAULT_REGIONS})")
    add_blend_flags(parser)
    add_smoothing_flags(parser, "each stylised frame", VIDEO_WORKING_SIZE)
    parser.add_argument("--flow", choices=("none", "tvl1"), default="none",
                        help="optical flow for the warped error in the report (tvl1: scikit-image's TV-L1, "
                             "seconds a frame at 512 px and about 25 s at 1080p on a CPU; none, the default: "
                             "the report has the frame-to-frame differences only)")
    parser.add_argument("--fps", type=frame_rate,
                        help="frame rate of the stylised MP4 and preview.gif, as a number or a fraction such "
                             "as 30000/1001 (default: a video file's own rate; 25 for a frame folder)")
    parser.add_argument("--preview_height", type=positive_int, default=VideoOutput.preview_height,
                        help="preview.gif frames are shrunk to at most this height")
    parser.add_argument("--output", default=str(REPO_ROOT / "output" / "video"),
                        help="folder for the frames, the MP4, the GIF, the tables and the figures")
    add_device_flag(parser)
    add_amp_flag(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.options = stylize_options(args)
    if args.working_size is None:
        args.options = args.options.replace(working_size=VIDEO_WORKING_SIZE)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} exists and is not a folder")
    if bool(args.input) == bool(args.frames_dir):
        raise UserError("give one video file or frame folder: as VIDEO_OR_FOLDER or as --frames_dir"
                        + (", not both" if args.input else ""))
    check_region_flags(args)
    run = run_options(args)                             # a precision refused before the clip is probed
    clip = open_clip(args.input or args.frames_dir, args.fps)
    maps = [Path(path) for path in (args.style_segment, args.content_segment) if path]
    if args.content_segment_dir:
        maps += list_images(args.content_segment_dir)
    InputFiles([*clip_files(clip), Path(args.style), *maps]).check(output_files(clip, output))
    style = read_image(args.style, args.options.style_size)
    style_map = None
    if args.style_segment:
        check_map_file(Path(args.style_segment), Path(args.style), "style")
        style_map = read_label_map(args.style_segment, "style")
    regions = frame_regions(clip, style_map, args.content_segment, args.content_segment_dir)
    stylizer = stylizer_from_flags(args, run, args.options)
    means = process_video(stylizer, clip, style, output, args.options, regions,
                          VideoOutput(preview_height=args.preview_height, flow=args.flow == "tvl1"))
    print(summary_markdown(means, len(clip)))
    print(f"wrote {len(clip)} frames to {output / 'frames'}, {stylised_video_name(clip)} ({clip.rate} fps), "
          "preview.gif, temporal.csv, temporal.md, consistency_plot.png and consistency_strip.png")


if __name__ == "__main__":
    run_main(main)
