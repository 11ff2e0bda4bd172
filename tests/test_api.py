"""The Python API and the torch.hub entry point: PIL images in, a PIL image of the content's size
out; README's examples run as written in a copy of the repository with a model in experiments/photo;
what the API takes as images and options, and what it refuses (issue 20, cases 6-9)."""
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glfa import Stylizer, shipped_model
from glfa.errors import UserError
from glfa.images import RANGE_TOLERANCE, load_rgb
from glfa.paths import default_vgg
from glfa.tiles import MIN_TILE_SIZE
from helpers import REPO_ROOT, copy_repository, lively, write_model
from net import build_decoder, build_encoder, build_transform

CONTENT, STYLE = REPO_ROOT / "test" / "content" / "coast_dune.jpg", REPO_ROOT / "test" / "style" / "sunset_boats.jpg"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_model(tmp_path_factory.mktemp("model"), 3)


def test_stylizer_takes_pil_images_or_tensors_and_keeps_the_content_size(model):
    stylizer = Stylizer.from_checkpoints(*model, device="cpu")
    content, style = Image.open(CONTENT), Image.open(STYLE)
    result = stylizer(content, style)
    assert isinstance(result, Image.Image) and result.mode == "RGB" and result.size == content.size
    from torchvision.transforms.functional import to_tensor
    tensor = stylizer(to_tensor(content), to_tensor(style), alpha=0.5)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (3, content.height, content.width)
    assert 0 <= tensor.min() and tensor.max() <= 1
    with pytest.raises(TypeError, match="PIL image or a \\(3, H, W\\) tensor"):
        stylizer(to_tensor(content)[None], style)


def test_torch_hub_load_returns_the_stylizer(model):
    decoder, transform = model
    photo = torch.hub.load(str(REPO_ROOT), "photo", source="local", decoder=str(decoder), transform=str(transform),
                           device="cpu")
    assert isinstance(photo, Stylizer)
    content = Image.open(CONTENT)
    result = photo(content, Image.open(STYLE))
    assert isinstance(result, Image.Image) and result.size == content.size


def test_shipped_model_is_the_newest_complete_pair(tmp_path: Path):
    with pytest.raises(UserError, match="the shipped model is missing: .* give --decoder and --LCT .*train.py"):
        shipped_model(tmp_path)
    write_model(tmp_path, 20)
    write_model(tmp_path, 100)
    (tmp_path / "lct_iter_100.pth.tar").unlink()                    # 100 has no transform
    (tmp_path / "decoder_iter_300.pth.tar").write_bytes(b"")         # nor has 300
    (tmp_path / "sct_iter_300.pth.tar").write_bytes(b"")
    assert shipped_model(tmp_path) == (tmp_path / "decoder_iter_20.pth.tar", tmp_path / "lct_iter_20.pth.tar")


def test_default_encoder_depends_on_the_mode():
    assert default_vgg("photo") == REPO_ROOT / "models" / "vgg_normalised_conv3_1.pth"
    assert default_vgg("artistic") == REPO_ROOT / "models" / "vgg_normalised.pth"
    assert default_vgg("photo").is_file()


