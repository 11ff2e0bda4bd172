"""Rebuild the validation set of content/style photo pairs listed in validation_pairs.csv.

Each line of the manifest (next to this script) names one pair: a BSDS500 *test* photo as content
and a style photo, either from a Debian wallpaper package (``PACKAGE:PATH`` inside the package) or
another BSDS500 test photo (``bsds:test/NAME.jpg``), with the SHA-256 of both source files. Every
source is checked against its hash before anything is written. The output is

    OUTPUT/content/inN.jpg   the content photo, copied byte for byte
    OUTPUT/style/tarN.jpg    the style photo, long side at most 1024 px (JPEG quality 95)
    OUTPUT/pairs.csv         a copy of the manifest

so ``python eval.py --pairs_dir OUTPUT`` pairs inN with tarN. Style sources are read from
``--styles_dir`` (one extracted tree per package: ``STYLES_DIR/PACKAGE/usr/share/...``);
``--fetch`` first downloads the packages with ``apt-get download`` and extracts the files needed
into ``--styles_dir``, or into a temporary folder when none is given. Which photos were chosen and
why, with their licences: validation_styles.md.

Example:
    python scripts/make_validation_set.py --bsds_dir ../shared/data/bsds500 --fetch
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageCms, ImageOps

from glfa.cli import command_parser, run_main
from glfa.errors import UserError

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "validation_pairs.csv"
DEFAULT_OUTPUT = HERE.parent / "datasets" / "validation"
COLUMNS = ["number", "content", "style", "content_sha256", "style_sha256"]
MAX_SIDE = 1024
QUALITY = 95
BSDS = "bsds"

Image.MAX_IMAGE_PIXELS = 200_000_000  # the package photos reach 6028×3391


class Pair(NamedTuple):
    number: int
    content: str        # relative to --bsds_dir, e.g. test/100007.jpg
    style: str          # PACKAGE:PATH or bsds:test/NAME.jpg
    content_sha256: str
    style_sha256: str


def read_manifest(path: Path) -> list[Pair]:
    """The pairs of the manifest, checked: numbers 1..n in order, distinct BSDS test contents."""
    if not path.is_file():
        raise UserError(f"manifest not found: {path}")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != COLUMNS:
        raise UserError(f"{path}: the first line must be {','.join(COLUMNS)}")
    pairs: list[Pair] = []
    for line, row in enumerate(rows[1:], 2):
        if len(row) != len(COLUMNS):
            raise UserError(f"{path}:{line}: expected {len(COLUMNS)} fields, found {len(row)}")
        number, content, style, content_sha, style_sha = row
        if number != str(len(pairs) + 1):
            raise UserError(f"{path}:{line}: pair number {number!r}, expected {len(pairs) + 1}")
        if not re.fullmatch(r"test/[^/]+\.jpg", content):
            raise UserError(f"{path}:{line}: content {content!r} is not a BSDS500 test photo (test/NAME.jpg)")
        if ":" not in style or not style.split(":", 1)[1] or style.split(":", 1)[1].startswith("/") \
                or ".." in Path(style.split(":", 1)[1]).parts:
            raise UserError(f"{path}:{line}: style {style!r} is not PACKAGE:PATH or bsds:test/NAME.jpg")
        if style == f"{BSDS}:{content}":
            raise UserError(f"{path}:{line}: {content} is its own style")
        for digest in (content_sha, style_sha):
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise UserError(f"{path}:{line}: {digest!r} is not a SHA-256 (64 lower-case hex digits)")
        pairs.append(Pair(len(pairs) + 1, content, style, content_sha, style_sha))
    if not pairs:
        raise UserError(f"{path}: no pairs")
    seen: dict[str, int] = {}
    for pair in pairs:
        if pair.content in seen:
            raise UserError(f"{path}: content {pair.content} is in pairs {seen[pair.content]} and {pair.number}")
        seen[pair.content] = pair.number
    return pairs


def packages_of(pairs: list[Pair]) -> dict[str, set[str]]:
    """For each package the manifest names, the paths it needs from it."""
    needed: dict[str, set[str]] = {}
    for pair in pairs:
        package, inner = pair.style.split(":", 1)
        if package != BSDS:
            needed.setdefault(package, set()).add(inner)
    return needed


def fetch(needed: dict[str, set[str]], styles_dir: Path) -> None:
    """Download each package with ``apt-get download`` and extract the paths needed from it into
    ``styles_dir/PACKAGE/``."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise UserError(f"--fetch needs {tool}, which is not on PATH (give --styles_dir with extracted packages)")
    with tempfile.TemporaryDirectory(prefix="validation_debs_") as tmp:
        for package, paths in sorted(needed.items()):
            print(f"fetching {package}", flush=True)
            done = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
            debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
            if done.returncode != 0 or not debs:
                why = (done.stderr.strip().splitlines() or ["no .deb written"])[-1]
                raise UserError(f"apt-get download {package} failed: {why}")
            extract(debs[-1], paths, styles_dir / package)


def extract(deb: Path, paths: set[str], dest: Path) -> None:
    """Copy ``paths`` (regular files) out of the data archive of ``deb`` into ``dest``."""
    wanted = {f"./{p}" for p in paths}
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            for member in archive:
                if member.name in wanted and member.isfile():
                    source = archive.extractfile(member)
                    assert source is not None
                    target = dest / member.name[2:]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(source.read())
                    wanted.discard(member.name)
    except tarfile.TarError as error:
        raise UserError(f"cannot read {deb.name}: {error}") from None
    finally:
        proc.stdout.close()
        proc.wait()
    if wanted:
        raise UserError(f"{deb.name} has no regular file {sorted(wanted)[0][2:]}")


