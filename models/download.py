"""Fetch ``vgg_normalised.pth``, the normalised VGG-19 encoder of the AdaIN/CCPL family, and check it.

Usage (from the repository root):
    python -m models.download [--url URL] [--output models/vgg_normalised.pth] [--mode photo|art]

The file is downloaded with ``torch.hub.download_url_to_file`` into a temporary folder beside the
output (checked against ``--sha256`` when given), checked to load as the encoder through
``glfa.checkpoint.load_encoder``, and only then moved into place, so an interrupted or bad download
never leaves a broken file where ``train.py`` and ``test.py`` look for it.
"""
import argparse
import contextlib
import http.client
import os
import socket
import sys
import tempfile
import urllib.error
from pathlib import Path
from typing import Iterator

from torch.hub import download_url_to_file

from glfa.checkpoint import CheckpointError, load_encoder
from glfa.cli import add_mode_flag, command_parser, run_main
from glfa.errors import UserError
from glfa.flagtypes import positive_float

DEFAULT_URL = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/vgg_normalised.pth"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "vgg_normalised.pth"
MODE_LAYERS = {"photo": "relu3_1", "art": "relu4_1"}


@contextlib.contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """A default socket timeout for the block (``download_url_to_file`` takes none of its own)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download(url: str, destination: Path, timeout: float, sha256: str | None = None) -> int:
    """Download ``url`` to ``destination`` (checking its SHA-256 when given); returns its size in
    bytes. Network failures and a wrong hash are user errors."""
    try:
        with socket_timeout(timeout):
            download_url_to_file(url, str(destination), hash_prefix=sha256, progress=sys.stderr.isatty())
    except urllib.error.HTTPError as err:
        raise UserError(f"{url} answered HTTP {err.code} {err.reason}; check --url") from None
    except urllib.error.URLError as err:
        raise UserError(f"cannot reach {url} ({err.reason}); no network? Download vgg_normalised.pth "
                        f"by hand (see models/README.md) and pass its path with --vgg") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise UserError(f"download from {url} failed ({type(err).__name__}: {err}); try again") from None
    except ValueError as err:
        raise UserError(f"--url {url!r} is not a URL that can be fetched ({err})") from None
    except RuntimeError as err:
        raise UserError(f"the file from {url} does not match --sha256: {err}") from None
    return destination.stat().st_size


def modes_covered(path: Path, required: str, label: str) -> list[str]:
    """The modes whose encoder ``path`` can serve; ``required`` must be one of them (``label`` names the file)."""
    covered, reasons = [], {}
    for mode in MODE_LAYERS:
        try:
            load_encoder(path, mode)
            covered.append(mode)
        except CheckpointError as err:
            reasons[mode] = str(err).replace(str(path), "the file")
    if required not in covered:
        raise UserError(f"{label} is not a usable VGG encoder for {required} mode: {reasons[required]}")
    return covered


def describe(covered: list[str]) -> str:
    text = " and ".join(f"{mode} mode ({MODE_LAYERS[mode]})" for mode in covered)
    missing = [mode for mode in MODE_LAYERS if mode not in covered]
    return text + (f"; not {', '.join(missing)} mode" if missing else "")


def fetch_encoder(url: str, output: Path, mode: str = "photo", timeout: float = 60.0,
                  sha256: str | None = None) -> list[str]:
    """Download ``url`` to ``output`` atomically once it loads as the ``mode`` encoder; returns the modes it covers."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as folder:
        partial = Path(folder) / output.name
        size = download(url, partial, timeout, sha256)
        print(f"downloaded {size / 1e6:.1f} MB from {url}")
        covered = modes_covered(partial, mode, f"the file from {url}")
        os.replace(partial, output)
    return covered


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__, prog="python -m models.download")
    parser.add_argument("--url", default=DEFAULT_URL, help="where to fetch the file")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write it")
    add_mode_flag(parser, "--mode")
    parser.add_argument("--sha256", metavar="HEX",
                        help="expected SHA-256 of the file (or its first digits); checked when given")
    parser.add_argument("--timeout", type=positive_float, default=60.0, help="network timeout in seconds")
    parser.add_argument("--force", action="store_true", help="download even if the output file exists")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.output.exists() and not args.force:
        try:
            covered = modes_covered(args.output, args.mode, str(args.output))
        except UserError as err:
            raise UserError(f"{err}; rerun with --force to download it again") from None
        print(f"{args.output} is already there and loads as the encoder for {describe(covered)}")
        return
    covered = fetch_encoder(args.url, args.output, args.mode, args.timeout, args.sha256)
    print(f"saved {args.output}: loads as the encoder for {describe(covered)}")


if __name__ == "__main__":
    run_main(main)
