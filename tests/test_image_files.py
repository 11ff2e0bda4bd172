"""Writing results: ``glfa.images.save_image_file`` writes what it is given, PNGs losslessly at the
fast zlib level, and leaves no partial file when a write fails."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glfa.images import PNG_LEVEL, save_image_file, to_pil


def test_a_png_loads_back_pixel_for_pixel_and_is_compressed_at_the_fast_level(tmp_path: Path) -> None:
    image = torch.rand(3, 37, 53, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "result.png"
    save_image_file(image, path)
    expected = (image.clamp(0, 1) * 255 + 0.5).floor().byte().permute(1, 2, 0).numpy()   # by hand
    assert np.array_equal(np.asarray(Image.open(path)), expected)
    # the first IDAT chunk opens the zlib stream, whose FLG byte's top two bits name the level class
    # (0: fastest, level 1; 2: Pillow's default, level 6)
    data = path.read_bytes()
    start = data.index(b"IDAT") + 4
    assert PNG_LEVEL == 1 and data[start + 1] >> 6 == 0


def test_a_jpeg_is_written_at_pillows_defaults(tmp_path: Path) -> None:
    image = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(1))
    save_image_file(image, tmp_path / "a.jpg")
    to_pil(image).save(tmp_path / "b.jpg")
    assert (tmp_path / "a.jpg").read_bytes() == (tmp_path / "b.jpg").read_bytes()


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "result.unknown_format"
    with pytest.raises(ValueError):
        save_image_file(torch.rand(3, 8, 8), path)
    assert not path.exists()
