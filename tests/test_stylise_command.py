"""``test.py`` as a user meets it: its last line names what it wrote and where, a misspelt path is
one ``error:`` line before any progress bar or model loading, and ``--help`` reads as written."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glfa.inference import Stylizer
from helpers import run_script, write_model


def write_image(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A smooth random RGB image of ``size`` (width, height)."""
    small = np.random.default_rng(seed).uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(small).resize(size, Image.BILINEAR).save(path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> list:
    """``test.py`` flags for a random photo model on the CPU at 32 px."""
    decoder, lct = write_model(tmp_path_factory.mktemp("model"), 1)
    return ["--decoder", decoder, "--LCT", lct, "--device", "cpu", "--content_size", 32, "--style_size", 32,
            "--save_ext", ".png"]


@pytest.fixture
def photos(tmp_path: Path) -> dict[str, Path]:
    """Two content and two style photos in folders, and a one-region map of each in ``maps/``."""
    for index, name in enumerate(("content/a.png", "content/b.png", "style/x.png", "style/y.png")):
        write_image(tmp_path / name, (40, 32), index)
    (tmp_path / "maps").mkdir()
    for name in ("a", "b", "x", "y"):
        Image.new("RGB", (40, 32), (255, 0, 0)).save(tmp_path / "maps" / f"{name}.png")
    return {"root": tmp_path, "content": tmp_path / "content", "style": tmp_path / "style", "maps": tmp_path / "maps"}


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


def test_the_last_line_names_the_results_and_the_folder(model, photos, tmp_path: Path, capsys):
    output = tmp_path / "out"
    code, out, err = run_script("test.py", ["--content_dir", photos["content"], "--style_dir", photos["style"],
                                            "--output", output, *model], capsys)
    assert code == 0, err
    assert last_line(out) == f"wrote 4 results to {output}/"
    assert len(list(output.glob("*_stylized_*.png"))) == 4 and not (output / "contact_sheet.png").exists()

    code, out, err = run_script("test.py", ["--content", photos["content"] / "a.png", "--style",
                                            photos["style"] / "x.png", "--output", output / "one", "--contact_sheet",
                                            *model], capsys)
    assert code == 0, err
    sheet = output / "one" / "contact_sheet.png"
    assert last_line(out) == f"wrote 1 result to {output / 'one'}/ (and {sheet})"
    assert sheet.is_file() and (output / "one" / "a_stylized_x.png").is_file()


def test_skipped_images_end_in_an_error_that_still_says_what_was_written(model, photos, tmp_path: Path, capsys):
    (photos["content"] / "broken.png").write_bytes(b"not an image")
    output = tmp_path / "out"
    code, out, err = run_script("test.py", ["--content_dir", photos["content"], "--style", photos["style"] / "x.png",
                                            "--output", output, *model], capsys)
    assert code == 2 and "Traceback" not in err
    assert last_line(err) == (f"error: 1 image(s) could not be read and were skipped (see warnings above); "
                              f"wrote 2 results to {output}/")


MISSPELT = {
    "--content": (lambda p: ["--content", p["content"] / "c.png", "--style", p["style"] / "x.png"],
                  "--content: image not found: {content}/c.png"),
    "--style": (lambda p: ["--content", p["content"] / "a.png", "--style", p["style"] / "z.png"],
                "--style: image not found: {style}/z.png"),
    "one of several styles": (lambda p: ["--content_dir", p["content"], "--style",
                                         f"{p['style'] / 'x.png'},{p['style'] / 'q.png'},{p['style'] / 'r.png'}",
                                         "--style_interpolation_weights", "1,1,1"],
                              "--style: image not found: {style}/q.png (and 1 more)"),
    "--content_dir": (lambda p: ["--content_dir", p["root"] / "contents", "--style", p["style"] / "x.png"],
                      "folder not found: {root}/contents"),
    "--content_segment": (lambda p: ["--content", p["content"] / "a.png", "--style", p["style"] / "x.png",
                                     "--content_segment", p["maps"] / "A.png", "--style_segment",
                                     p["maps"] / "x.png"],
                          "content map not found: {maps}/A.png"),
    "--style_segment": (lambda p: ["--content", p["content"] / "a.png", "--style", p["style"] / "x.png",
                                   "--content_segment", p["maps"] / "a.png", "--style_segment", p["maps"] / "s.png"],
                        "style map not found: {maps}/s.png"),
    "--content_segment_dir": (lambda p: ["--content_dir", p["content"], "--style_dir", p["style"],
                                         "--content_segment_dir", p["root"] / "map", "--style_segment_dir",
                                         p["maps"]],
                              "--content_segment_dir {root}/map is not a folder"),
}


@pytest.mark.parametrize("case", MISSPELT, ids=list(MISSPELT))
def test_a_misspelt_path_is_one_error_line_before_any_work(case, model, photos, tmp_path: Path, capsys,
                                                            monkeypatch: pytest.MonkeyPatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the path was checked")

    monkeypatch.setattr(Stylizer, "from_checkpoints", no_model)
    flags, message = MISSPELT[case]
    code, out, err = run_script("test.py", [*flags(photos), "--output", tmp_path / "out", *model], capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == ["error: " + message.format(**photos)]     # nothing before it: no progress bar
    assert not (tmp_path / "out").exists()


def test_help_shows_the_examples_as_written(capsys):
    code, out, _ = run_script("test.py", ["--help"], capsys)
    assert code == 0
    description = out[out.index("Stylise every content image"):out.index("\noptions:")].splitlines()
    assert not [line for line in description if re.search(r"\S {3,}\S", line)], description
    first = next(index for index, line in enumerate(description) if "--content photo.jpg" in line)
    assert description[first].endswith(" \\")                  # a shell continuation, copied as it is shown
    assert description[first + 1].lstrip().startswith("--content_segment photo_seg.png --style_segment")
    assert max(len(line) for line in description) <= 100
