"""Where the shipped files are: every default path is resolved from the repository root, so the
commands work from any working directory."""
from pathlib import Path

from net import ModeSpec, parse_mode

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
SHIPPED_DIR = REPO_ROOT / "experiments" / "photo"
EXAMPLES_DIR = REPO_ROOT / "test"
ENCODER_FILES = {"photo": "vgg_normalised_conv3_1.pth", "art": "vgg_normalised.pth"}


def default_vgg(mode: str | ModeSpec = "photo") -> Path:
    """The encoder file for ``mode``: the shipped relu3_1 file in photo mode, the full
    ``vgg_normalised.pth`` (``python -m models.download``) in art mode."""
    return MODELS_DIR / ENCODER_FILES[parse_mode(mode).name]