def source_path(source: str, bsds_dir: Path, styles_dir: Path | None) -> Path:
    """Where a manifest source lies: ``test/…`` and ``bsds:test/…`` under ``bsds_dir``,
    ``PACKAGE:PATH`` under ``styles_dir/PACKAGE``."""
    if ":" not in source:
        return bsds_dir / source
    package, inner = source.split(":", 1)
    if package == BSDS:
        return bsds_dir / inner
    assert styles_dir is not None
    return styles_dir / package / inner


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sources(pairs: list[Pair], bsds_dir: Path, styles_dir: Path | None) -> dict[str, Path]:
    """Every source file, found and matching its SHA-256; one line per problem, then UserError."""
    expected: dict[str, str] = {}
    for pair in pairs:
        for source, digest in ((pair.content, pair.content_sha256), (pair.style, pair.style_sha256)):
            if expected.setdefault(source, digest) != digest:
                raise UserError(f"manifest: {source} has two different SHA-256s")
    found: dict[str, Path] = {}
    problems: list[str] = []
    for source, digest in expected.items():
        path = source_path(source, bsds_dir, styles_dir)
        if not path.is_file():
            problems.append(f"missing source {source}: no file {path}")
        elif (actual := sha256(path)) != digest:
            problems.append(f"SHA-256 differs for {source} ({path}): manifest {digest[:16]}…, file {actual[:16]}…")
        else:
            found[source] = path
    if problems:
        for line in problems[:-1]:
            print(f"error: {line}", file=sys.stderr)
        raise UserError(problems[-1] + (f" ({len(problems)} problems)" if len(problems) > 1 else ""))
    return found


def style_jpeg(path: Path) -> bytes:
    """The style photo as JPEG bytes, long side at most MAX_SIDE: a plain JPEG already that small
    is copied as is; anything else is turned upright, converted to sRGB RGB, resized (Lanczos)
    and saved at QUALITY."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG" and max(image.size) <= MAX_SIDE and image.mode == "RGB" \
                and not image.info.get("icc_profile") and image.getexif().get(0x0112, 1) == 1:
            return data
        side = 2 * MAX_SIDE                            # JPEG: decode at no less than twice the output
        image.draft(image.mode, (min(image.width, side * image.width // max(image.size)),
                                 min(image.height, side * image.height // max(image.size))))
        icc = image.info.get("icc_profile")
        image = ImageOps.exif_transpose(image)
        if icc:
            try:
                image = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                                  ImageCms.createProfile("sRGB"), outputMode="RGB")
            except (ImageCms.PyCMSError, ValueError, OSError) as error:
                print(f"warning: {path}: colour profile not applied ({error})", file=sys.stderr)
        image = image.convert("RGB")
        scale = min(1.0, MAX_SIDE / max(image.size))
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if size != image.size:
            image = image.resize(size, Image.LANCZOS)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=QUALITY)
        return out.getvalue()


def build(pairs: list[Pair], found: dict[str, Path], output: Path, manifest: Path) -> None:
    """Write OUTPUT/content/inN.jpg, OUTPUT/style/tarN.jpg and OUTPUT/pairs.csv (earlier inN/tarN
    files there are removed first)."""
    content_dir, style_dir = output / "content", output / "style"
    for folder, prefix in ((content_dir, "in"), (style_dir, "tar")):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"{prefix}*.jpg"):
            if re.fullmatch(rf"{prefix}\d+\.jpg", old.name):
                old.unlink()
    styles: dict[str, bytes] = {}
    for pair in pairs:
        shutil.copyfile(found[pair.content], content_dir / f"in{pair.number}.jpg")
        if pair.style not in styles:
            styles[pair.style] = style_jpeg(found[pair.style])
        (style_dir / f"tar{pair.number}.jpg").write_bytes(styles[pair.style])
    shutil.copyfile(manifest, output / "pairs.csv")
    print(f"wrote {len(pairs)} pairs ({len(styles)} style photos) to {output}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = command_parser(__doc__)
    parser.add_argument("--bsds_dir", required=True, type=Path,
                        help="BSDS500 folder holding test/ (only test photos are read)")
    parser.add_argument("--styles_dir", type=Path,
                        help="folder of extracted packages (STYLES_DIR/PACKAGE/usr/...); with --fetch, "
                             "where to extract them (default: a temporary folder)")
    parser.add_argument("--fetch", action="store_true",
                        help="download the packages with apt-get download and extract the files needed")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="output folder")
    parser.add_argument("--manifest", type=Path, default=MANIFEST,
                        help="the pairs, one line each")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    pairs = read_manifest(args.manifest)
    if not (args.bsds_dir / "test").is_dir():
        raise UserError(f"--bsds_dir {args.bsds_dir} has no test/ folder")
    needed = packages_of(pairs)
    if needed and not args.fetch:
        if args.styles_dir is None:
            raise UserError("give --styles_dir (extracted packages) or --fetch")
        if not args.styles_dir.is_dir():
            raise UserError(f"--styles_dir {args.styles_dir} is not a folder")
    with tempfile.TemporaryDirectory(prefix="validation_styles_") as tmp:
        styles_dir = args.styles_dir if args.styles_dir is not None else Path(tmp)
        if needed and args.fetch:
            fetch(needed, styles_dir)
        found = check_sources(pairs, args.bsds_dir, styles_dir)
        build(pairs, found, args.output, args.manifest)


if __name__ == "__main__":
    run_main(main)
