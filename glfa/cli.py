"""The command line: every command's parser, the flags the commands spell alike, the training
flags built from ``TrainConfig``'s fields, the stylising commands' options and Stylizer built
from their flags, and ``run_main``, which turns a ``UserError`` into one line. The one module of
``glfa`` that handles ``argparse`` namespaces: the commands turn them into a config, options or
explicit values here or in their own ``main``."""
import argparse
import dataclasses
import sys
from typing import Callable

from glfa.config import TrainConfig
from glfa.device import AMP_CHOICES, autocast_dtype, resolve_device
from glfa.errors import UserError
from glfa.flagtypes import mode_name, positive_int, smooth_eps, unit_float, working_side
from glfa.inference import Stylizer
from glfa.options import RunOptions, StylizeOptions
from glfa.paths import default_vgg
from glfa.smoothing import Smoothing
from net import TRANSFORMS

MODE_FLAGS = ("--testing_mode", "--training_mode", "--mode")


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
    parser.add_argument("--transform", choices=tuple(TRANSFORMS),
                        help="how the transform is applied (default: sct with --SCT, else lct); adain is AdaIN "
                             "alone, the baseline that needs no transform file")


def transform_choice(args: argparse.Namespace) -> tuple[str | None, str]:
    """The transform file (None: the shipped one) and how it is applied, from the transform flags:
    ``--transform`` when given, else ``sct`` with ``--SCT`` and ``lct`` otherwise."""
    return args.sct_path or args.lct_path, args.transform or ("sct" if args.sct_path else "lct")


def add_blend_flags(parser: argparse._ActionsContainer) -> None:
    """``--alpha`` and ``--preserve_color``, the stylising options of the CCPL family."""
    parser.add_argument("--alpha", type=unit_float, default=StylizeOptions.alpha,
                        help="blend of the transformed feature with the content's: 0 keeps the content, "
                             "1 is full stylisation")
    parser.add_argument("--preserve_color", action="store_true",
                        help="match the style image's colours to the content first (keeps the content's colours)")


def add_smoothing_flags(parser: argparse._ActionsContainer, what: str = "each result",
                        working_size: int = StylizeOptions.working_size) -> None:
    """The finish of ``what`` (on by default in photo mode): ``--smooth``/``--no-smooth``,
    ``--smooth_radius``, ``--smooth_eps``, ``--tone``/``--no-tone`` and ``--working_size`` (its
    help naming ``working_size`` as the command's default); ``stylize_options`` reads them."""
    parser.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=None,
                        help=f"finish {what} with an edge-aware guided filter guided by the content photo, which "
                             "keeps the photo's structure and takes the network's colours (default: on in photo "
                             "mode, off in art mode); --no-smooth gives the network's raw output, as the paper's "
                             "figures show it")
    parser.add_argument("--smooth_radius", type=positive_int, metavar="PX",
                        help=f"the finish's window radius in pixels of the working size (default: {Smoothing.radius})")
    parser.add_argument("--smooth_eps", type=smooth_eps, metavar="EPS",
                        help=f"the finish's edges are guide variations above about sqrt(EPS) on a 0-1 scale; "
                             f"larger smooths more (default: {Smoothing.eps:g})")
    parser.add_argument("--tone", action=argparse.BooleanOptionalAction, default=None,
                        help="after the filter, widen a washed-out result's large-scale tonal range (its 1st to "
                             "99th luminance percentile) towards the style's, its blacks no deeper than the photo's: "
                             "it lifts a veil and never compresses (default: on with the finish); --no-tone leaves "
                             "the filtered result as it is")
    parser.add_argument("--working_size", type=working_side, metavar="PX",
                        help=f"with the finish, the network sees the photo with its long side at most PX and the "
                             f"finish carries its colours to the photo's own size: any photo in about the time of "
                             f"a small one (default: {working_size}; 0: the network on every pixel, "
                             "tiled, the exact path)")


def refuse(message: str, parser: argparse.ArgumentParser | None) -> None:
    """A flag error: ``parser``'s (usage, then the message), or a ``UserError`` without one."""
    if parser is None:
        raise UserError(message)
    parser.error(message)


def smoothing_choice(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None,
                     mode: str = "photo") -> Smoothing | None:
    """The finish the flags ask for: a ``Smoothing`` (by default in photo mode,
    ``StylizeOptions.for_mode``) or None (``--no-smooth``, or art mode without ``--smooth``).
    Settings of a finish that is off would do nothing: an error (``parser``'s, or a ``UserError``)."""
    given = {"radius": args.smooth_radius, "eps": args.smooth_eps, "tone": args.tone}
    given = {name: value for name, value in given.items() if value is not None}
    smooth = StylizeOptions.for_mode(mode).smooth is not None if args.smooth is None else args.smooth
    if not smooth:
        flag_names = {"radius": "--smooth_radius", "eps": "--smooth_eps", "tone": "--tone/--no-tone"}
        flags = [flag_names[name] for name in given] + (["--working_size"] if args.working_size is not None else [])
        if flags:
            refuse(f"{flags[0]} sets the finish, which is off: drop it or add --smooth", parser)
        return None
    return Smoothing(**given)


# The flags that set a field of ``StylizeOptions`` of the same name (the finish has its own).
OPTION_FLAGS = ("alpha", "preserve_color", "working_size", "auto_regions", "content_size", "style_size", "crop",
                "max_size", "long_side")


