"""Where the shipped files are: every default path is resolved from the repository root, so the
commands work from any working directory."""
from pathlib import Path

from glfa.checkpoint import checkpoints_by_iteration
from glfa.cli import UserError
from net import ModeSpec, parse_mode

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
SHIPPED_DIR = REPO_ROOT / "experiments" / "photo"
ENCODER_FILES = {"photo": "vgg_normalised_conv3_1.pth", "art": "vgg_normalised.pth"}


def default_vgg(mode: str | ModeSpec = "photo") -> Path:
    """The encoder file for ``mode``: the shipped relu3_1 file in photo mode, the full
    ``vgg_normalised.pth`` (``python -m models.download``) in art mode."""
    return MODELS_DIR / ENCODER_FILES[parse_mode(mode).name]


def shipped_model(folder: Path = SHIPPED_DIR) -> tuple[Path, Path]:
    """The shipped photo model: ``decoder_iter_N.pth.tar`` and ``lct_iter_N.pth.tar`` in
    ``experiments/photo/`` for the highest N that has both."""
    found = checkpoints_by_iteration(folder) if folder.is_dir() else {}
    complete = [n for n, files in found.items() if {"decoder", "lct"} <= files.keys()]
    if not complete:
        raise UserError(f"the shipped model is missing: {folder} holds no decoder_iter_N.pth.tar with a matching "
                        "lct_iter_N.pth.tar; give --decoder and --LCT (checkpoints written by train.py)")
    files = found[max(complete)]
    return files["decoder"], files["lct"]


def model_files(decoder: str | Path | None, transform: str | Path | None,
                mode: str | ModeSpec = "photo") -> tuple[Path, Path]:
    """The decoder and transform files to load: those given, the shipped model's for the others
    (photo mode only; art mode needs both given)."""
    if decoder is not None and transform is not None:
        return Path(decoder), Path(transform)
    if parse_mode(mode).name != "photo":
        raise UserError("no model ships for art mode: give --decoder and --LCT (checkpoints written by "
                        "train.py --training_mode art)")
    shipped_decoder, shipped_transform = shipped_model()
    return Path(decoder or shipped_decoder), Path(transform or shipped_transform)
