"""Shared pytest fixtures: the optional ``../shared`` material and small training folders. The
repository root is on the import path through pyproject.toml's pytest settings."""
import os
from pathlib import Path

import pytest


def _shared_dir() -> Path:
    return Path(os.environ.get("SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or ``$SHARED_DIR``); skips the test when it is absent."""
    path = _shared_dir()
    if not path.is_dir():
        pytest.skip(f"shared material not found at {path} (set SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def vgg_relu3_1(shared_dir: Path) -> Path:
    """The real photo-mode encoder file ``models/vgg_normalised_conv3_1.pth``; skips when absent."""
    path = shared_dir / "models" / "vgg_normalised_conv3_1.pth"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def training_vgg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A photo-mode encoder file for training tests: the shared relu3_1 weights when present,
    else random weights of the same layout (training only needs the shapes)."""
    real = _shared_dir() / "models" / "vgg_normalised_conv3_1.pth"
    if real.is_file():
        return real
    import torch
    from glfa.checkpoint import save_state_dict
    from net import build_encoder
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg_random_relu3_1.pth"
    save_state_dict(build_encoder("photo"), path)
    return path


@pytest.fixture(scope="session")
def training_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Tiny content (8 images, one in a subfolder) and style (6 images) folders of 40×40 PNGs."""
    import numpy as np
    from PIL import Image
    root = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 40)
    for folder, count in (("content", 8), ("style", 6)):
        for i in range(count):
            base = rng.uniform(0, 255, 3) * 0.5 + np.stack([ramp[None, :].repeat(40, 0)] * 3, -1) * 0.5
            pixels = np.clip(base + rng.normal(0, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
            path = root / folder / ("sub" if i == 0 else "") / f"{folder}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    return root / "content", root / "style"


@pytest.fixture(scope="session")
def training_flags(training_folders: tuple[Path, Path], training_vgg: Path) -> list[str]:
    """``train.py`` flags for a seconds-long CPU run on the tiny folders (add --save_dir etc.)."""
    content, style = training_folders
    return ["--content_dir", str(content), "--style_dir", str(style), "--vgg", str(training_vgg),
            "--image_size", "20", "--crop_size", "16", "--batch_size", "2", "--num_s", "4",
            "--n_threads", "0", "--device", "cpu", "--seed", "0"]