def readme_python_examples() -> list[str]:
    """The ``python`` code blocks of README's "Python API" section."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_api_and_hub_examples_run_with_the_shipped_model(tmp_path: Path):
    examples = readme_python_examples()
    assert len(examples) == 2 and "from glfa import Stylizer" in examples[0] and "torch.hub.load" in examples[1]
    assert len(examples[0].strip().splitlines()) <= 5
    clone = copy_repository(tmp_path / "clone")
    missing = subprocess.run([sys.executable, "-c", examples[0]], cwd=clone, capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode != 0 and "the shipped model is missing" in missing.stderr
    write_model(clone / "experiments" / "photo", 8)
    before = set(clone.iterdir())
    for example in examples:
        done = subprocess.run([sys.executable, "-c", example], cwd=clone, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    written = sorted(set(clone.iterdir()) - before)
    assert [p.suffix for p in written] == [".jpg", ".jpg"]
    for path in written:
        content = next(p for p in (REPO_ROOT / "test" / "content").iterdir() if path.stem.startswith(p.stem))
        assert Image.open(path).size == Image.open(content).size


# --------------------------------------------------------------------------------------------
# Issue 20: inputs the API refused with a raw error, or took and turned into a wrong image
# --------------------------------------------------------------------------------------------

def random_stylizer(**options) -> Stylizer:
    """A photo-mode Stylizer with random weights, its output around 0.5 (no checkpoint files)."""
    torch.manual_seed(0)
    decoder = lively(build_decoder("photo"))
    with torch.no_grad():
        decoder[-1].weight.mul_(0.3)
        decoder[-1].bias.fill_(0.5)
    return Stylizer(lively(build_encoder("photo")), decoder, lively(build_transform("lct")), "photo", device="cpu",
                    **options)


@pytest.fixture(scope="module")
def stylizer() -> Stylizer:
    return random_stylizer()


def pictures(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, 40, 48, generator=generator), torch.rand(3, 36, 36, generator=generator)


def test_issue20_6_non_finite_pixels_are_refused(stylizer: Stylizer):
    """Case 6: one NaN pixel made the whole result NaN, with no error."""
    content, style = pictures()
    broken = content.clone()
    broken[1, 7, 9] = float("nan")
    with pytest.raises(ValueError, match="the content image holds NaN or infinite values"):
        stylizer(broken, style)
    broken = style.clone()
    broken[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="the style image holds NaN or infinite values"):
        stylizer.stylize(content, [broken])
    with pytest.raises(ValueError, match="style image 2 holds NaN"):
        stylizer.stylize(content, [style, broken], [1, 1])


def test_issue20_7_tensor_dtypes_with_one_meaning_are_converted(stylizer: Stylizer):
    """Case 7: uint8 is 0-255 and float16/bfloat16/float64 are converted to float32, where they
    gave PyTorch's dtype error."""
    content, style = pictures()
    as_bytes = (content * 255).round().to(torch.uint8)
    expected = stylizer(as_bytes.float() / 255, style)
    torch.testing.assert_close(stylizer(as_bytes, style), expected, rtol=0, atol=0)
    torch.testing.assert_close(stylizer(content.double(), style.double()), stylizer(content, style), rtol=0, atol=0)
    for dtype in (torch.float16, torch.bfloat16):
        result = stylizer(content.to(dtype), style.to(dtype))
        assert result.dtype == torch.float32
        torch.testing.assert_close(result, stylizer(content.to(dtype).float(), style.to(dtype).float()), rtol=0, atol=0)


def test_issue20_7_other_dtypes_and_values_outside_0_1_are_refused(stylizer: Stylizer):
    """Case 7: bool and integer tensors gave PyTorch's dtype error; a float tensor in 0-255 or
    a normalised (negative) one was taken and returned a wrong image."""
    content, style = pictures()
    for bad in (content > 0.5, (content * 255).long(), (content * 255).int(), torch.complex(content, content)):
        with pytest.raises(TypeError, match=r"the content image: expected a PIL image or a \(3, H, W\) tensor "
                                            r"of floats in \[0, 1\] \(or uint8 in 0-255\), got a \w+ tensor"):
            stylizer(bad, style)
    with pytest.raises(TypeError, match=r"the style image: expected .*got a tensor of shape \(36, 36, 3\)"):
        stylizer(content, style.permute(1, 2, 0))
    with pytest.raises(ValueError, match=r"the content image holds values from 0\.0\d+ to 25\d.*divide a 0-255 image"):
        stylizer(content * 255, style)
    normalised = (style - 0.45) / 0.22
    with pytest.raises(ValueError, match=r"the style image holds values from -2\.\d+ to 2\.\d+; expected floats in "
                                         r"\[0, 1\].*normalisation"):
        stylizer(content, normalised)
    nudged = content.clone()                         # rounding just outside [0, 1] is within the tolerance
    nudged[0, 0, 0], nudged[0, 0, 1] = -RANGE_TOLERANCE / 2, 1 + RANGE_TOLERANCE / 2
    torch.testing.assert_close(stylizer(nudged, style), stylizer(nudged.clamp(0, 1), style), rtol=0, atol=0)


def test_issue20_8_alpha_must_be_in_0_1(stylizer: Stylizer):
    """Case 8: alpha nan, inf, -1 and 2 were accepted (nan gave a NaN image)."""
    content, style = pictures()
    for alpha in (float("nan"), float("inf"), -1, 2, 1.0001):
        with pytest.raises(ValueError, match="alpha must be in \\[0, 1\\]"):
            stylizer(content, style, alpha=alpha)
        with pytest.raises(ValueError, match="alpha must be in \\[0, 1\\]"):
            stylizer.stylize(content, [style], alpha=alpha)
    with pytest.raises(TypeError, match="alpha must be a number"):
        stylizer(content, style, alpha="0.5")
    assert torch.isfinite(stylizer(content, style, alpha=0)).all()


