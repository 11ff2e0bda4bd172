"""scripts/make_validation_set.py: the manifest is checked, every source against its SHA-256, and
the set is written as eval.py pairs it (inN with tarN); bad input is one error line."""
import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glfa.cli import run_main
from glfa.eval import find_pairs
from scripts import make_validation_set as builder


def photo(path: Path, size: tuple[int, int], seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A BSDS-like folder (test/), one extracted 'package' with a large style photo, a manifest."""
    bsds, styles = tmp_path / "bsds", tmp_path / "styles"
    digests = {name: photo(bsds / "test" / f"{name}.jpg", (48, 32), i) for i, name in enumerate("abc")}
    wallpaper = photo(styles / "pkg" / "usr/share/w.jpg", (2400, 1200), 9)
    manifest = tmp_path / "pairs.csv"
    with manifest.open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(builder.COLUMNS)
        rows.writerow([1, "test/a.jpg", "pkg:usr/share/w.jpg", digests["a"], wallpaper])
        rows.writerow([2, "test/b.jpg", "bsds:test/c.jpg", digests["b"], digests["c"]])
    return bsds, styles, manifest


def test_the_set_is_built_as_eval_pairs_it(sources, tmp_path: Path) -> None:
    bsds, styles, manifest = sources
    out = tmp_path / "validation"
    builder.main(["--bsds_dir", str(bsds), "--styles_dir", str(styles), "--manifest", str(manifest),
                  "--output", str(out)])
    assert (out / "content" / "in1.jpg").read_bytes() == (bsds / "test" / "a.jpg").read_bytes()
    with Image.open(out / "style" / "tar1.jpg") as style:
        assert max(style.size) == builder.MAX_SIDE and style.size == (1024, 512)
    assert [p.name for p in find_pairs(out)] == ["in1_tar1", "in2_tar2"]


def test_a_changed_source_is_named_in_one_line(sources, tmp_path: Path, capsys) -> None:
    bsds, styles, manifest = sources
    photo(bsds / "test" / "c.jpg", (48, 32), 99)                     # not the photo the manifest hashed
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: builder.main(["--bsds_dir", str(bsds), "--styles_dir", str(styles), "--manifest",
                                       str(manifest), "--output", str(tmp_path / "out")]))
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 1 and "SHA-256 differs for bsds:test/c.jpg" in lines[0]
    assert not (tmp_path / "out").exists()                           # nothing written


@pytest.mark.parametrize("row, message", [
    (["1", "train/a.jpg", "bsds:test/c.jpg", "0" * 64, "0" * 64], "is neither a BSDS500 test photo"),
    (["2", "test/a.jpg", "bsds:test/c.jpg", "0" * 64, "0" * 64], "pair number '2', expected 1"),
    (["1", "test/a.jpg", "bsds:test/a.jpg", "0" * 64, "0" * 64], "is its own style"),
    (["1", "test/a.jpg", "pkg:../x.jpg", "0" * 64, "0" * 64], "is not PACKAGE:PATH"),
    (["1", "test/a.jpg", "bsds:test/c.jpg", "abc", "0" * 64], "is not a SHA-256"),
])
def test_a_bad_manifest_line_is_refused(tmp_path: Path, row: list[str], message: str) -> None:
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(",".join(builder.COLUMNS) + "\n" + ",".join(row) + "\n")
    with pytest.raises(builder.UserError, match=message):
        builder.read_manifest(manifest)


def test_the_large_manifest_pairs_each_style_once_with_package_contents() -> None:
    """validation_pairs_large.csv: 20 pairs of package photos as content (sorted, the first ones used
    again from pair 18 on) with the 20 styles of the 60-pair set, sorted, each once."""
    pairs = builder.read_manifest(builder.LARGE_MANIFEST)
    styles = sorted({pair.style for pair in builder.read_manifest(builder.MANIFEST)})
    contents = sorted({pair.content for pair in pairs})
    assert len(pairs) == 20 and len(contents) == 17
    assert [pair.style for pair in pairs] == styles
    assert [pair.content for pair in pairs] == [contents[i % len(contents)] for i in range(20)]
    assert all(builder.package_source(c) is not None and not c.startswith("bsds:") for c in contents)
    assert not set(contents) & set(styles)
    needed = builder.packages_of(pairs)
    assert set(needed) == {"lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds",
                           "plasma-workspace-wallpapers"}
    assert "usr/share/backgrounds/mate/nature/Storm.jpg" in needed["mate-backgrounds"]   # a content


@pytest.mark.parametrize("content", ["train/a.jpg", "bsds:test/a.jpg", "/usr/share/a.jpg", "pkg:../a.jpg",
                                     "pkg:/usr/a.jpg", "pkg:", "Pkg:usr/a.jpg", "a.jpg"])
def test_a_content_neither_bsds_nor_package_is_one_error_line(tmp_path: Path, capsys, content: str) -> None:
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(",".join(builder.COLUMNS) + f"\n1,{content},pkg:usr/s.jpg,{'0' * 64},{'0' * 64}\n")
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: builder.main(["--manifest", str(manifest), "--styles_dir", str(tmp_path),
                                       "--output", str(tmp_path / "out")]))
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 1
    assert lines[0] == (f"error: {manifest}:2: content {content!r} is neither a BSDS500 test photo "
                        "(test/NAME.jpg) nor a package photo (PACKAGE:PATH)")


@pytest.mark.parametrize("rows, message", [
    ([["1", "pkg:a.jpg", "pkg:s.jpg"], ["2", "pkg:a.jpg", "pkg:s.jpg"]], "pairs 1 and 2 are the same"),
    ([["1", "pkg:a.jpg", "pkg:s.jpg"], ["2", "pkg:b.jpg", "pkg:a.jpg"]],
     "pkg:a.jpg is the content of pair 1 and the style of pair 2"),
    ([["1", "test/a.jpg", "pkg:s.jpg"], ["2", "pkg:b.jpg", "bsds:test/a.jpg"]],
     "bsds:test/a.jpg is the content of pair 1 and the style of pair 2"),
    ([["1", "pkg:a.jpg", "pkg:a.jpg"]], "pkg:a.jpg is its own style"),
])
def test_a_photo_is_not_paired_twice_nor_both_content_and_style(tmp_path: Path, rows, message: str) -> None:
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(",".join(builder.COLUMNS) + "\n"
                        + "".join(",".join(row + ["0" * 64] * 2) + "\n" for row in rows))
    with pytest.raises(builder.UserError, match=message):
        builder.read_manifest(manifest)


def test_package_contents_build_at_their_size_without_bsds(tmp_path: Path, monkeypatch) -> None:
    """A fake package tree: a JPEG content is copied byte for byte (twice, with two styles), a PNG
    content is saved as a JPEG of the same size; --large takes LARGE_MANIFEST into LARGE_OUTPUT."""
    tree = tmp_path / "packages"
    jpeg = photo(tree / "pkg-a" / "usr/share/big.jpg", (96, 64), 1)
    png_path = tree / "pkg-a" / "usr/share/flat.png"
    Image.fromarray(np.full((40, 72, 3), (200, 40, 10), dtype=np.uint8)).save(png_path)
    png = hashlib.sha256(png_path.read_bytes()).hexdigest()
    styles = [photo(tree / "pkg-b" / f"usr/s{i}.jpg", (1500, 900), 10 + i) for i in range(3)]
    manifest = tmp_path / "large.csv"
    with manifest.open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(builder.COLUMNS)
        rows.writerow([1, "pkg-a:usr/share/big.jpg", "pkg-b:usr/s0.jpg", jpeg, styles[0]])
        rows.writerow([2, "pkg-a:usr/share/flat.png", "pkg-b:usr/s1.jpg", png, styles[1]])
        rows.writerow([3, "pkg-a:usr/share/big.jpg", "pkg-b:usr/s2.jpg", jpeg, styles[2]])
    out = tmp_path / "datasets" / "validation_large"
    monkeypatch.setattr(builder, "LARGE_MANIFEST", manifest)
    monkeypatch.setattr(builder, "LARGE_OUTPUT", out)
    builder.main(["--large", "--styles_dir", str(tree)])                  # no --bsds_dir: none needed
    original = (tree / "pkg-a" / "usr/share/big.jpg").read_bytes()
    assert (out / "content" / "in1.jpg").read_bytes() == original == (out / "content" / "in3.jpg").read_bytes()
    with Image.open(out / "content" / "in2.jpg") as converted:
        assert converted.format == "JPEG" and converted.size == (72, 40)
        assert np.abs(np.asarray(converted, dtype=int) - (200, 40, 10)).max() <= 3
    for n in (1, 2, 3):
        with Image.open(out / "style" / f"tar{n}.jpg") as style:
            assert style.size == (1024, 614)
    assert (out / "pairs.csv").read_bytes() == manifest.read_bytes()
    assert [p.name for p in find_pairs(out)] == ["in1_tar1", "in2_tar2", "in3_tar3"]


def test_a_manifest_naming_bsds_photos_needs_bsds_dir(sources, tmp_path: Path, capsys) -> None:
    _, styles, manifest = sources
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: builder.main(["--styles_dir", str(styles), "--manifest", str(manifest),
                                       "--output", str(tmp_path / "out")]))
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and lines == ["error: pairs.csv names BSDS500 photos: give --bsds_dir "
                                              "(the folder holding test/)"]
    assert not (tmp_path / "out").exists()


def test_issue27_item16_a_manifest_that_is_not_utf8_text_is_one_error_line(tmp_path: Path, capsys) -> None:
    """issue 27 item 16: a manifest that is not UTF-8 gave a UnicodeDecodeError traceback; one
    error line now."""
    manifest = tmp_path / "pairs.csv"
    manifest.write_bytes(",".join(builder.COLUMNS).encode() + "\n1,test/café.jpg\n".encode("latin-1"))
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: builder.main(["--manifest", str(manifest), "--styles_dir", str(tmp_path),
                                       "--output", str(tmp_path / "out")]))
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and lines == [lines[0]]
    assert lines[0].startswith(f"error: {manifest} is not a CSV text file in UTF-8")
