"""A local web demo: a page where a content and a style photo (uploaded and previewed, or picked from
test/'s thumbnails) are stylised with a chosen alpha, colour preservation and finish; the result is
shown and downloaded at full size.

Example: pip install -r requirements-demo.txt && python app.py      (then open http://127.0.0.1:7860/)
         (the shipped photo model; --decoder and --LCT name other checkpoints)
"""
import argparse

from glfa.app import MAX_SIDE, Demo, serve
from glfa.cli import (add_device_flag, add_mode_flag, add_model_flags, command_parser, run_main, run_options,
                      stylize_options, stylizer_from_flags, transform_choice)
from glfa.flagtypes import port_number, positive_int


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 opens the demo to the whole network)")
    parser.add_argument("--port", type=port_number, default=7860, help="port to listen on (0: any free port)")
    parser.add_argument("--max_side", type=positive_int, default=MAX_SIDE,
                        help="photos longer than this on a side (px) are scaled down to it, and the page says so")
    add_model_flags(parser)
    add_mode_flag(parser, "--testing_mode")
    add_device_flag(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.transform_path, args.transform = transform_choice(args)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stylizer = stylizer_from_flags(args, run_options(args), stylize_options(args))
    serve(Demo(stylizer, args.max_side), args.host, args.port)


if __name__ == "__main__":
    run_main(main)
