"""What the commands share: the user-error type and its one-line exit, the device and precision
helpers, the help layout, the flags every command spells the same way, and flag types."""
import argparse
import contextlib
import math
import sys
from fractions import Fraction
from typing import TYPE_CHECKING, Callable

import torch

from net import parse_mode

if TYPE_CHECKING:
    from glfa.inference import Smoothing

MODE_FLAGS = ("--testing_mode", "--training_mode", "--mode")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
MAX_FPS = 1000      # the highest frame rate --fps accepts


class UserError(Exception):
    """A problem with the user's input (files, flags, checkpoints): reported in one line."""


def run_main(main: Callable[[], None]) -> None:
    """Run ``main``; turn a ``UserError`` into one ``error:`` line and exit status 2, and a file-system
    failure (an output path that is a file, no permission, a full disk) into one line and status 1."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        print(f"error: {err.strerror or err}{where}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


# --------------------------------------------------------------------------------------------
# Device and precision
# --------------------------------------------------------------------------------------------

def resolve_device(name: str | torch.device | None) -> torch.device:
    """``--device``: CUDA when present unless told otherwise; a missing GPU is a user error."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device name (try 'cpu' or 'cuda')") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but no CUDA GPU is available (use --device cpu)")
    return device


def configure_backends(device: torch.device) -> None:
    """Fast GPU settings: cuDNN picks the fastest algorithms, matmuls and convolutions may use TF32."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``--amp``: ``auto`` is bf16 on GPUs that support it and off elsewhere."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    if amp == "fp16" and device.type == "cpu":
        raise UserError("--amp fp16 is for GPUs: on the CPU it runs about 30× slower than fp32; "
                        "use --amp off (or bf16)")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision for the convolutions; the statistics and losses cast to fp32 themselves."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Parsers and the flags every command spells alike
# --------------------------------------------------------------------------------------------

class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every command's ``--help``: the description as written, then each flag with its default
    (left out where there is none, and for switches)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or (action.nargs == 0 and action.default is False):
            return action.help or ""
        return super()._get_help_string(action)


def command_parser(description: str | None, prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of a command, with the shared help layout."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)


def add_mode_flag(parser: argparse._ActionsContainer, reference: str) -> None:
    """The mode flag: ``reference`` (``--testing_mode``, ``--training_mode`` or ``--mode``, the
    command's own spelling) names it, and the other two spellings are accepted as aliases."""
    aliases = [flag for flag in MODE_FLAGS if flag != reference]
    parser.add_argument(reference, *aliases, dest=reference.lstrip("-"), type=mode_name, default="photo",
                        metavar="MODE", help="photo (relu3_1) or art (relu4_1)")


def add_vgg_flag(parser: argparse._ActionsContainer) -> None:
    """``--vgg``; its default depends on the mode (``paths.default_vgg``), so it is resolved after parsing."""
    parser.add_argument("--vgg", metavar="PATH",
                        help="normalised VGG-19 encoder weights (default: models/vgg_normalised_conv3_1.pth "
                             "in photo mode, models/vgg_normalised.pth in art mode)")


def add_model_flags(parser: argparse._ActionsContainer) -> None:
    """The model of the stylising commands: ``--vgg``, ``--decoder`` and the transform flags."""
    add_vgg_flag(parser)
    parser.add_argument("--decoder", metavar="PATH",
                        help="decoder checkpoint (default: the shipped photo model, the newest "
                             "decoder_iter_N.pth.tar in experiments/photo/)")
    add_transform_flags(parser)


def add_transform_flags(parser: argparse._ActionsContainer) -> None:
    """``--LCT PATH`` or ``--SCT PATH`` (the transform file, applied as LCT or SCT) and ``--transform``."""
    files = parser.add_mutually_exclusive_group()
    files.add_argument("--LCT", dest="lct_path", metavar="PATH",
                       help="transform checkpoint, applied as LCT (default: the shipped model's "
                            "lct_iter_N.pth.tar); LCT and SCT files hold the same weights")
    files.add_argument("--SCT", dest="sct_path", metavar="PATH",
                       help="transform checkpoint applied as SCT, without LCT's AdaIN skip connection "
                            "(CCPL's name; implies --transform sct)")
    parser.add_argument("--transform", choices=("lct", "sct"),
                        help="how the transform is applied (default: sct with --SCT, else lct)")


def transform_choice(args: argparse.Namespace) -> tuple[str | None, str]:
    """The transform file (None: the shipped one) and how it is applied, from the transform flags:
    ``--transform`` when given, else ``sct`` with ``--SCT`` and ``lct`` otherwise."""
    return args.sct_path or args.lct_path, args.transform or ("sct" if args.sct_path else "lct")


def add_blend_flags(parser: argparse._ActionsContainer) -> None:
    """``--alpha`` and ``--preserve_color``, the stylising options of the CCPL family."""
    parser.add_argument("--alpha", type=unit_float, default=1.0,
                        help="blend of the transformed feature with the content's: 0 keeps the content, "
                             "1 is full stylisation")
    parser.add_argument("--preserve_color", action="store_true",
                        help="match the style image's colours to the content first (keeps the content's colours)")


def add_smoothing_flags(parser: argparse._ActionsContainer, what: str = "smooth each result") -> None:
    """``--smooth`` (``what`` it does in the command) with ``--smooth_radius`` and ``--smooth_eps``;
    ``smoothing_choice`` turns them into a ``Smoothing``."""
    from glfa.inference import Smoothing  # glfa.inference imports this module

    parser.add_argument("--smooth", action="store_true",
                        help=f"{what} with an edge-aware guided filter guided by the content photo "
                             "(removes small artifacts, keeps edges)")
    parser.add_argument("--smooth_radius", type=positive_int, metavar="PX",
                        help=f"with --smooth: the filter's window radius in pixels (default: {Smoothing.radius})")
    parser.add_argument("--smooth_eps", type=smooth_eps, metavar="EPS",
                        help=f"with --smooth: edges are guide variations above about sqrt(EPS) on a 0-1 scale; "
                             f"larger smooths more (default: {Smoothing.eps:g})")


def smoothing_choice(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> "Smoothing | None":
    """The ``Smoothing`` the smoothing flags ask for, or None without ``--smooth``. ``--smooth_radius``
    or ``--smooth_eps`` without ``--smooth`` would do nothing: an error (``parser``'s, or a ``UserError``)."""
    from glfa.inference import Smoothing

    given = {"radius": args.smooth_radius, "eps": args.smooth_eps}
    given = {name: value for name, value in given.items() if value is not None}
    if not args.smooth:
        if given:
            message = f"--smooth_{next(iter(given))} needs --smooth"
            if parser is None:
                raise UserError(message)
            parser.error(message)
        return None
    return Smoothing(**given)


def add_device_flag(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--device", help="cpu, cuda, cuda:1… (default: cuda when present)")


def add_amp_flag(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--amp", choices=AMP_CHOICES, default="off",
                        help="mixed precision: off is fp32 like the reference code (exact metrics); bf16 and "
                             "fp16 are the fast GPU path; auto: bf16 on GPUs that support it, off on the CPU")


# --------------------------------------------------------------------------------------------
# Flag types
# --------------------------------------------------------------------------------------------

def mode_name(text: str) -> str:
    """argparse type: a mode in any of the reference spellings (``pho``, ``artistic``…), as ``photo`` or ``art``."""
    try:
        return parse_mode(text).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _bounded(text: str, kind: type, fits: Callable[[float], bool], requirement: str):
    """``text`` as a ``kind`` number, or an argparse error stating ``requirement``."""
    value = _number(text, kind)
    if not fits(value):
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    return _bounded(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    return _bounded(text, int, lambda v: v >= 0, "zero or more")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _bounded(text, float, lambda v: v > 0, "a positive number")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number ≥ 0."""
    return _bounded(text, float, lambda v: v >= 0, "zero or more")


def smooth_eps(text: str) -> float:
    """argparse type: the guided filter's eps, a finite number ≥ 1e-6 (``inference.MIN_SMOOTH_EPS``)."""
    from glfa.inference import MIN_SMOOTH_EPS

    return _bounded(text, float, lambda v: v >= MIN_SMOOTH_EPS, f"at least {MIN_SMOOTH_EPS:g}")


def frame_rate(text: str) -> Fraction:
    """argparse type: frames per second, a number or a fraction (``30000/1001``), above 0 and at
    most ``MAX_FPS``; held as a fraction with a denominator of at most 1001."""
    try:
        rate = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame rate (a number such as 25 or 29.97, or a "
                                         "fraction such as 30000/1001)") from None
    if not 0 < rate <= MAX_FPS:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_FPS}, got {text}")
    return rate.limit_denominator(1001)


def unit_float(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    return _bounded(text, float, lambda v: 0 <= v <= 1, "between 0 and 1")


def positive_int_list(text: str) -> list[int]:
    """argparse type: comma-separated integers ≥ 1, at least one."""
    values = [positive_int(part) for part in _parts(text)]
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated positive integers, got nothing")
    return values


def weight_list(text: str) -> list[float]:
    """argparse type: comma-separated non-negative weights with a positive, finite sum."""
    weights = [_number(part, float) for part in _parts(text)]
    if any(w < 0 for w in weights) or not 0 < sum(weights) < math.inf:
        raise argparse.ArgumentTypeError("weights must be non-negative with a positive, finite sum")
    return weights


def choice_list(*choices: str) -> Callable[[str], list[str]]:
    """argparse type: comma-separated names (possibly none), each one of ``choices``."""
    def parse(text: str) -> list[str]:
        names = _parts(text)
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, unknown))}: "
                                             f"choose from {', '.join(choices)}")
        return names
    return parse


def zoom_box(text: str) -> tuple[float, float, float, float] | None:
    """argparse type: a region ``x,y,w,h`` as fractions of the image, or ``none``."""
    if text.lower() == "none":
        return None
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not four comma-separated fractions x,y,w,h") from None
    if not (0 <= x < 1 and 0 <= y < 1 and w > 0 and h > 0 and x + w <= 1 and y + h <= 1):
        raise argparse.ArgumentTypeError(f"zoom box {text} must lie inside the image (fractions of 0 to 1)")
    return x, y, w, h


def _parts(text: str) -> list[str]:
    """The items of a comma-separated list; an empty text is an empty list."""
    if not text.strip():
        return []
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list")
    return parts


def _number(text: str, kind: type):
    """``text`` as an int or a finite float (NaN, inf and overflowing numbers are refused)."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value
