"""The Python API and the torch.hub entry point: PIL images in, a PIL image of the content's size
out; README's examples run as written in a copy of the repository with a model in experiments/photo."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from glfa import Stylizer, shipped_model
from glfa.errors import UserError
from glfa.paths import default_vgg
from helpers import REPO_ROOT, copy_repository, write_model

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
