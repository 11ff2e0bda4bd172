"""Interpolate two checkpoints of one network, weight by weight: ``(1 - t)·A + t·B``.

Two checkpoints of one lineage (B fine-tuned from A, say with a stronger style weight) are joined
by a path in weight space along which the trade between structure and style moves smoothly, so
an intermediate ``t`` gives a model between the two without training it (Wortsman et al.'s
weight-space ensembles, CVPR 2022). Run it once for the decoder and once for the transform:

    python scripts/interpolate_weights.py A/decoder_iter_N.pth.tar B/decoder_iter_M.pth.tar \\
        --t 0.5 --output mixed/decoder_iter_M.pth.tar

Both files must hold the same tensors (names, shapes, dtypes); tensors that are not floating
point (counters, indices) must be equal. The output may not be one of the inputs.
"""
import argparse
from pathlib import Path

import torch
from torch import Tensor

from glfa.checkpoint import CheckpointError, load_state_dict, save_state_dict
from glfa.cli import command_parser, run_main
from glfa.errors import UserError


def interpolate(first: dict[str, Tensor], second: dict[str, Tensor], t: float,
                names: tuple[str, str] = ("A", "B")) -> dict[str, Tensor]:
    """``(1 - t)·first + t·second`` for every floating-point tensor; other tensors must be equal
    and are copied. A mismatch of names, shapes or dtypes is a ``CheckpointError`` naming it."""
    if first.keys() != second.keys():
        extra = sorted(first.keys() ^ second.keys())
        raise CheckpointError(f"{names[0]} and {names[1]} hold different tensors (e.g. {extra[0]!r}): "
                              "not two checkpoints of one network")
    mixed = {}
    for key, a in first.items():
        b = second[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            raise CheckpointError(f"{key!r} is {tuple(a.shape)} {a.dtype} in {names[0]} and "
                                  f"{tuple(b.shape)} {b.dtype} in {names[1]}")
        if a.is_floating_point():
            mixed[key] = torch.lerp(a.float(), b.float(), t).to(a.dtype)
        elif torch.equal(a, b):
            mixed[key] = a.clone()
        else:
            raise CheckpointError(f"{key!r} ({a.dtype}) differs between {names[0]} and {names[1]} and "
                                  "cannot be interpolated")
    return mixed


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    parser.add_argument("first", metavar="A", help="the checkpoint at t = 0")
    parser.add_argument("second", metavar="B", help="the checkpoint at t = 1")
    parser.add_argument("--t", type=float, required=True, help="where between them, from 0 (A) to 1 (B)")
    parser.add_argument("--output", required=True, help="the interpolated checkpoint (not A or B)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if not 0 <= args.t <= 1:
        raise UserError(f"--t must be from 0 to 1, got {args.t:g}")
    output = Path(args.output)
    if output.exists() and any(output.resolve() == Path(path).resolve() for path in (args.first, args.second)):
        raise UserError(f"--output {output} is one of the inputs: give a new file")
    mixed = interpolate(load_state_dict(args.first), load_state_dict(args.second), args.t,
                        (args.first, args.second))
    output.parent.mkdir(parents=True, exist_ok=True)
    save_state_dict(mixed, output)
    print(f"wrote {output}: {len(mixed)} tensors at t = {args.t:g} from {args.first} to {args.second}")


if __name__ == "__main__":
    run_main(main)
