"""Rebuild a validation set of content/style photo pairs listed in a manifest: the 60-pair set of
validation_pairs.csv, or with --large the 20-pair set of large photos of validation_pairs_large.csv.

Each line of the manifest (next to this script) names one pair: a content photo, either a BSDS500
*test* photo (``test/NAME.jpg``) or a photo from a Debian wallpaper package (``PACKAGE:PATH``
inside the package), and a style photo, from a package (``PACKAGE:PATH``) or another BSDS500 test
photo (``bsds:test/NAME.jpg``), with the SHA-256 of both source files. Every source is checked
against its hash before anything is written. The output is

    OUTPUT/content/inN.jpg   the content photo at its original size: a JPEG copied byte for byte
                             (anything else converted to sRGB and saved as JPEG quality 95)
    OUTPUT/style/tarN.jpg    the style photo, long side at most 1024 px (JPEG quality 95)
    OUTPUT/pairs.csv         a copy of the manifest

so ``python eval.py --pairs_dir OUTPUT`` pairs inN with tarN. Package sources are read from
``--styles_dir`` (one extracted tree per package: ``STYLES_DIR/PACKAGE/usr/share/...``);
``--fetch`` first downloads the packages with ``apt-get download`` and extracts the files needed
into ``--styles_dir``, or into a temporary folder when none is given. ``--bsds_dir`` is needed
when the manifest names BSDS500 photos (both manifests do). Which photos were chosen and why, with
their licences: validation_styles.md and validation_large.md.

Examples:
    python scripts/make_validation_set.py --bsds_dir ../shared/data/bsds500 --fetch
    python scripts/make_validation_set.py --large --bsds_dir ../shared/data/bsds500 --fetch
    python scripts/make_validation_set.py --large --bsds_dir ../shared/data/bsds500 --fetch \\
        --content_long_side 2048 --output datasets/validation_large_2048
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
from glfa.flagtypes import non_negative_int

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "validation_pairs.csv"
DEFAULT_OUTPUT = HERE.parent / "datasets" / "validation"
LARGE_MANIFEST = HERE / "validation_pairs_large.csv"      # --large
LARGE_OUTPUT = HERE.parent / "datasets" / "validation_large"
COLUMNS = ["number", "content", "style", "content_sha256", "style_sha256"]
MAX_SIDE = 1024
QUALITY = 95
BSDS = "bsds"

Image.MAX_IMAGE_PIXELS = 200_000_000  # the package photos reach 6028×3391


class Pair(NamedTuple):
    number: int
    content: str        # test/NAME.jpg (relative to --bsds_dir) or PACKAGE:PATH
    style: str          # PACKAGE:PATH or bsds:test/NAME.jpg
    content_sha256: str
    style_sha256: str


def package_source(source: str) -> tuple[str, str] | None:
    """``(PACKAGE, PATH)`` of a source ``PACKAGE:PATH`` (a Debian package name, a relative path
    without ``..``), or None when the source is not of that form. ``bsds`` counts as a package."""
    package, colon, inner = source.partition(":")
    if not colon or not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", package) or not inner \
            or inner.startswith("/") or ".." in Path(inner).parts:
        return None
    return package, inner


def is_bsds_test_photo(content: str) -> bool:
    return re.fullmatch(r"test/[^/]+\.jpg", content) is not None


def source_key(content: str) -> str:
    """A content source as a style would name the same file: ``test/X.jpg`` is ``bsds:test/X.jpg``."""
    return f"{BSDS}:{content}" if is_bsds_test_photo(content) else content


def read_manifest(path: Path) -> list[Pair]:
    """The pairs of the manifest, checked: numbers 1..n in order, no pair twice, no photo both a
    content and a style. A content may be in several pairs, each time with another style."""
    if not path.is_file():
        raise UserError(f"manifest not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path} is not a CSV text file in UTF-8 ({err})") from None
    if not rows or rows[0] != COLUMNS:
        raise UserError(f"{path}: the first line must be {','.join(COLUMNS)}")
    pairs: list[Pair] = []
    for line, row in enumerate(rows[1:], 2):
        if len(row) != len(COLUMNS):
            raise UserError(f"{path}:{line}: expected {len(COLUMNS)} fields, found {len(row)}")
        number, content, style, content_sha, style_sha = row
        if number != str(len(pairs) + 1):
            raise UserError(f"{path}:{line}: pair number {number!r}, expected {len(pairs) + 1}")
        packaged = package_source(content)
        if not is_bsds_test_photo(content) and (packaged is None or packaged[0] == BSDS):
            raise UserError(f"{path}:{line}: content {content!r} is neither a BSDS500 test photo "
                            "(test/NAME.jpg) nor a package photo (PACKAGE:PATH)")
        if package_source(style) is None:
            raise UserError(f"{path}:{line}: style {style!r} is not PACKAGE:PATH or bsds:test/NAME.jpg")
        if style == source_key(content):
            raise UserError(f"{path}:{line}: {content} is its own style")
        for digest in (content_sha, style_sha):
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise UserError(f"{path}:{line}: {digest!r} is not a SHA-256 (64 lower-case hex digits)")
        pairs.append(Pair(len(pairs) + 1, content, style, content_sha, style_sha))
    if not pairs:
        raise UserError(f"{path}: no pairs")
    seen: dict[tuple[str, str], int] = {}
    as_content: dict[str, int] = {}
    for pair in pairs:
        if (earlier := seen.setdefault((pair.content, pair.style), pair.number)) != pair.number:
            raise UserError(f"{path}: pairs {earlier} and {pair.number} are the same ({pair.content} with {pair.style})")
        as_content.setdefault(source_key(pair.content), pair.number)
    for pair in pairs:
        if pair.style in as_content:
            raise UserError(f"{path}: {pair.style} is the content of pair {as_content[pair.style]} "
                            f"and the style of pair {pair.number}")
    return pairs


def uses_bsds(pairs: list[Pair]) -> bool:
    """Whether the manifest names a BSDS500 photo, as content or style."""
    return any(source_key(pair.content).startswith(f"{BSDS}:") or pair.style.startswith(f"{BSDS}:")
               for pair in pairs)


def packages_of(pairs: list[Pair]) -> dict[str, set[str]]:
    """For each package the manifest names, the paths it needs from it."""
    needed: dict[str, set[str]] = {}
    for pair in pairs:
        for source in (pair.content, pair.style):
            packaged = package_source(source)
            if packaged is not None and packaged[0] != BSDS:
                needed.setdefault(packaged[0], set()).add(packaged[1])
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


def source_path(source: str, bsds_dir: Path | None, styles_dir: Path | None) -> Path:
    """Where a manifest source lies: ``test/…`` and ``bsds:test/…`` under ``bsds_dir``,
    ``PACKAGE:PATH`` under ``styles_dir/PACKAGE``."""
    package, inner = (BSDS, source) if is_bsds_test_photo(source) else source.split(":", 1)
    if package == BSDS:
        assert bsds_dir is not None
        return bsds_dir / inner
    assert styles_dir is not None
    return styles_dir / package / inner


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sources(pairs: list[Pair], bsds_dir: Path | None, styles_dir: Path | None) -> dict[str, Path]:
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
        return encode_jpeg(image, path, MAX_SIDE)


def content_jpeg(path: Path, long_side: int = 0) -> bytes:
    """The content photo as JPEG bytes at its original size (``long_side`` 0) or scaled down to
    at most ``long_side`` px on the long side: a JPEG that need not shrink is copied byte for
    byte; anything else is turned upright, converted to sRGB RGB, resized (Lanczos, from the
    full decoded photo) and saved at QUALITY."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG" and not (long_side and max(image.size) > long_side):
            return data
        return encode_jpeg(image, path, long_side or None, draft=False)


