"""The trained photo model that ships in experiments/photo/: it loads with no flag, keeps a test
photo's structure and moves its colours towards the style's."""
import pytest
import torch

from glfa import Stylizer, shipped_model
from glfa.images import read_image
from glfa.metrics import luminance_ssim
from helpers import REPO_ROOT

# The shipped model (iteration 13000), finished as by default, measures SSIM 0.893-0.907 and a colour
# distance to the style of 0.33-0.47 of the content's on these pairs at their original size, on the
# CPU; the floors leave a margin for CPU/GPU numerical differences. (The forest path's fine needles score lowest,
# one of the model's known weaknesses at its short training budget, so they are not among these.)
SSIM_FLOOR = 0.75
COLOUR_RATIO = 0.8
PHOTOS = REPO_ROOT / "test"


@pytest.fixture(scope="module")
def stylizer() -> Stylizer:
    decoder, transform = shipped_model()
    assert decoder.parent == REPO_ROOT / "experiments" / "photo" and transform.name.startswith("lct_iter_")
    return Stylizer.from_checkpoints(device="cpu")


def colour_stats(image: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and std of a ``(3, H, W)`` image, as one vector of six."""
    flat = image.reshape(3, -1)
    return torch.cat((flat.mean(1), flat.std(1)))


@pytest.mark.parametrize("content_name, style_name", [("coast_dune", "sunset_boats"), ("storm_road", "dusk_lake"),
                                                      ("storm_road", "fog_pier")])
def test_shipped_model_keeps_structure_and_takes_the_style_colours(stylizer, content_name, style_name):
    content = read_image(PHOTOS / "content" / f"{content_name}.jpg")
    style = read_image(PHOTOS / "style" / f"{style_name}.jpg")
    result = stylizer.stylize(content, [style])
    assert result.shape == content.shape
    assert luminance_ssim(result, content) > SSIM_FLOOR
    before = (colour_stats(content) - colour_stats(style)).norm()
    after = (colour_stats(result) - colour_stats(style)).norm()
    assert after < COLOUR_RATIO * before, (before, after)
