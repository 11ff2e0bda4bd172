"""Inputs that once lost results, gave silently wrong images, tracebacks or long hangs: links to
themselves, colliding output names, non-finite weights and flags, very long images, misnamed
files and flags, and the progress of tiled stylisation."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glfa.checkpoint import (CheckpointError, load_decoder, load_encoder, load_state_dict, load_transform,
                             save_state_dict, save_training_state)
from glfa.cli import run_main
from glfa.images import list_images
from helpers import copy_repository, write_model
from net import build_encoder

REPO = Path(__file__).resolve().parents[1]


def load_command(name: str):
    spec = importlib.util.spec_from_file_location(f"command_{name}", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stylise_command, train_command, video_command = (load_command(name) for name in ("test", "train", "video"))


def write_image(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A smooth random RGB image of ``size`` (width, height)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(small).resize(size, Image.BILINEAR).save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_model(tmp_path_factory.mktemp("model"), 1)


def stylise(capsys: pytest.CaptureFixture, model: tuple[Path, Path], *argv) -> tuple[int, str, str]:
    """test.py in this process with the random model: exit status, stdout, stderr."""
    flags = ["--decoder", model[0], "--LCT", model[1], "--device", "cpu", "--save_ext", ".png", *argv]
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: stylise_command.main([str(flag) for flag in flags]))
        sys.exit(0)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def error_line(code: int, err: str) -> str:
    """The one ``error:`` line a failed command printed (status 2, no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err and lines and lines[-1].startswith("error: "), err[-2000:]
    assert sum(line.startswith("error: ") for line in lines) == 1, err[-2000:]
    return lines[-1]


# --------------------------------------------------------------------------------------------
# Data loss
# --------------------------------------------------------------------------------------------

def test_a_link_to_itself_skips_only_that_entry(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for index, name in enumerate(("a.jpg", "m.jpg", "z.jpg")):
        write_image(tmp_path / name, (20, 20), index)
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "m.jpg", "z.jpg"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipping") and "loop.jpg" in warnings[0]


def test_outputs_keep_sub_folders_and_never_overwrite_each_other(model, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    contents = tmp_path / "content"
    for seed, name in enumerate(("a/x.jpg", "b/x.jpg", "b/x.png", "top.jpg")):
        write_image(contents / name, (40, 32), seed)
    styles = tmp_path / "style"
    write_image(styles / "s.jpg", (32, 32), 10)
    write_image(styles / "p" / "s.jpg", (32, 32), 11)
    output = tmp_path / "out"
    code, _, err = stylise(capsys, model, "--content_dir", contents, "--style_dir", styles, "--content_size", 32,
                           "--style_size", 32, "--output", output)
    assert code == 0, err[-2000:]
    written = sorted(p.relative_to(output).as_posix() for p in output.rglob("*.png"))
    assert written == sorted(f"{content}_stylized_{style}.png" for content in ("a/x", "b/x_jpg", "b/x_png", "top")
                             for style in ("s", "p_s"))
    images = {name: np.asarray(Image.open(output / name)) for name in written}
    for style in ("s", "p_s"):
        same_style = [image for name, image in images.items() if name.endswith(f"_stylized_{style}.png")]
        assert all(not np.array_equal(one, other) for i, one in enumerate(same_style) for other in same_style[i + 1:])


def test_named_files_with_one_name_do_not_overwrite_each_other(model, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    first = write_image(tmp_path / "a" / "x.jpg", (40, 32), 1)
    second = write_image(tmp_path / "b" / "x.jpg", (40, 32), 2)
    style = write_image(tmp_path / "s.jpg", (32, 32), 3)
    code, _, err = stylise(capsys, model, "--content", f"{first},{second}", "--style", style, "--content_size", 32,
                           "--style_size", 32, "--output", tmp_path / "out")
    assert code == 0, err[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x_jpg_2_stylized_s.png", "x_jpg_stylized_s.png"]


def test_issue27_item3_test_py_never_writes_over_an_input(model, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """issue 27 item 3: with the output folder the content folder, an input named like an output is
    not written over: one error line, and every input as it was."""
    folder = tmp_path / "photos"
    write_image(folder / "c.png", (40, 32), 1)
    write_image(folder / "c_stylized_s.png", (40, 32), 2)       # an input named like c's output
    style = write_image(tmp_path / "s.png", (32, 32), 3)
    before = {path: path.read_bytes() for path in folder.iterdir()}
    code, _, err = stylise(capsys, model, "--content_dir", folder, "--style", style, "--content_size", 32,
                           "--style_size", 32, "--output", folder)
    assert "c_stylized_s.png is one of the files this run reads" in error_line(code, err)
    assert {path: path.read_bytes() for path in folder.iterdir()} == before


def test_issue27_item3_video_py_never_writes_over_its_frames_or_maps(model, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """issue 27 item 3: video.py on a frame folder named frames/ with --output its parent (as
    ``python video.py output/video/frames`` with the default --output) would replace every frame;
    a maps folder where the frames go likewise. Refused before any work, nothing written."""
    frames = tmp_path / "x" / "frames"
    for index in range(3):
        write_image(frames / f"f{index}.png", (32, 32), index)
    style = write_image(tmp_path / "s.png", (32, 32), 9)
    before = {path: path.read_bytes() for path in frames.iterdir()}
    for extra, output in (([], tmp_path / "x"),
                          (["--style_segment", style, "--content_segment_dir", frames], tmp_path / "x")):
        with pytest.raises(SystemExit) as exit_info:
            run_main(lambda: video_command.main([str(flag) for flag in (
                frames, "--style", style, "--decoder", model[0], "--LCT", model[1], "--device", "cpu",
                "--output", output, "--flow", "none", *extra)]))
        assert "f0.png is one of the files this run reads" in error_line(exit_info.value.code, capsys.readouterr().err)
    assert {path: path.read_bytes() for path in frames.iterdir()} == before
    assert sorted(path.name for path in (tmp_path / "x").iterdir()) == ["frames"]


# --------------------------------------------------------------------------------------------
# Silently wrong results
# --------------------------------------------------------------------------------------------

def test_weights_holding_nan_or_inf_are_refused(model, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    decoder, transform = (load_state_dict(path) for path in model)
    decoder[next(iter(decoder))].view(-1)[3] = float("nan")
    transform["cnet.0.weight"].view(-1)[0] = float("inf")
    encoder = build_encoder("photo").state_dict()
    encoder["2.bias"][1] = float("-inf")
    for state, name in ((decoder, "decoder.pth"), (transform, "lct.pth"), (encoder, "vgg.pth")):
        save_state_dict(state, tmp_path / name)
    for load, name, key in ((load_decoder, "decoder.pth", next(iter(decoder))),
                            (load_transform, "lct.pth", "cnet.0.weight"), (load_encoder, "vgg.pth", "2.bias")):
        with pytest.raises(CheckpointError, match=f"{re.escape(key)} holds non-finite"):
            load(tmp_path / name, "photo")
    content = write_image(tmp_path / "c.jpg", (32, 32), 1)
    code, _, err = stylise(capsys, (tmp_path / "decoder.pth", model[1]), "--content", content, "--style", content,
                           "--output", tmp_path / "out")
    assert "non-finite" in error_line(code, err) and not (tmp_path / "out").exists()


FLOAT_FLAGS = {
    "train.py": ["--lr", "--lr_decay", "--content_weight", "--style_weight", "--wce_weight", "--kl_weight", "--tau"],
    "test.py": ["--alpha", "--style_interpolation_weights"],
    "video.py": ["--alpha", "--fps"],
}
REQUIRED = {"train.py": ["--content_dir", "c", "--style_dir", "s"],
            "test.py": ["--content", "c.jpg", "--style", "a.jpg,b.jpg", "--style_interpolation_weights", "1,1"],
            "video.py": ["--frames_dir", "f", "--style", "s.jpg"]}
COMMANDS = {"train.py": train_command, "test.py": stylise_command, "video.py": video_command}


def test_non_finite_or_overflowing_float_flags_are_refused(capsys: pytest.CaptureFixture) -> None:
    for command, flags in FLOAT_FLAGS.items():
        for flag in flags:
            values = ["nan", "inf", "-inf", "1e400"]
            if flag == "--style_interpolation_weights":
                values += ["1,nan", "1,inf", "1e308,1e308"]
            for value in values:
                with pytest.raises(SystemExit) as exit_info:
                    COMMANDS[command].parse_args([*REQUIRED[command], flag, value])
                err = capsys.readouterr().err
                assert exit_info.value.code == 2 and flag in err, f"{command} {flag} {value} was accepted"


def test_a_long_thin_image_is_capped_with_a_note(model, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert stylise_command.parse_args(["--content", "c.jpg", "--style", "s.jpg"]).max_size == 4096
    content = write_image(tmp_path / "long.jpg", (100, 400), 1)
    style = write_image(tmp_path / "s.jpg", (32, 32), 2)
    code, out, err = stylise(capsys, model, "--content", content, "--style", style, "--content_size", 64,
                             "--style_size", 32, "--max_size", 128, "--output", tmp_path / "out")
    assert code == 0, err[-2000:]
    assert Image.open(tmp_path / "out" / "long_stylized_s.png").size == (32, 128)
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "long.jpg" in notes[0] and "64×256" in notes[0] and "--max_size 128" in notes[0]


# --------------------------------------------------------------------------------------------
# Messages that say what is wrong and what to do
# --------------------------------------------------------------------------------------------

def test_a_stray_comma_or_a_folder_as_a_file_is_named(model, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = write_image(tmp_path / "a.jpg", (32, 32), 1)
    code, _, err = stylise(capsys, model, "--content", image, "--style", f"{image},", "--style_interpolation_weights",
                           "1,1", "--output", tmp_path / "out")
    error = error_line(code, err)
    assert "--style" in error and "empty" in error and "not found: ." not in error
    code, _, err = stylise(capsys, model, "--content", tmp_path, "--style", image, "--output", tmp_path / "out")
    error = error_line(code, err)
    assert "folder" in error and "--content_dir" in error


def test_issue20_14_a_stray_comma_is_named_before_the_interpolation_weights(model, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    """Case 14: ``--style a.jpg,`` asked for --style_interpolation_weights before naming the stray comma."""
    image = write_image(tmp_path / "a.jpg", (32, 32), 1)
    for flag, names in (("--style", f"{image},"), ("--style", f",{image}"), ("--style", f"{image},,{image}"),
                        ("--content", f"{image},")):
        other = "--content" if flag == "--style" else "--style"
        code, _, err = stylise(capsys, model, flag, names, other, image, "--output", tmp_path / "out")
        error = error_line(code, err)
        assert error == f"error: {flag} {names!r} holds an empty name (a stray comma?)", error
        assert len([line for line in err.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "out").exists()


def test_fp16_on_the_cpu_is_refused_in_one_line(model, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = write_image(tmp_path / "a.jpg", (32, 32), 1)
    code, _, err = stylise(capsys, model, "--content", image, "--style", image, "--amp", "fp16",
                           "--output", tmp_path / "out")
    assert "fp16" in error_line(code, err)


def test_training_states_and_swapped_files_are_recognised(model, tmp_path: Path) -> None:
    state = tmp_path / "training_state_iter_1.pth"
    save_training_state({"iteration": 1, "decoder": load_state_dict(model[0])}, state)
    for load, what in ((load_decoder, "decoder_iter_N.pth.tar"), (load_transform, "lct_iter_N.pth.tar"),
                       (load_encoder, "--vgg")):
        with pytest.raises(CheckpointError, match=f"is a training state.*{re.escape(what)}"):
            load(state, "photo")
    decoder, transform = model
    with pytest.raises(CheckpointError, match="holds a transform.*--decoder and --LCT swapped"):
        load_decoder(transform, "photo")
    with pytest.raises(CheckpointError, match="holds a decoder.*--decoder and --LCT swapped"):
        load_transform(decoder, "photo")


def test_missing_files_at_default_paths_say_what_to_do(tmp_path: Path) -> None:
    clone = copy_repository(tmp_path / "clone")
    image = write_image(tmp_path / "a.jpg", (32, 32), 1)
    decoder, transform = write_model(tmp_path / "model", 1)
    base = [sys.executable, str(clone / "test.py"), "--content", str(image), "--style", str(image), "--device", "cpu",
            "--output", str(tmp_path / "out")]
    readme_example = ["--decoder", str(clone / "experiments" / "decoder_iter_160000.pth.tar"),
                      "--LCT", str(clone / "experiments" / "lct_iter_160000.pth.tar")]
    cases = [(readme_example, ("checkpoint not found", "train.py", "experiments/photo")),
             (["--testing_mode", "art", "--decoder", str(decoder), "--LCT", str(transform)],
              ("checkpoint not found", "python -m models.download"))]
    for flags, fragments in cases:
        done = subprocess.run([*base, *flags], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        error = error_line(done.returncode, done.stderr)
        assert all(fragment in error for fragment in fragments), error


def test_tiled_stylisation_shows_progress_over_the_tiles(model, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    content = write_image(tmp_path / "big.jpg", (160, 160), 1)
    code, _, err = stylise(capsys, model, "--content", content, "--style", content, "--content_size", 0,
                           "--style_size", 32, "--tile_size", 64, "--output", tmp_path / "out")
    assert code == 0, err[-2000:]
    assert re.search(r"tiles:.*\d+/27", err), err[-2000:]     # 9 tiles encoded, 9 decoded, 9 finished


def test_issue27_also_a_folder_given_as_a_map_or_a_checkpoint_is_called_a_folder(model, tmp_path: Path,
                                                                                 capsys: pytest.CaptureFixture):
    """issue 27, also seen: a folder given as a map or as --init_decoder was reported "not found"."""
    photo = write_image(tmp_path / "a.png", (40, 32), 1)
    folder = tmp_path / "maps"
    folder.mkdir()
    code, _, err = stylise(capsys, model, "--content", photo, "--style", photo, "--content_segment", folder,
                           "--style_segment", folder, "--output", tmp_path / "out")
    assert error_line(code, err) == (f"error: the content map {folder} is a folder: give a map file (a folder of "
                                     "maps is --content_segment_dir)")
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(folder))} is a folder: give a checkpoint file"):
        load_decoder(folder, "photo")