def stylize_options(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> StylizeOptions:
    """The ``StylizeOptions`` of a stylising command's flags, built once after parsing: each
    field from its flag where the command has one (a flag left unset: the default), the finish
    from ``smoothing_choice``, the rest the mode's defaults. Errors are ``parser``'s, or a ``UserError``."""
    mode = args.testing_mode
    values = {name: getattr(args, name) for name in OPTION_FLAGS if getattr(args, name, None) is not None}
    if hasattr(args, "smooth"):
        values["smooth"] = smoothing_choice(args, parser, mode)
    return StylizeOptions.for_mode(mode, **values)


def run_options(args: argparse.Namespace, progress: bool = False) -> RunOptions:
    """How a stylising command's model runs: ``--device`` and ``--amp`` resolved now (a device or
    precision this machine lacks is refused before any file is read), and ``--tile_size``,
    ``--channels_last`` and ``--compile`` where the command has them; ``progress`` shows a bar
    over a tiled image's tiles."""
    device = resolve_device(args.device)
    values = {name: getattr(args, name) for name in ("tile_size", "channels_last", "compile") if hasattr(args, name)}
    return RunOptions(device=device, amp_dtype=autocast_dtype(getattr(args, "amp", "off"), device),
                      progress=progress, **values)


def stylizer_from_flags(args: argparse.Namespace, run: RunOptions, options: StylizeOptions) -> Stylizer:
    """The Stylizer of a stylising command: the model ``--decoder``, ``--LCT``/``--SCT``,
    ``--transform``, ``--vgg`` and the mode name (the shipped photo model by default), running
    as ``run`` with ``options`` as its calls' defaults."""
    transform, kind = transform_choice(args)
    return Stylizer.from_checkpoints(args.decoder, transform, vgg=args.vgg, mode=args.testing_mode, kind=kind,
                                     run=run, options=options)


def check_region_flags(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> None:
    """The region flags' rule: segmentation maps on both sides or neither, a side's map file and
    folder of maps not both (where the command has both image flags, the file goes with the
    single image and the folder with the image folder), maps not with ``--auto_regions``, and
    region-wise transfer not with a mix of styles. A broken rule is ``parser``'s error, or a ``UserError``."""
    for side in ("content", "style"):
        single, folder = getattr(args, f"{side}_segment"), getattr(args, f"{side}_segment_dir", None)
        if single and folder:
            refuse(f"give --{side}_segment or --{side}_segment_dir, not both", parser)
        if not hasattr(args, f"{side}_dir"):
            continue
        if single and not getattr(args, side):
            refuse(f"--{side}_segment is the map of --{side}; for --{side}_dir give --{side}_segment_dir", parser)
        if folder and not getattr(args, f"{side}_dir"):
            refuse(f"--{side}_segment_dir holds the maps of --{side}_dir; for --{side} give --{side}_segment", parser)
    content_maps = bool(args.content_segment or getattr(args, "content_segment_dir", None))
    style_maps = bool(args.style_segment or getattr(args, "style_segment_dir", None))
    if content_maps != style_maps:
        given, missing = ("content", "style") if content_maps else ("style", "content")
        flags = [f"--{missing}_segment", *([f"--{missing}_segment_dir"] if hasattr(args, f"{missing}_segment_dir")
                                           else [])]
        refuse(f"segmentation maps for the {given} need maps for the {missing} too: give {' or '.join(flags)}", parser)
    if content_maps and args.auto_regions:
        refuse("--auto_regions finds regions where no maps are given: use maps or --auto_regions, not both", parser)
    if (content_maps or args.auto_regions) and getattr(args, "style_interpolation_weights", None):
        refuse("region-wise transfer takes one style at a time, not --style_interpolation_weights", parser)


def add_device_flag(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--device", help="cpu, cuda, cuda:1… (default: cuda when present)")


def add_amp_flag(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--amp", choices=AMP_CHOICES, default="off",
                        help="mixed precision: off is fp32 like the reference code (exact metrics); bf16 and "
                             "fp16 are the fast GPU path (bf16 also on CPUs with native bf16); auto: bf16 on GPUs "
                             "that support it, off on the CPU")


def training_parser(description: str | None) -> argparse.ArgumentParser:
    """``train.py``'s parser: one flag per ``TrainConfig`` field, in the field's group, with its
    help, type and default (the aliases of renamed flags accepted)."""
    parser = command_parser(description)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        options = dict(meta["options"])
        names = [f"--{field.name}", *options.pop("aliases", ())]
        switch = options.pop("switch", None)
        if switch == "negatable":
            options["action"] = argparse.BooleanOptionalAction
        elif switch == "plain":
            options["action"] = "store_true"
        elif meta["kind"] is not None:
            options["type"] = meta["kind"]
        group.add_argument(*names, dest=field.name, default=field.default, help=meta["help"], **options)
    return parser


def training_config(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> TrainConfig:
    """The ``TrainConfig`` of ``train.py``'s command line (parsed by ``parser``, by default
    ``training_parser``); the encoder defaults to the mode's file."""
    values = vars((parser or training_parser(None)).parse_args(argv))
    values["vgg"] = str(values["vgg"] or default_vgg(values["training_mode"]))
    return TrainConfig(**values)
