"""The options of stylising, each default held once: ``StylizeOptions`` (what every image gets:
the blend, the colours, the finish and its working size, automatic regions, the sizes images are
read at) and ``RunOptions`` (how the model runs: device, precision, tiles, layout). Both are
frozen, built once from a command's flags by ``glfa.cli`` or in Python, and taken by the library
whole; ``with_changes`` applies keyword changes to them by field name."""
import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Collection, Mapping, TypeVar

import torch

from glfa.smoothing import Smoothing, check_working_size, smoothing_option
from glfa.tiles import MIN_TILE_SIZE
from net import ModeSpec, parse_mode

Options = TypeVar("Options")


def check_alpha(alpha: float) -> float:
    """``alpha``, the blend of the transformed feature with the content's: a number in [0, 1]
    (NaN would give a NaN image, values outside extrapolate past the content or the style)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a number in [0, 1], got {type(alpha).__name__}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def check_tile_size(tile_size: int) -> int:
    """``tile_size``: 0 (automatic tiles) or at least ``MIN_TILE_SIZE`` px, as smaller tiles are
    mostly halo and take many times longer."""
    if isinstance(tile_size, bool) or not isinstance(tile_size, numbers.Integral):
        raise TypeError(f"tile_size must be an integer, got {type(tile_size).__name__}")
    if tile_size != 0 and tile_size < MIN_TILE_SIZE:
        raise ValueError(f"tile_size must be 0 (automatic) or at least {MIN_TILE_SIZE} px, got {tile_size}")
    return int(tile_size)


def check_size(value: int, name: str) -> int:
    """A size in pixels that may be 0 (off): a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer (0: off), got {value!r}")
    return int(value)


@dataclass(frozen=True)
class StylizeOptions:
    """How every image of a run is stylised. ``alpha`` blends the transformed feature with the
    content's (0 keeps the content); ``preserve_color`` matches the style's colours to the
    content first. ``smooth`` is the finish (a ``Smoothing``; None, or False, for none; True for
    the default one): with it the network sees the content with its long side at most
    ``working_size`` px and the finish carries the colours to the photo's own size (0: the
    network on every pixel). The default finish is photo mode's; ``for_mode`` gives each mode's.
    ``auto_regions`` K > 0 transfers K regions found in both images.

    The sizes are how the commands read their images (the Stylizer takes images as given):
    ``content_size`` and ``style_size`` resize the shorter side (0: the image's own size),
    ``crop`` centre-crops to that square, ``max_size`` caps the longer side of a resized image
    (``test.py``; 0: no cap), and ``long_side`` resizes the longer side instead (``eval.py``).
    """

    alpha: float = 1.0
    preserve_color: bool = False
    smooth: Smoothing | None = Smoothing()
    # Chosen on validation photos (docs/performance.md): any photo in about the time of a small one.
    working_size: int = 512
    auto_regions: int = 0
    content_size: int = 0
    style_size: int = 0
    crop: bool = False
    max_size: int = 4096
    long_side: int = 0

    def __post_init__(self) -> None:
        """Check every value once, where it is given; ``smooth`` True/False become a ``Smoothing``/None."""
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        object.__setattr__(self, "smooth", smoothing_option(self.smooth))
        object.__setattr__(self, "working_size", check_working_size(self.working_size))
        for name in ("content_size", "style_size", "max_size", "long_side"):
            object.__setattr__(self, name, check_size(getattr(self, name), name))

    @classmethod
    def for_mode(cls, mode: str | ModeSpec, **changes: Any) -> "StylizeOptions":
        """The options of ``mode`` with ``changes``: the finish is on in photo mode and off in art
        mode, whose network output is the result the method shows."""
        finish = cls.smooth if parse_mode(mode).name == "photo" else None
        return cls(**{"smooth": finish, **changes})

    def replace(self, **changes: Any) -> "StylizeOptions":
        """A copy with ``changes`` (checked like new options; an unknown name is a ``TypeError``)."""
        return with_changes((self,), changes, "StylizeOptions.replace()", keep_none=False)[0]


@dataclass(frozen=True)
class RunOptions:
    """How a Stylizer runs. ``device`` None is CUDA when present. ``amp_dtype`` runs the
    convolutions in bf16/fp16 while statistics stay fp32. ``tile_size`` (image pixels): 0 picks
    tiles by free memory (images that fit one tile are processed whole), at least
    ``MIN_TILE_SIZE`` tiles every larger image. ``channels_last`` None is channels-last on the
    CPU, where it measured about a fifth faster at 512², and NCHW elsewhere. ``compile`` runs
    the encoder and decoder through ``torch.compile``; ``progress`` shows a bar over a tiled
    image's tiles (stderr); ``to_cpu`` False leaves results on the device (benchmarks)."""

    device: torch.device | str | None = None
    amp_dtype: torch.dtype | None = None
    tile_size: int = 0
    channels_last: bool | None = None
    compile: bool = False
    progress: bool = False
    to_cpu: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile_size", check_tile_size(self.tile_size))


def checked_options(options: Options | None, default: Options) -> Options:
    """``options``, or ``default`` when None; a value of another type is a ``TypeError`` (such as a
    number given in the place of the options, where ``alpha`` once came)."""
    if options is None:
        return default
    if not isinstance(options, type(default)):
        raise TypeError(f"expected {type(default).__name__} or None, got {type(options).__name__} "
                        "(give single options by name, e.g. alpha=0.5)")
    return options


# What one call may change of how the Stylizer runs (the rest is fixed when its modules are placed).
PER_CALL_RUN_FIELDS = ("tile_size", "to_cpu")


def with_changes(targets: tuple[Options, ...], changes: Mapping[str, Any], caller: str,
                 allowed: Collection[str] | None = None, keep_none: bool = True) -> tuple[Options, ...]:
    """``targets`` (frozen dataclasses) with ``changes`` applied, each to the target that has a
    field of its name (among ``allowed``, if given). With ``keep_none`` a change given as None
    keeps the target's value, as a keyword left at None always has in the Python API. A name no
    target takes is a ``TypeError`` that lists the valid ones."""
    names = [[field.name for field in dataclasses.fields(target) if allowed is None or field.name in allowed]
             for target in targets]
    valid = [name for group in names for name in group]
    unknown = [name for name in changes if name not in valid]
    if unknown:
        raise TypeError(f"{caller} got an unknown option {unknown[0]!r}; the options are {', '.join(valid)}")
    return tuple(dataclasses.replace(target, **{name: changes[name] for name in group
                                                if name in changes and not (keep_none and changes[name] is None)})
                 for target, group in zip(targets, names))
