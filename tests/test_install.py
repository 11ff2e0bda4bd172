"""A non-editable install: the wheel built from this tree, installed into a fresh folder, carries
the shipped photo model and encoder, and the Python API stylises with them from another folder."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers import REPO_ROOT

# What the build reads: its configuration, the files it names, and the packages and data it carries.
BUILD_INPUTS = ("pyproject.toml", "requirements.txt", "README.md", "LICENSE", "net.py", "function.py", "sampler.py",
                "glfa", "models", "experiments/photo")
STYLISE = """
import sys
from pathlib import Path
from PIL import Image
import glfa.paths
from glfa import Stylizer
site = Path(sys.argv[1]).resolve()
assert Path(glfa.paths.__file__).resolve().is_relative_to(site), glfa.paths.__file__
stylizer = Stylizer.from_checkpoints(device="cpu")
stylizer(Image.open("content.png"), Image.open("style.png")).save("result.png")
"""


def copy_build_inputs(destination: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "vgg_normalised.pth")
    for name in BUILD_INPUTS:
        source, target = REPO_ROOT / name, destination / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def test_the_installed_wheel_stylises_from_another_folder(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    source, site, elsewhere = tmp_path / "source", tmp_path / "site", tmp_path / "elsewhere"
    copy_build_inputs(source)
    install = ["install", "--no-deps", "--no-build-isolation", "--no-index", "--no-compile", "--quiet"]
    done = subprocess.run([sys.executable, "-m", "pip", *install, "--target", str(site), str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    shipped = sorted(p.name for p in (site / "glfa" / "shipped").iterdir())
    assert [name.split("_iter_")[0] for name in shipped] == ["decoder", "lct"], shipped
    assert (site / "models" / "vgg_normalised_conv3_1.pth").is_file()

    elsewhere.mkdir()
    for name, photo in (("content", "content/coast_dune.jpg"), ("style", "style/sunset_boats.jpg")):
        Image.open(REPO_ROOT / "test" / photo).convert("RGB").resize((64, 48)).save(elsewhere / f"{name}.png")
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", STYLISE, str(site)], cwd=elsewhere, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    with Image.open(elsewhere / "result.png") as result, Image.open(elsewhere / "content.png") as content:
        assert result.size == (64, 48)
        assert result.tobytes() != content.tobytes()
