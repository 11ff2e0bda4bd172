"""Issue 25: one default output everywhere. ``test.py``, the Python API and ``torch.hub`` give the
same finished result for the same photos with the shipped model, and ``--no-smooth`` /
``smooth=False`` the network's raw output; the result has the content photo's own size."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from glfa import Stylizer
from helpers import REPO_ROOT, run_script

PHOTOS = REPO_ROOT / "test"


def small_pair(folder: Path) -> tuple[Path, Path]:
    """A 150×100 content (smaller than the working size: no scaling) and a 640×420 style (larger:
    scaled to the working size by every entry point alike), cut from the test photos."""
    with Image.open(PHOTOS / "content" / "coast_dune.jpg") as image:
        image.convert("RGB").resize((150, 100), Image.LANCZOS).save(folder / "content.png")
    with Image.open(PHOTOS / "style" / "sunset_boats.jpg") as image:
        image.convert("RGB").resize((640, 420), Image.LANCZOS).save(folder / "style.png")
    return folder / "content.png", folder / "style.png"


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_test_py_the_api_and_torch_hub_give_the_same_default_output(tmp_path: Path, capsys):
    content, style = small_pair(tmp_path)
    outputs = {}
    for name, flags in (("default", []), ("raw", ["--no-smooth"])):
        code, _, err = run_script("test.py", ["--content", str(content), "--style", str(style), "--device", "cpu",
                                              "--save_ext", ".png", "--output", str(tmp_path / name), *flags], capsys)
        assert code == 0, err
        with Image.open(tmp_path / name / "content_stylized_style.png") as image:
            outputs[name] = pixels(image)
    api = Stylizer.from_checkpoints(device="cpu")
    hub = torch.hub.load(str(REPO_ROOT), "photo", source="local", device="cpu")
    with Image.open(content) as c, Image.open(style) as s:
        by_api, by_hub = pixels(api(c, s)), pixels(hub(c, s))
        raw_api = pixels(api(c, s, smooth=False))
    assert outputs["default"].shape == by_api.shape == (100, 150, 3)
    np.testing.assert_array_equal(by_api, outputs["default"])
    np.testing.assert_array_equal(by_hub, outputs["default"])
    np.testing.assert_array_equal(raw_api, outputs["raw"])
    assert np.abs(outputs["default"] - outputs["raw"]).mean() > 1       # the finish is on by default
