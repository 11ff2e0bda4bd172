"""Photos of any size: time and peak memory of stylising 0.2, 12 and 24 Mpx photos with the
shipped model, through the Python API and through ``test.py`` (the whole command: reading,
stylising, writing the JPEG), with the finish at the working size (the default) against the exact
path that runs the network on every pixel in tiles (``--working_size 0``). Prints one Markdown table
and the growth of each path's cost from the smallest photo to the largest.

    python scripts/benchmark_sizes.py                      # CPU, all three sizes, both paths
    python scripts/benchmark_sizes.py --megapixels 0.2,12 --no-exact

Each case runs in a fresh process, so its peak resident memory (the whole process's, model and
PyTorch included) is its own. The photos are a test photo resized to each size (the time does not
depend on what the photo shows).
"""
import argparse
import sys
import tempfile
from pathlib import Path

import glfa.benchmark as bench
from glfa.cli import command_parser, run_main
from glfa.flagtypes import positive_int
from glfa.paths import REPO_ROOT
from glfa.options import StylizeOptions
from glfa.tables import markdown_table

CONTENT = REPO_ROOT / "test" / "content" / "coast_dune.jpg"
STYLE = REPO_ROOT / "test" / "style" / "sunset_boats.jpg"


def megapixel_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or not all(0.05 <= value <= 100 for value in values):
        raise argparse.ArgumentTypeError(f"megapixels must be from 0.05 to 100, got {text}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    parser.add_argument("--megapixels", type=megapixel_list, default=[0.2, 12, 24], help="photo sizes, in Mpx")
    parser.add_argument("--working_size", type=positive_int, default=StylizeOptions.working_size,
                        help="the fast path's working size")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed API calls per size (median)")
    parser.add_argument("--exact", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the exact tiled path (minutes at 12 Mpx and more on a CPU)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    paths = {"working size": ["--working_size", str(args.working_size)]}
    if args.exact:
        paths["exact (tiled)"] = ["--working_size", "0"]
    rows, api_times = [], {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for megapixels in args.megapixels:
            photo = folder / f"photo_{megapixels:g}mpx.jpg"
            width, height = bench.photo_of_size(CONTENT, megapixels, photo)
            for name, flags in paths.items():
                options = {"working_size": int(flags[1])}
                api_seconds, api_peak = bench.api_seconds_and_peak(photo, STYLE, options,
                                                                   args.repeats if options["working_size"] else 1)
                command = [sys.executable, str(REPO_ROOT / "test.py"), "--content", str(photo), "--style", str(STYLE),
                           "--device", "cpu", "--output", str(folder / "out"), *flags]
                test_seconds, test_peak = bench.command_seconds_and_peak(command, REPO_ROOT)
                api_times.setdefault(name, []).append(api_seconds)
                rows.append([f"{width}×{height} ({width * height / 1e6:.1f} Mpx)", name, f"{api_seconds:.2f}",
                             f"{api_peak / 2 ** 30:.2f}", f"{test_seconds:.2f}", f"{test_peak / 2 ** 30:.2f}"])
                print(" | ".join(rows[-1]), file=sys.stderr)
    print(markdown_table(["photo", "path", "API s", "API peak GiB", "test.py s", "test.py peak GiB"], rows))
    for name, times in api_times.items():
        if len(times) > 1:
            print(f"\n{name}: API time at {args.megapixels[-1]:g} Mpx is {times[-1] / times[0]:.1f}× that at "
                  f"{args.megapixels[0]:g} Mpx")


if __name__ == "__main__":
    run_main(main)
