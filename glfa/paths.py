"""Where the shipped files are: every default path is resolved from the repository root (or, in
an installed wheel, from the package), so the commands and the API work from any working directory."""
from pathlib import Path

from net import ModeSpec, parse_mode

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent        # a checkout; site-packages once installed from a wheel
MODELS_DIR = REPO_ROOT / "models"     # installed from a wheel: the ``models`` package, encoder included
# The shipped photo model: experiments/photo/ of a checkout, or glfa/shipped/ in an installed wheel.
SHIPPED_DIR = (PACKAGE_DIR / "shipped" if (PACKAGE_DIR / "shipped").is_dir()
               else REPO_ROOT / "experiments" / "photo")
EXAMPLES_DIR = REPO_ROOT / "test"
ENCODER_FILES = {"photo": "vgg_normalised_conv3_1.pth", "art": "vgg_normalised.pth"}


def default_vgg(mode: str | ModeSpec = "photo") -> Path:
    """The encoder file for ``mode``: the shipped relu3_1 file in photo mode, the full
    ``vgg_normalised.pth`` (``python -m models.download``) in art mode."""
    return MODELS_DIR / ENCODER_FILES[parse_mode(mode).name]