def test_issue20_8_style_weights_and_the_styles_are_checked(stylizer: Stylizer):
    """Case 8: too few, negative or NaN style weights were accepted, and no style at all raised
    ZeroDivisionError. Weights are scaled to sum to 1."""
    content, style = pictures()
    other = pictures(1)[1]
    for weights, message in (([1.0], "1 style weight\\(s\\) for 2 style image\\(s\\): give one per style"),
                             ([1, 2, 3], "3 style weight"), ([1, -1], "non-negative"), ([float("nan"), 1], "finite"),
                             ([0, 0], "positive sum"), ([float("inf"), 1], "finite"), ([1e308, 1e308], "positive sum")):
        with pytest.raises(ValueError, match=message):
            stylizer.stylize(content, [style, other], weights)
    with pytest.raises(TypeError, match="style weights must be numbers"):
        stylizer.stylize(content, [style, other], ["1", "1"])
    with pytest.raises(ValueError, match="at least one style image"):
        stylizer.stylize(content, [])
    with pytest.raises(TypeError, match="styles must be a list of style images.*pass \\[style\\]"):
        stylizer.stylize(content, style)
    torch.testing.assert_close(stylizer.stylize(content, [style, other], [1, 3]),
                               stylizer.stylize(content, [style, other], [0.25, 0.75]), rtol=0, atol=1e-6)


def test_issue20_8_tiles_are_0_or_at_least_the_minimum(stylizer: Stylizer):
    """Case 8: tile_size=-1 was accepted and tile_size=1 made a 0.1 s image take 7 s. Tiles are 0
    (automatic) or at least MIN_TILE_SIZE (64) px, in the constructor, per call and in test.py."""
    assert MIN_TILE_SIZE == 64
    content, style = pictures()
    for bad in (-1, 1, 4, MIN_TILE_SIZE - 1):
        with pytest.raises(ValueError, match="tile_size must be 0 \\(automatic\\) or at least 64 px"):
            random_stylizer(tile_size=bad)
        with pytest.raises(ValueError, match="tile_size must be 0 \\(automatic\\) or at least 64 px"):
            stylizer.stylize(content, [style], tile_size=bad)
    with pytest.raises(TypeError, match="tile_size must be an integer"):
        random_stylizer(tile_size=64.0)
    assert random_stylizer(tile_size=MIN_TILE_SIZE).run.tile_size == 64
    assert stylizer.stylize(content, [style], tile_size=0).shape == content.shape
    parse_args = runpy.run_path(str(REPO_ROOT / "test.py"), run_name="command_under_test")["parse_args"]
    assert parse_args(["--content", "c.jpg", "--style", "s.jpg", "--tile_size", "64"]).tile_size == 64
    for bad in ("1", "-1", "63"):
        with pytest.raises(SystemExit):
            parse_args(["--content", "c.jpg", "--style", "s.jpg", "--tile_size", bad])


def save_turned(image: Image.Image, path: Path) -> Path:
    """``image`` stored as a phone stores a portrait photo: turned on its side, with the EXIF
    orientation (6: rotate 90° clockwise to view) that turns it back."""
    exif = Image.Exif()
    exif[0x0112] = 6
    image.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    return path


def test_issue20_9_exif_orientation_is_honoured_like_the_commands(stylizer: Stylizer, tmp_path: Path):
    """Case 9: ``stylizer(Image.open(...), ...)`` turned a phone photo sideways; test.py and the
    demo read it upright. The result is upright, as the file is shown and as test.py reads it."""
    content = save_turned(Image.open(CONTENT).convert("RGB").resize((64, 48)), tmp_path / "content.jpg")
    style = save_turned(Image.open(STYLE).convert("RGB").resize((40, 56)), tmp_path / "style.jpg")
    with Image.open(content) as stored:
        assert stored.size == (48, 64)                                   # as stored: on its side
        result = stylizer(stored, Image.open(style))
    upright_content, upright_style = load_rgb(content), load_rgb(style)  # what test.py reads
    assert upright_content.size == result.size == (64, 48)
    expected = stylizer(upright_content, upright_style)
    assert np.array_equal(np.asarray(result), np.asarray(expected))
