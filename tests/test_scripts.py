"""train.py and test.py end to end on tiny folders, and every bad input ending in one clear line.

The issue's "Done when" run and a few bad inputs go through real subprocesses; the many other
bad-input cases run the scripts in-process (``runpy`` with ``__name__ == "__main__"``, so through
the same ``run_main`` exit path) to keep the file within seconds. Any exception other than
``SystemExit`` escaping a script fails the test: that would have been a traceback.
"""
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glfa.checkpoint import load_decoder, load_encoder, load_transform, save_state_dict
from helpers import lively, run_script
from net import build_decoder, build_encoder, build_transform

REPO_ROOT = Path(__file__).resolve().parents[1]
PHOTOS = REPO_ROOT / "test"


def photo(name: str, size: tuple[int, int]) -> Image.Image:
    """A real photograph from ``test/`` resized to ``size`` (width, height)."""
    return Image.open(PHOTOS / name).convert("RGB").resize(size, Image.LANCZOS)


def write_16_bit(path: Path, size: tuple[int, int]) -> None:
    grey = np.asarray(photo("content/coast_dune.jpg", size).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(path)


def write_truncated(path: Path) -> None:
    buffer = io.BytesIO()
    photo("content/forest_path.jpg", (64, 64)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[:300])


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Tiny content and style folders holding every image mode, an odd size and a 5×5 image."""
    root = tmp_path_factory.mktemp("data")
    content, style = root / "content", root / "style"
    (content / "sub").mkdir(parents=True)
    style.mkdir()
    photo("content/forest_path.jpg", (45, 37)).save(content / "rgb_odd.jpg", quality=95)
    photo("content/coast_dune.jpg", (33, 41)).convert("L").save(content / "grey.png")
    rgba = photo("content/storm_road.jpg", (40, 40)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((40, 40)))
    rgba.save(content / "sub" / "rgba.png")
    photo("content/forest_path.jpg", (48, 36)).convert("CMYK").save(content / "cmyk.jpg", quality=95)
    write_16_bit(content / "sub" / "grey16.png", (36, 50))
    photo("content/coast_dune.jpg", (5, 5)).save(content / "tiny.png")
    (content / "notes.txt").write_text("not an image, ignored")
    photo("style/sunset_boats.jpg", (48, 32)).save(style / "coffee.jpg", quality=95)
    photo("style/night_lake.jpg", (48, 32)).quantize(64).save(style / "rocket.png")      # palette image
    return {"content": content, "style": style, "root": root}


@pytest.fixture(scope="module")
def vgg(tmp_path_factory) -> Path:
    """The real relu3_1 encoder from ``../shared`` when present, else one with random weights (same layout)."""
    shared = Path(os.environ.get("SHARED_DIR") or REPO_ROOT.parent / "shared")
    real = shared / "models" / "vgg_normalised_conv3_1.pth"
    if real.is_file():
        return real
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg_random_relu3_1.pth"
    save_state_dict(lively(build_encoder("photo")), path)
    return path


@pytest.fixture(scope="module")
def trained(folders, vgg, tmp_path_factory) -> dict[str, Path]:
    """The issue's "Done when" training command, as a subprocess, on the tiny folders."""
    out = tmp_path_factory.mktemp("run")
    command = [sys.executable, "train.py", f"--content_dir={folders['content']}", f"--style_dir={folders['style']}",
               f"--vgg={vgg}", "--max_iter=3", "--save_model_interval=3", "--batch_size=2",
               "--device=cpu", "--image_size=48", "--crop_size=32", "--n_threads=0",
               f"--save_dir={out / 'experiments'}", f"--log_dir={out / 'logs'}"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "warning" not in result.stderr
    return {"experiments": out / "experiments", "logs": out / "logs", "vgg": vgg,
            "decoder": out / "experiments" / "decoder_iter_3.pth.tar",
            "lct": out / "experiments" / "lct_iter_3.pth.tar"}


@pytest.fixture(scope="module")
def vivid(vgg, tmp_path_factory) -> dict[str, Path]:
    """Decoder and LCT checkpoints with He-initialised random weights (the decoder's output scaled
    to sit around 0.5): unlike a 3-iteration model they map different features to clearly
    different images, whatever encoder is at hand."""
    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("vivid")
    decoder = lively(build_decoder("photo"))
    with torch.no_grad():
        decoder[-1].weight.mul_(0.3)
        decoder[-1].bias.fill_(0.5)
    save_state_dict(decoder, out / "decoder.pth.tar")
    save_state_dict(lively(build_transform("lct")), out / "lct.pth.tar")
    return {"vgg": vgg, "decoder": out / "decoder.pth.tar", "lct": out / "lct.pth.tar"}


def assert_one_error_line(code: int, err: str, *fragments: str) -> None:
    """Non-zero exit, no traceback, and stderr ends in exactly one ``error:`` line (or argparse's usage error)."""
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ") or ": error: " in line]
    assert len(errors) == 1, err
    assert lines[-1] == errors[0] and lines[-1].startswith(("error: ", "train.py: error: ", "test.py: error: ")), err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def stylise_args(trained: dict[str, Path], output: Path, *extra) -> list:
    return ["--vgg", trained["vgg"], "--decoder", trained["decoder"], "--LCT", trained["lct"],
            "--device", "cpu", "--output", output, "--save_ext", ".png", *extra]


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------

def test_training_writes_checkpoints_grid_and_event_file(trained):
    files = sorted(p.name for p in trained["experiments"].iterdir())
    assert {"decoder_iter_3.pth.tar", "lct_iter_3.pth.tar", "grid_iter_3.png"} <= set(files)
    load_decoder(trained["decoder"], "photo")
    assert set(load_transform(trained["lct"], "photo").state_dict()) == set(build_transform("lct").state_dict())
    # grid: rows content/style/result, two 32-px images per row, 2-px padding
    assert Image.open(trained["experiments"] / "grid_iter_3.png").size == (2 * 34 + 2, 3 * 34 + 2)
    events = list(trained["logs"].rglob("events.out.tfevents.*"))
    assert len(events) == 1
    data = events[0].read_bytes()
    for tag in (b"loss/content", b"loss/style", b"loss/total"):
        assert tag in data


def test_test_py_stylises_every_pair_at_the_content_size(trained, folders, tmp_path):
    output = tmp_path / "out"
    command = [sys.executable, "test.py", "--content_dir", folders["content"], "--style_dir", folders["style"],
               "--content_size", "40", "--style_size", "32", *stylise_args(trained, output)]
    result = subprocess.run(list(map(str, command)), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    sources = {"rgb_odd": (45, 37), "grey": (33, 41), "sub/rgba": (40, 40), "cmyk": (48, 36),
               "sub/grey16": (36, 50), "tiny": (5, 5)}                # sub-folders are kept in the output
    expected = {f"{c}_stylized_{s}.png" for c in sources for s in ("coffee", "rocket")}
    assert {p.relative_to(output).as_posix() for p in output.rglob("*.png")} == expected
    for content, (width, height) in sources.items():
        out_width, out_height = Image.open(output / f"{content}_stylized_coffee.png").size
        scale = 40 / min(width, height)                      # shorter side resized to --content_size
        assert min(out_width, out_height) == 40
        assert abs(out_width - width * scale) <= 1 and abs(out_height - height * scale) <= 1


@pytest.mark.parametrize("size", [(37, 29), (45, 37), (64, 48)])
def test_original_size_is_kept_for_odd_sizes(trained, tmp_path, capsys, size):
    photo("content/coast_dune.jpg", size).save(tmp_path / "c.png")
    code, _, err = run_script("test.py", ["--content", tmp_path / "c.png", "--style", PHOTOS / "style/night_lake.jpg",
                                          "--content_size", 0, "--style_size", 32,
                                          *stylise_args(trained, tmp_path / "out")], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "c_stylized_night_lake.png").size == size


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64) / 255


def test_single_files_interpolation_alpha_and_preserve_color(vivid, tmp_path, capsys):
    content, style_a, style_b = tmp_path / "c.png", tmp_path / "a.png", tmp_path / "b.png"
    photo("content/forest_path.jpg", (40, 32)).save(content)
    photo("style/sunset_boats.jpg", (36, 24)).save(style_a)
    photo("style/dusk_lake.jpg", (32, 32)).save(style_b)
    output = tmp_path / "out"
    base = ["--content", content, "--content_size", 0, "--style_size", 0]

    def stylise(*extra) -> None:
        code, _, err = run_script("test.py", [*base, *stylise_args(vivid, output), *extra], capsys)
        assert code == 0, err

    stylise("--style", style_a)
    single = read(output / "c_stylized_a.png")
    assert single.shape == (32, 40, 3)

    # weights 1,0 mix the first style only: the same image as stylising with it alone
    stylise("--style", f"{style_a},{style_b}", "--style_interpolation_weights", "1,0")
    assert np.abs(read(output / "c_interpolation.png") - single).max() <= 1 / 255 + 1e-9
    stylise("--style", f"{style_a},{style_b}", "--style_interpolation_weights", "1,1", "--output", tmp_path / "mix")
    assert np.abs(read(tmp_path / "mix" / "c_interpolation.png") - single).max() > 2 / 255

    # alpha 0, unfinished, decodes the content's own features: decoder(encoder(content)), worked out here
    stylise("--style", style_a, "--alpha", 0, "--no-smooth", "--output", tmp_path / "alpha0")
    encoder = load_encoder(vivid["vgg"], "photo")
    decoder = load_decoder(vivid["decoder"], "photo")
    image = torch.from_numpy(read(content)).permute(2, 0, 1).float()[None]
    with torch.no_grad():
        expected = decoder(encoder(image))[0].clamp(0, 1).permute(1, 2, 0).numpy()
    assert np.abs(read(tmp_path / "alpha0" / "c_stylized_a.png") - expected).max() <= 1.5 / 255

    stylise("--style", style_a, "--preserve_color", "--output", tmp_path / "keep")
    kept = read(tmp_path / "keep" / "c_stylized_a.png")
    assert kept.shape == single.shape and np.abs(kept - single).max() > 2 / 255


def test_sct_flag_names_the_transform_file_and_applies_sct(vivid, tmp_path, capsys):
    """CCPL's ``--SCT`` takes the same file as ``--LCT`` but applies it without the AdaIN skip."""
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    photo("content/forest_path.jpg", (40, 32)).save(content)
    photo("style/sunset_boats.jpg", (36, 24)).save(style)
    common = ["--content", content, "--style", style, "--content_size", 0, "--style_size", 0,
              "--vgg", vivid["vgg"], "--decoder", vivid["decoder"], "--device", "cpu", "--save_ext", ".png"]
    results = {}
    for flags in (["--LCT", vivid["lct"]], ["--SCT", vivid["lct"]], ["--LCT", vivid["lct"], "--transform", "sct"]):
        output = tmp_path / "-".join(str(f) for f in flags[::2])
        code, _, err = run_script("test.py", [*common, *flags, "--output", output], capsys)
        assert code == 0, err
        results[tuple(flags[::2])] = read(output / "c_stylized_s.png")
    lct, sct, sct_explicit = results.values()
    assert np.array_equal(sct, sct_explicit)
    assert np.abs(sct - lct).max() > 2 / 255


def test_messy_training_folder_skips_unreadable_files_and_counts_them(folders, vgg, tmp_path, capsys):
    messy = tmp_path / "messy"
    messy.mkdir()
    (messy / "a_text.jpg").write_text("not a jpeg")
    write_truncated(messy / "b_cut.jpg")
    photo("content/coast_dune.jpg", (40, 40)).save(messy / "c_good.png")
    photo("content/storm_road.jpg", (40, 40)).save(messy / "d_good.png")
    code, out, err = run_script("train.py", [
        "--content_dir", messy, "--style_dir", folders["style"], "--vgg", vgg, "--max_iter", 2,
        "--save_model_interval", 2, "--batch_size", 2, "--device", "cpu", "--image_size", 40, "--crop_size", 32,
        "--n_threads", 0, "--save_dir", tmp_path / "exp", "--log_dir", tmp_path / "logs"], capsys)
    assert code == 0, err
    warnings = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "a_text.jpg" in warnings[0] and "b_cut.jpg" in warnings[1]
    assert "skipped 2 unreadable image(s)" in out
    assert (tmp_path / "exp" / "decoder_iter_2.pth.tar").is_file()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_demo_script_trains_and_stylises_the_bundled_photos(vgg, tmp_path):
    """README's first command, shortened (2 iterations on 32-px crops, 48-px results), run from another folder."""
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "DEMO_ITERS": "2", "DEMO_CROP": "32",
           "DEMO_SIZE": "48", "DEMO_SAVE_DIR": str(tmp_path / "exp"), "DEMO_OUTPUT": str(tmp_path / "out")}
    demo = str(REPO_ROOT / "scripts" / "demo.sh")
    result = subprocess.run(["bash", demo, str(vgg)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "exp" / "decoder_iter_2.pth.tar").is_file() and (tmp_path / "exp" / "grid_iter_2.png").is_file()
    contents = sorted(p.stem for p in (PHOTOS / "content").iterdir() if p.suffix == ".jpg")
    styles = sorted(p.stem for p in (PHOTOS / "style").iterdir() if p.suffix == ".jpg")
    assert len(contents) >= 3 and len(styles) >= 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{c}_stylized_{s}.jpg" for c in contents for s in styles)
    for content in contents:
        width, height = Image.open(PHOTOS / "content" / f"{content}.jpg").size
        out_width, out_height = Image.open(tmp_path / "out" / f"{content}_stylized_{styles[0]}.jpg").size
        assert min(out_width, out_height) == 48 and abs(out_width / out_height - width / height) < 0.05

    missing = subprocess.run(["bash", demo, str(tmp_path / "no_such_vgg.pth")], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert_one_error_line(missing.returncode, missing.stderr, "no_such_vgg.pth")


# --------------------------------------------------------------------------------------------
# Bad input: one clear line, non-zero exit, no traceback
# --------------------------------------------------------------------------------------------

def train_args(folders, encoder, tmp_path, **changes) -> list:
    flags = {"content_dir": folders["content"], "style_dir": folders["style"], "vgg": encoder, "max_iter": 1,
             "batch_size": 1, "device": "cpu", "image_size": 40, "crop_size": 32, "n_threads": 0,
             "save_dir": tmp_path / "exp", "log_dir": tmp_path / "logs"}
    flags.update(changes)
    return [f"--{key}={value}" for key, value in flags.items()]


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    (tmp_path / "empty").mkdir()
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "a.jpg").write_text("text")
    write_truncated(unreadable / "b.jpg")
    (tmp_path / "notes.txt").write_text("hello")
    write_truncated(tmp_path / "cut.jpg")
    photo("content/coast_dune.jpg", (5, 5)).save(tmp_path / "tiny.png")
    save_state_dict(build_transform("lct", "art"), tmp_path / "art_lct.pth.tar")
    return {"empty": tmp_path / "empty", "unreadable": unreadable, "text": tmp_path / "notes.txt",
            "cut": tmp_path / "cut.jpg", "tiny": tmp_path / "tiny.png", "art_lct": tmp_path / "art_lct.pth.tar",
            "missing": tmp_path / "missing"}


TRAIN_CASES = {
    "missing folder": ({"content_dir": "missing"}, "not found"),
    "empty folder": ({"style_dir": "empty"}, "no image files"),
    "unreadable folder": ({"content_dir": "unreadable"}, "none of the 2 image files"),
    "vgg missing": ({"vgg": "missing"}, "checkpoint not found"),
    "vgg is text": ({"vgg": "text"}, "not a readable PyTorch checkpoint"),
    "vgg too short for art": ({"training_mode": "art", "crop_size": 40, "image_size": 48}, "relu4_1"),
    "num_l 9": ({"num_l": 9}, "--num_l"),
    "batch_size 0": ({"batch_size": 0}, "--batch_size"),
    "lr -1": ({"lr": -1}, "--lr"),
    "training_mode xyz": ({"training_mode": "xyz"}, "--training_mode"),
    "crop bigger than image_size": ({"crop_size": 64}, "--image_size"),
    "device nonsense": ({"device": "gpu0"}, "--device"),
    "save_dir is a file": ({"save_dir": "text"}, "notes.txt"),
    "log_dir is a file": ({"log_dir": "text"}, "notes.txt"),
}


@pytest.mark.parametrize("case", TRAIN_CASES, ids=list(TRAIN_CASES))
def test_train_bad_input(case, folders, vgg, bad_files, tmp_path, capsys):
    changes, fragment = TRAIN_CASES[case]
    changes = {k: bad_files.get(v, v) if isinstance(v, str) else v for k, v in changes.items()}
    code, _, err = run_script("train.py", train_args(folders, vgg, tmp_path, **changes), capsys)
    assert_one_error_line(code, err, fragment)
    assert not list(tmp_path.glob("exp/*.pth.tar"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_asked_for_without_a_gpu(folders, vgg, trained, tmp_path, capsys):
    code, _, err = run_script("train.py", train_args(folders, vgg, tmp_path, device="cuda"), capsys)
    assert_one_error_line(code, err, "no CUDA GPU")
    code, _, err = run_script("test.py", ["--content", PHOTOS / "content/coast_dune.jpg",
                                          "--style", PHOTOS / "style/night_lake.jpg",
                                          *stylise_args(trained, tmp_path / "out"), "--device", "cuda"], capsys)
    assert_one_error_line(code, err, "no CUDA GPU")


TEST_CASES = {
    "content missing": ({"content": "missing"}, "not found"),
    "content is text": ({"content": "text"}, "cannot read image"),
    "content truncated": ({"content": "cut"}, "cannot read image"),
    "style truncated": ({"style": "cut"}, "cannot read image"),
    "tiny content at original size": ({"content": "tiny", "content_size": 0}, "at least"),
    "tiny style at original size": ({"style": "tiny", "style_size": 0}, "at least"),
    "content_dir missing": ({"content_dir": "missing"}, "not found"),
    "content_dir empty": ({"content_dir": "empty"}, "no content images"),
    "style_dir unreadable": ({"style_dir": "unreadable"}, "none of the style images"),
    "decoder is text": ({"decoder": "text"}, "not a readable PyTorch checkpoint"),
    "decoder is a transform": ({"decoder": "lct"}, "missing layers"),
    "decoder of the wrong shape": ({"decoder": "misshapen"}, "has shape"),
    "LCT is a decoder": ({"LCT": "decoder"}, "no cnet.0.weight"),
    "art LCT in photo mode": ({"LCT": "art_lct"}, "art-mode transform"),
    "vgg missing": ({"vgg": "missing"}, "checkpoint not found"),
    "art mode with a relu3_1 vgg": ({"testing_mode": "art"}, "relu4_1"),
    "alpha 2": ({"alpha": 2}, "--alpha"),
    "testing_mode xyz": ({"testing_mode": "xyz"}, "--testing_mode"),
    "weights do not match styles": ({"style_interpolation_weights": "1,2,3"}, "3 interpolation weights"),
    "several styles without weights": ({"style": f"{PHOTOS / 'style/night_lake.jpg'},{PHOTOS / 'style/sunset_boats.jpg'}"},
                                       "--style_interpolation_weights"),
    "save_ext unknown": ({"save_ext": ".xyz"}, "--save_ext"),
    "output is a file": ({"output": "text"}, "notes.txt"),
}


@pytest.mark.parametrize("case", TEST_CASES, ids=list(TEST_CASES))
def test_test_py_bad_input(case, trained, bad_files, tmp_path, capsys):
    changes, fragment = TEST_CASES[case]
    state = torch.load(trained["decoder"], weights_only=True)
    state["11.weight"] = torch.zeros(8, 8, 3, 3)
    torch.save(state, tmp_path / "misshapen.pth")
    known = {**bad_files, "lct": trained["lct"], "decoder": trained["decoder"], "misshapen": tmp_path / "misshapen.pth"}
    flags = {"content": PHOTOS / "content/coast_dune.jpg", "style": PHOTOS / "style/night_lake.jpg", "vgg": trained["vgg"],
             "decoder": trained["decoder"], "LCT": trained["lct"], "device": "cpu", "output": tmp_path / "out",
             "content_size": 32, "style_size": 32}
    for key, value in changes.items():
        if key.endswith("_dir"):
            flags.pop(key.removesuffix("_dir"))
        flags[key] = known.get(value, value) if isinstance(value, str) else value
    code, _, err = run_script("test.py", [f"--{k}={v}" for k, v in flags.items()], capsys)
    assert_one_error_line(code, err, fragment)


def test_test_py_folder_with_an_unreadable_file_keeps_the_good_results(trained, bad_files, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    photo("content/coast_dune.jpg", (40, 32)).save(folder / "good.png")
    (folder / "bad.jpg").write_text("text")
    code, _, err = run_script("test.py", ["--content_dir", folder, "--style", PHOTOS / "style/night_lake.jpg",
                                          "--content_size", 0, "--style_size", 32,
                                          *stylise_args(trained, tmp_path / "out")], capsys)
    assert_one_error_line(code, err, "1 image(s) could not be read")
    assert "warning: skipping unreadable image" in err and "bad.jpg" in err
    assert Image.open(tmp_path / "out" / "good_stylized_night_lake.png").size == (40, 32)


def test_bad_input_in_a_real_process(trained, bad_files, tmp_path):
    """The one-line contract holds for a real process too (exit status and all of stderr); the demo
    test above checks a failing train.py process the same way."""
    command = ["test.py", "--content", PHOTOS / "content/coast_dune.jpg", "--style", PHOTOS / "style/night_lake.jpg",
               *stylise_args(trained, tmp_path / "out"), "--decoder", bad_files["text"]]
    result = subprocess.run([sys.executable, *map(str, command)], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert_one_error_line(result.returncode, result.stderr, "not a readable PyTorch checkpoint")


def test_contact_sheet_shows_every_pair(trained, tmp_path, capsys):
    output = tmp_path / "out"
    code, _, err = run_script("test.py", ["--content_dir", PHOTOS / "content", "--style", PHOTOS / "style/fog_pier.jpg",
                                          "--content_size", 32, "--style_size", 32, "--contact_sheet",
                                          *stylise_args(trained, output)], capsys)
    assert code == 0, err
    assert len(list(output.glob("*_stylized_fog_pier.png"))) == 3
    with Image.open(output / "contact_sheet.png") as sheet:
        assert sheet.height >= 3 * 128 and sheet.width > 3 * 32          # three rows of content, style, result


# --------------------------------------------------------------------------------------------
# scripts/interpolate_weights.py
# --------------------------------------------------------------------------------------------

def test_interpolate_weights_mixes_two_checkpoints_and_refuses_others(tmp_path: Path, capsys):
    torch.manual_seed(0)
    first, second = build_transform("lct", "photo"), build_transform("lct", "photo")
    save_state_dict(first, tmp_path / "a.pth.tar")
    save_state_dict(second, tmp_path / "b.pth.tar")
    code, out, err = run_script("scripts/interpolate_weights.py", [tmp_path / "a.pth.tar", tmp_path / "b.pth.tar",
                                                                   "--t", "0.25", "--output", tmp_path / "m.pth.tar"],
                                capsys)
    assert code == 0, err
    mixed = load_transform(tmp_path / "m.pth.tar", "photo").state_dict()
    a, b = first.state_dict(), second.state_dict()
    for key in a:                                                   # by hand: 0.75·A + 0.25·B
        torch.testing.assert_close(mixed[key], 0.75 * a[key] + 0.25 * b[key])
    # a decoder is not a transform; --t outside [0, 1]; the output over an input: one line each
    save_state_dict(build_decoder("photo"), tmp_path / "d.pth.tar")
    for argv, phrase in (([tmp_path / "a.pth.tar", tmp_path / "d.pth.tar", "--t", "0.5", "--output", tmp_path / "x"],
                          "hold different tensors"),
                         ([tmp_path / "a.pth.tar", tmp_path / "b.pth.tar", "--t", "1.5", "--output", tmp_path / "x"],
                          "--t must be from 0 to 1"),
                         ([tmp_path / "a.pth.tar", tmp_path / "b.pth.tar", "--t", "0.5", "--output",
                           tmp_path / "b.pth.tar"], "is one of the inputs")):
        code, out, err = run_script("scripts/interpolate_weights.py", argv, capsys)
        assert code != 0 and phrase in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()