def encode_jpeg(image: Image.Image, path: Path, max_side: int | None, draft: bool = True) -> bytes:
    """``image`` turned upright, converted to sRGB RGB, resized (Lanczos) to at most ``max_side``
    on the long side (None: kept at its size) and saved as JPEG at QUALITY; ``draft`` lets a
    JPEG decode at a reduced size first (no less than twice the output)."""
    if max_side is not None and draft:
        side = 2 * max_side                            # JPEG: decode at no less than twice the output
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
    scale = 1.0 if max_side is None else min(1.0, max_side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size != image.size:
        image = image.resize(size, Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def build(pairs: list[Pair], found: dict[str, Path], output: Path, manifest: Path, content_long_side: int = 0) -> None:
    """Write OUTPUT/content/inN.jpg (scaled down to ``content_long_side`` when not 0),
    OUTPUT/style/tarN.jpg and OUTPUT/pairs.csv (earlier inN/tarN files there are removed first)."""
    content_dir, style_dir = output / "content", output / "style"
    for folder, prefix in ((content_dir, "in"), (style_dir, "tar")):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"{prefix}*.jpg"):
            if re.fullmatch(rf"{prefix}\d+\.jpg", old.name):
                old.unlink()
    contents: dict[str, bytes] = {}
    styles: dict[str, bytes] = {}
    for pair in pairs:
        if pair.content not in contents:
            contents[pair.content] = content_jpeg(found[pair.content], content_long_side)
        (content_dir / f"in{pair.number}.jpg").write_bytes(contents[pair.content])
        if pair.style not in styles:
            styles[pair.style] = style_jpeg(found[pair.style])
        (style_dir / f"tar{pair.number}.jpg").write_bytes(styles[pair.style])
    shutil.copyfile(manifest, output / "pairs.csv")
    print(f"wrote {len(pairs)} pairs ({len(contents)} content photos, {len(styles)} style photos) to {output}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = command_parser(__doc__)
    parser.add_argument("--bsds_dir", type=Path,
                        help="BSDS500 folder holding test/ (only test photos are read); needed when the "
                             "manifest names BSDS500 photos")
    parser.add_argument("--styles_dir", type=Path,
                        help="folder of extracted packages (STYLES_DIR/PACKAGE/usr/...); with --fetch, "
                             "where to extract them (default: a temporary folder)")
    parser.add_argument("--fetch", action="store_true",
                        help="download the packages with apt-get download and extract the files needed")
    parser.add_argument("--output", type=Path,
                        help="output folder (default: datasets/validation, with --large "
                             "datasets/validation_large)")
    parser.add_argument("--content_long_side", type=non_negative_int, default=0, metavar="PX",
                        help="scale the content photos down to this long side (0: their original size), e.g. "
                             "2048 for a copy of the large set whose exact-path runs take minutes, not hours")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--manifest", type=Path,
                       help="the pairs, one line each (default: scripts/validation_pairs.csv)")
    which.add_argument("--large", action="store_true",
                       help="build the set of large photos: the manifest scripts/validation_pairs_large.csv, "
                            "by default into datasets/validation_large")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    manifest = args.manifest or (LARGE_MANIFEST if args.large else MANIFEST)
    output = args.output or (LARGE_OUTPUT if args.large else DEFAULT_OUTPUT)
    pairs = read_manifest(manifest)
    if uses_bsds(pairs):
        if args.bsds_dir is None:
            raise UserError(f"{manifest.name} names BSDS500 photos: give --bsds_dir (the folder holding test/)")
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
        build(pairs, found, output, manifest, args.content_long_side)


if __name__ == "__main__":
    run_main(main)
