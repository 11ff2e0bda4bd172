"""Split a training state into parts of a bounded size, and join them back: a state larger than
a transfer allows (a GPU machine returns files of at most 16 MiB) travels in parts.

    python scripts/state_parts.py split training_state_iter_N.pth FOLDER [--max_mib 15]
    python scripts/state_parts.py join FOLDER training_state_iter_N.pth

Each part is a ``weights_only``-loadable file holding some of the state's entries, its number, and
the SHA-256 of the whole state file and the names of all its entries; ``join`` checks that the
parts are one state's (the same hash in each: parts of two states with one name are refused),
each once and complete, then writes it as ``train.py --resume`` reads it.
"""
import argparse
import io
from pathlib import Path

import torch

from glfa.checkpoint import CheckpointError, atomic_save, load_training_state, safe_load
from glfa.cli import command_parser, run_main
from glfa.errors import UserError
from glfa.flagtypes import positive_float
from glfa.provenance import file_sha256
from glfa.trainingstate import check_training_state

PART_FORMAT = "glfa-training-state-part-2"  # part 1 had no hash of the whole


def encoded_size(value: object) -> int:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.tell()


def split(state_path: Path, folder: Path, max_bytes: int) -> list[Path]:
    """The state's entries packed greedily, largest first, into parts of at most ``max_bytes``."""
    state = load_training_state(state_path)
    sizes = {key: encoded_size(value) for key, value in state.items()}
    too_big = [key for key, size in sizes.items() if size > max_bytes]
    if too_big:
        raise UserError(f"the entry {too_big[0]!r} of {state_path} alone takes {sizes[too_big[0]] / 2**20:.1f} MiB; "
                        "raise --max_mib")
    parts: list[dict] = []
    for key in sorted(sizes, key=sizes.get, reverse=True):
        home = next((part for part in parts if sum(sizes[k] for k in part) + sizes[key] <= max_bytes), None)
        if home is None:
            home = {}
            parts.append(home)
        home[key] = state[key]
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{state_path.stem}.part{i + 1}of{len(parts)}.pth" for i in range(len(parts))]
    whole = {"of": state_path.name, "sha256": file_sha256(state_path), "count": len(parts), "keys": sorted(state)}
    for index, (path, part) in enumerate(zip(paths, parts), 1):
        atomic_save({"part_format": PART_FORMAT, **whole, "index": index, "entries": part}, path)
    return paths


def join(folder: Path, state_path: Path) -> None:
    """The state the parts in ``folder`` make up, checked and written to ``state_path``."""
    paths = sorted(folder.glob("*.part*of*.pth"))
    if not paths:
        raise UserError(f"no state parts (NAME.partKofN.pth) in {folder}")
    parts = [safe_load(path) for path in paths]
    if any(not isinstance(p, dict) or not str(p.get("part_format", "")).startswith("glfa-training-state-part-")
           for p in parts):
        raise UserError(f"{folder} holds files that are not training-state parts")
    if any(p["part_format"] != PART_FORMAT for p in parts):
        raise UserError(f"the parts in {folder} were split by an older state_parts.py, which did not mark them "
                        "with their state's hash: split the state again")
    wholes = {(p.get("of"), p.get("sha256"), p.get("count"), tuple(p.get("keys", ()))) for p in parts}
    if len(wholes) != 1:
        raise UserError(f"the parts in {folder} come from {len(wholes)} different states (their hashes differ): "
                        "keep each state's parts in a folder of their own")
    count, keys = parts[0]["count"], parts[0]["keys"]
    if sorted(p.get("index", 0) for p in parts) != list(range(1, count + 1)):
        raise UserError(f"the parts in {folder} are not the complete parts of one state "
                        f"({len(parts)} found, {count} expected)")
    state = {key: value for part in parts for key, value in part["entries"].items()}
    if sorted(state) != keys or sum(len(part["entries"]) for part in parts) != len(keys):
        raise UserError(f"the parts in {folder} do not hold their state's entries exactly once")
    try:
        check_training_state(state, state_path)
    except CheckpointError as err:
        raise UserError(f"the joined parts are not a whole training state: {err}") from None
    atomic_save(state, state_path)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    cut = verbs.add_parser("split", help="cut a training state into parts")
    cut.add_argument("state", help="the training state (training_state_iter_N.pth)")
    cut.add_argument("folder", help="where the parts go")
    cut.add_argument("--max_mib", type=positive_float, default=15.0, help="the largest part, in MiB")
    glue = verbs.add_parser("join", help="join parts back into a training state")
    glue.add_argument("folder", help="the folder holding the parts")
    glue.add_argument("state", help="the training state to write")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.verb == "split":
        for path in split(Path(args.state), Path(args.folder), int(args.max_mib * 2**20)):
            print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    else:
        join(Path(args.folder), Path(args.state))
        print(f"wrote {args.state}")


if __name__ == "__main__":
    run_main(main)
