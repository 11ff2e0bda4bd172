"""Video at full frame size: seconds a frame of ``video.py`` with the shipped model on a 1080p clip
(the finish at the working size, the default), and the command's peak memory. A frame's cost is
the slope between two runs of the whole command, a long clip and one of ``SHORT`` frames, so
start-up, model loading and the report's figures (whose frame strip is full from 6 frames on) are
left out of it.

    python scripts/benchmark_video.py                       # 1920×1080, 24 frames, no optical flow
    python scripts/benchmark_video.py --flow tvl1 --frames 16
    python scripts/benchmark_video.py --working_size 512    # the images' working size

The clip is a test photo panned across (the time does not depend on what the frames show).
"""
import argparse
import sys
import tempfile
from pathlib import Path

import glfa.benchmark as bench
from glfa.cli import command_parser, run_main
from glfa.flagtypes import non_negative_int, positive_int
from glfa.paths import REPO_ROOT
from glfa.tables import markdown_table
from glfa.video import VIDEO_WORKING_SIZE

SOURCE = REPO_ROOT / "test" / "content" / "coast_dune.jpg"
STYLE = REPO_ROOT / "test" / "style" / "sunset_boats.jpg"
SHORT = 8


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    parser.add_argument("--width", type=positive_int, default=1920, help="frame width, px")
    parser.add_argument("--height", type=positive_int, default=1080, help="frame height, px")
    parser.add_argument("--frames", type=positive_int, default=24, help=f"frames of the long clip (more than {SHORT})")
    parser.add_argument("--flow", choices=("none", "tvl1"), default="none",
                        help="video.py's --flow: the temporal measure's optical flow")
    parser.add_argument("--working_size", type=non_negative_int,
                        help=f"video.py's --working_size (default: video.py's, {VIDEO_WORKING_SIZE})")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.frames <= SHORT:
        parser.error(f"--frames must be more than {SHORT}")
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        frames = bench.panning_clip(SOURCE, folder / "clip", args.frames, args.width, args.height)
        for count in (SHORT, args.frames):
            clip = folder / f"clip_{count}"
            clip.mkdir()
            for frame in frames[:count]:
                (clip / frame.name).symlink_to(frame)
            command = [sys.executable, str(REPO_ROOT / "video.py"), str(clip), "--style", str(STYLE), "--device", "cpu",
                       "--flow", args.flow, "--output", str(folder / f"out_{count}")]
            if args.working_size is not None:
                command += ["--working_size", str(args.working_size)]
            runs[count] = bench.command_seconds_and_peak(command, REPO_ROOT)
            print(f"{count} frames: {runs[count][0]:.1f} s", file=sys.stderr)
    per_frame = (runs[args.frames][0] - runs[SHORT][0]) / (args.frames - SHORT)
    working_size = VIDEO_WORKING_SIZE if args.working_size is None else args.working_size
    print(markdown_table(["frames", "working size", "flow", "video.py s", f"s a frame (slope {SHORT}→{args.frames} frames)",
                          "frames a second", "peak GiB"],
                         [[f"{args.frames} × {args.width}×{args.height}", working_size, args.flow, f"{runs[args.frames][0]:.1f}",
                           f"{per_frame:.2f}", f"{1 / per_frame:.2f}", f"{runs[args.frames][1] / 2 ** 30:.2f}"]]))


if __name__ == "__main__":
    run_main(main)
