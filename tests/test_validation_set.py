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
    (["1", "train/a.jpg", "bsds:test/c.jpg", "0" * 64, "0" * 64], "is not a BSDS500 test photo"),
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
