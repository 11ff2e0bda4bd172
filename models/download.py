"""Fetch ``vgg_normalised.pth``, the normalised VGG-19 encoder of the AdaIN/CCPL family, and check it.

Usage (from the repository root):
    python -m models.download [--url URL] [--output models/vgg_normalised.pth] [--mode photo|art]

The file is streamed into a temporary file beside the output, checked to load as the encoder
through ``checkpoint.load_encoder``, and only then renamed into place, so an interrupted or bad
download never leaves a broken file where ``train.py`` and ``test.py`` look for it.
"""
import argparse
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from checkpoint import CheckpointError, load_encoder
from cli import UserError, positive_float, run_main

DEFAULT_URL = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/vgg_normalised.pth"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "vgg_normalised.pth"
MODE_LAYERS = {"photo": "relu3_1", "art": "relu4_1"}
CHUNK_BYTES = 1 << 20


def download(url: str, destination: Path, timeout: float) -> int:
    """Stream ``url`` into ``destination``; returns the bytes written. Network failures are user errors."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "python-urllib (models.download)"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(destination, "wb") as file:
            expected = int(response.headers.get("Content-Length") or 0) or None
            written = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc="download",
                      file=sys.stdout, disable=None) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    file.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise UserError(f"{url} answered HTTP {err.code} {err.reason}; check --url") from None
    except urllib.error.URLError as err:
        raise UserError(f"cannot reach {url} ({err.reason}); no network? Download vgg_normalised.pth "
                        f"by hand (see models/README.md) and pass its path with --vgg") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise UserError(f"download from {url} failed ({type(err).__name__}: {err}); try again") from None
    except ValueError as err:
        raise UserError(f"--url {url!r} is not a URL that can be fetched ({err})") from None
    if expected is not None and written != expected:
        raise UserError(f"download from {url} was cut short ({written} of {expected} bytes); try again")
    return written


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


def fetch_encoder(url: str, output: Path, mode: str = "photo", timeout: float = 60.0) -> list[str]:
    """Download ``url`` to ``output`` atomically once it loads as the ``mode`` encoder; returns the modes it covers."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.part{os.getpid()}")
    try:
        size = download(url, partial, timeout)
        print(f"downloaded {size / 1e6:.1f} MB from {url}")
        covered = modes_covered(partial, mode, f"the file from {url}")
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return covered


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.download", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help=f"where to fetch the file (default: {DEFAULT_URL})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="where to write it (default: models/vgg_normalised.pth)")
    parser.add_argument("--mode", choices=tuple(MODE_LAYERS), default="photo",
                        help="the mode the file must serve (default: photo)")
    parser.add_argument("--timeout", type=positive_float, default=60.0, help="network timeout in seconds")
    parser.add_argument("--force", action="store_true", help="download even if the output file exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.output.exists() and not args.force:
        try:
            covered = modes_covered(args.output, args.mode, str(args.output))
        except UserError as err:
            raise UserError(f"{err}; rerun with --force to download it again") from None
        print(f"{args.output} is already there and loads as the encoder for {describe(covered)}")
        return
    covered = fetch_encoder(args.url, args.output, args.mode, args.timeout)
    print(f"saved {args.output}: loads as the encoder for {describe(covered)}")


if __name__ == "__main__":
    run_main(main)
