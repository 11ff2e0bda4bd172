"""The types of the command-line flags: each turns a flag's text into a value or raises
``argparse.ArgumentTypeError`` with a message that names what is wanted."""
import argparse
import math
from fractions import Fraction
from typing import Callable

from glfa.autoregions import MAX_REGIONS
from glfa.smoothing import MAX_SMOOTH_EPS, MIN_SMOOTH_EPS, MIN_WORKING_SIZE
from glfa.tiles import MIN_TILE_SIZE
from net import parse_mode

MAX_FPS = 1000      # the highest frame rate --fps accepts


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
    """argparse type: the guided filter's eps, from ``MIN_SMOOTH_EPS`` to ``MAX_SMOOTH_EPS``."""
    return _bounded(text, float, lambda v: MIN_SMOOTH_EPS <= v <= MAX_SMOOTH_EPS,
                    f"from {MIN_SMOOTH_EPS:g} to {MAX_SMOOTH_EPS:g}")


def tile_side(text: str) -> int:
    """argparse type: ``--tile_size``, 0 (automatic tiles) or at least ``MIN_TILE_SIZE`` px."""
    return _bounded(text, int, lambda v: v == 0 or v >= MIN_TILE_SIZE, f"0 (automatic) or at least {MIN_TILE_SIZE}")


def working_side(text: str) -> int:
    """argparse type: ``--working_size``, 0 (the photo's own size) or at least ``MIN_WORKING_SIZE`` px."""
    return _bounded(text, int, lambda v: v == 0 or v >= MIN_WORKING_SIZE,
                    f"0 (the photo's own size) or at least {MIN_WORKING_SIZE}")


def region_count(text: str) -> int:
    """argparse type: ``--auto_regions K``, from 1 to ``MAX_REGIONS``."""
    return _bounded(text, int, lambda v: 1 <= v <= MAX_REGIONS, f"a number of regions from 1 to {MAX_REGIONS}")


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


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535 (0: any free port)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text}")
    return int(text)


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
