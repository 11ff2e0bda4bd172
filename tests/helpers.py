"""Small helpers shared by several test files."""
import io
import runpy
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from glfa.inference import Stylizer
from net import build_decoder, build_encoder, build_transform

REPO_ROOT = Path(__file__).resolve().parents[1]
CODE = ("train.py", "test.py", "eval.py", "video.py", "net.py", "function.py", "sampler.py", "hubconf.py",
        "README.md", "glfa", "test")


def lively(module: nn.Module) -> nn.Module:
    """He-initialised convolutions, so random weights keep activations at a useful scale and give
    a varied, mostly unclipped image."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.uniform_(layer.bias, -0.1, 0.1)
    return module


def copy_repository(destination: Path) -> Path:
    """The code, the shipped encoder and the test photos copied to ``destination``, with an empty
    ``experiments/photo/``: a clone whose shipped model a test controls, leaving this one alone."""
    ignore = shutil.ignore_patterns("__pycache__")
    destination.mkdir(parents=True, exist_ok=True)
    for name in CODE:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    (destination / "models").mkdir()
    for path in (*(REPO_ROOT / "models").glob("*.py"), REPO_ROOT / "models" / "vgg_normalised_conv3_1.pth"):
        shutil.copy2(path, destination / "models" / path.name)
    (destination / "experiments" / "photo").mkdir(parents=True)
    return destination


def write_model(folder: Path, iteration: int, seed: int = 0) -> tuple[Path, Path]:
    """A random photo-mode decoder and LCT as ``decoder_iter_N.pth.tar`` and ``lct_iter_N.pth.tar``,
    the decoder's output scaled to sit around 0.5."""
    from glfa.checkpoint import save_state_dict
    from net import build_decoder, build_transform

    torch.manual_seed(seed)
    decoder = lively(build_decoder("photo"))
    with torch.no_grad():
        decoder[-1].weight.mul_(0.3)
        decoder[-1].bias.fill_(0.5)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / f"decoder_iter_{iteration}.pth.tar", folder / f"lct_iter_{iteration}.pth.tar"
    save_state_dict(decoder, paths[0])
    save_state_dict(lively(build_transform("lct")), paths[1])
    return paths


def random_stylizer(mode: str, kind: str, seed: int = 0, **options) -> Stylizer:
    """A ``Stylizer`` with random weights on the CPU (``options`` go to ``Stylizer``), giving the
    network's raw output unless ``smooth`` is among them; the decoder's last conv is scaled so
    that the image sits around 0.5."""
    options.setdefault("smooth", False)
    torch.manual_seed(seed)
    decoder = lively(build_decoder(mode))
    last = decoder[-1]
    with torch.no_grad():
        last.weight.mul_(0.3 if mode == "photo" else 0.15)
        last.bias.fill_(0.5)
    return Stylizer(lively(build_encoder(mode)), decoder, lively(build_transform(kind, mode)), mode, device="cpu",
                    **options)


def run_script(script: str, argv: list, capsys) -> tuple[int, str, str]:
    """Run the repository's ``script`` as ``__main__`` in this process: exit status, stdout, stderr."""
    saved_argv = sys.argv
    sys.argv = [script, *map(str, argv)]
    try:
        runpy.run_path(str(REPO_ROOT / script), run_name="__main__")
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else int(exit_info.code is not None)
    finally:
        sys.argv = saved_argv
    out, err = capsys.readouterr()
    return code, out, err


# The demo's message for an upload that is not an image, after the photo's name.
NOT_AN_IMAGE = "is not an image this demo can read: upload a JPEG, PNG, WebP, GIF, BMP, TIFF or PPM file"


def photo_bytes(width: int, height: int, fmt: str = "PNG", seed: int = 0, **options) -> bytes:
    """A smooth colour gradient with a little noise, encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    pixels = np.stack([x, y, 1 - x * y], -1) * 200 + rng.normal(0, 8, (height, width, 3)) + 20
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, fmt, **options)
    return buffer.getvalue()


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    """``image`` encoded as ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_file(width: int, height: int, colour_type: int, depth: int, idat: bytes) -> bytes:
    """A PNG declaring ``width``×``height`` px (PNG colour type and bit depth) with ``idat`` as its data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
