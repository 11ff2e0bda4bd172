"""Issue 28 item 2: one frozen options object for stylising, built once from the flags by one
function every stylising command shares, taken whole by the library; keywords change its fields
by name in the Python API, as they always have."""
import dataclasses
import runpy

import pytest
import torch

from glfa import RunOptions, Smoothing, StylizeOptions
from glfa.cli import run_options, stylize_options
from glfa.errors import UserError
from glfa.eval import EVALUATION
from glfa.options import with_changes
from helpers import REPO_ROOT, random_stylizer


def command(name: str) -> dict:
    """A command's functions, its ``main`` not run."""
    return runpy.run_path(str(REPO_ROOT / f"{name}.py"), run_name=f"options_{name}")


def pictures() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    return torch.rand(3, 40, 52, generator=generator), torch.rand(3, 36, 36, generator=generator)


def test_the_options_hold_each_default_once_and_check_their_values():
    photo, art = StylizeOptions.for_mode("photo"), StylizeOptions.for_mode("art")
    assert photo == StylizeOptions() and photo.smooth == Smoothing() and art.smooth is None
    assert (photo.alpha, photo.working_size, photo.content_size, photo.max_size) == (1.0, 512, 0, 4096)
    assert StylizeOptions.for_mode("art", smooth=True).smooth == Smoothing()
    assert StylizeOptions(smooth=False).smooth is None and StylizeOptions(smooth=True).smooth == Smoothing()
    with pytest.raises(ValueError, match="alpha must be in \\[0, 1\\]"):
        StylizeOptions(alpha=1.5)
    with pytest.raises(ValueError, match="working_size must be 0"):
        photo.replace(working_size=10)
    with pytest.raises(ValueError, match="content_size must be a non-negative integer"):
        photo.replace(content_size=-1)
    with pytest.raises(ValueError, match="tile_size must be 0 \\(automatic\\) or at least 64 px"):
        RunOptions(tile_size=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        photo.alpha = 0.5
    with pytest.raises(TypeError, match="unknown option 'alhpa'; the options are alpha, preserve_color, smooth"):
        photo.replace(alhpa=0.5)
    assert photo.replace(smooth=None).smooth is None                 # the object's None is no finish


def test_with_changes_routes_each_name_to_its_object_and_none_keeps_the_value():
    options, run = with_changes((StylizeOptions(), RunOptions()), {"alpha": 0.25, "tile_size": 64, "smooth": None},
                                "f()")
    assert (options.alpha, options.smooth, run.tile_size) == (0.25, Smoothing(), 64)
    with pytest.raises(TypeError, match="f\\(\\) got an unknown option 'device'; the options are alpha"):
        with_changes((StylizeOptions(),), {"device": "cpu"}, "f()")
    with pytest.raises(TypeError, match="'device'.*tile_size, to_cpu$"):
        with_changes((StylizeOptions(), RunOptions()), {"device": "cpu"}, "f()", allowed=["alpha", "tile_size",
                                                                                         "to_cpu"])


def test_the_stylizer_takes_the_objects_or_their_fields_by_name():
    content, style = pictures()
    stylizer = random_stylizer("photo", "lct")
    assert stylizer.options == StylizeOptions(smooth=None) and stylizer.run.device == torch.device("cpu")
    assert stylizer.run.channels_last is True                        # resolved: channels-last on the CPU
    by_name = stylizer(content, style, alpha=0.5, smooth=True)
    by_object = stylizer(content, style, StylizeOptions(alpha=0.5))
    torch.testing.assert_close(by_name, by_object, rtol=0, atol=0)
    torch.testing.assert_close(stylizer.stylize(content, [style], options=StylizeOptions(alpha=0.5)), by_object,
                               rtol=0, atol=0)
    assert (by_name - stylizer(content, style)).abs().max() > 1e-2
    torch.testing.assert_close(stylizer(content, style, smooth=None), stylizer(content, style), rtol=0, atol=0)
    with pytest.raises(TypeError, match="stylize\\(\\) got an unknown option 'alpah'"):
        stylizer(content, style, alpah=0.5)
    with pytest.raises(TypeError, match="stylize\\(\\) got an unknown option 'device'"):
        stylizer.stylize(content, [style], device="cpu")             # fixed once the modules are placed
    with pytest.raises(TypeError, match="expected StylizeOptions or None, got float \\(give single options by name"):
        stylizer.stylize(content, [style], None, 0.5)                # where alpha once came
    with pytest.raises(TypeError, match="Stylizer\\(\\) got an unknown option 'smoth'"):
        random_stylizer("photo", "lct", smoth=True)
    made = random_stylizer("art", "lct", smooth=None, run=RunOptions(tile_size=64), options=None)
    assert made.options == StylizeOptions.for_mode("art") and made.run.tile_size == 64


def test_every_stylising_command_builds_its_options_with_the_shared_function():
    test_py, video_py, eval_py, app_py = (command(name) for name in ("test", "video", "eval", "app"))
    args = test_py["parse_args"](["--content", "c.jpg", "--style", "s.jpg", "--alpha", "0.3", "--auto_regions",
                                  "--content_size", "300", "--crop", "--no-smooth"])
    assert args.options == StylizeOptions(alpha=0.3, smooth=None, auto_regions=3, content_size=300, crop=True)
    args = video_py["parse_args"](["f/", "--style", "s.jpg", "--smooth_radius", "4", "--working_size", "256"])
    assert args.options == StylizeOptions(smooth=Smoothing(radius=4), working_size=256)
    # video.py's own working size when the flag is left out; test.py keeps the images' default
    assert video_py["parse_args"](["f/", "--style", "s.jpg"]).options == StylizeOptions(working_size=384)
    assert test_py["parse_args"](["--content", "c.jpg", "--style", "s.jpg"]).options == StylizeOptions()
    assert StylizeOptions().working_size == 512
    args = eval_py["parse_args"](["--pairs", "p.txt", "--testing_mode", "art", "--long_side", "256"])
    assert args.options == StylizeOptions.for_mode("art", content_size=512, style_size=512, long_side=256)
    assert EVALUATION.content_size == args.options.content_size and EVALUATION.smooth is None
    app_args = app_py["parse_args"](["--device", "cpu"])
    assert stylize_options(app_args) == StylizeOptions()
    assert run_options(app_args) == RunOptions(device=torch.device("cpu"))
    assert run_options(test_py["parse_args"](["--content", "c.jpg", "--style", "s.jpg", "--device", "cpu",
                                              "--tile_size", "128", "--compile"]), progress=True) == \
        RunOptions(device=torch.device("cpu"), tile_size=128, compile=True, progress=True)
    with pytest.raises(UserError, match="--working_size sets the finish, which is off"):
        video_py["parse_args"](["f/", "--style", "s.jpg", "--no-smooth", "--working_size", "256"])
