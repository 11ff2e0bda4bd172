"""Data handling: recursive listing, decoding every image mode to RGB, skipping unreadable files."""
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glfa.errors import UserError
from glfa.data import ImageFolderDataset, training_transform
from glfa.images import UnreadableImage, list_images, load_rgb, read_image_or_fail, to_rgb


def write_jpeg(path: Path, size=(32, 24), colour=(200, 100, 50)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)
    return path


def write_truncated_jpeg(path: Path) -> Path:
    """A real JPEG cut in half: the header parses, the data ends early."""
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


# --------------------------------------------------------------------------------------------
# list_images
# --------------------------------------------------------------------------------------------

def test_list_images_is_recursive_sorted_and_ignores_other_files(tmp_path):
    for name in ["b.jpg", "a.PNG", "sub/c.jpeg", "sub/deeper/d.webp", "sub/e.bmp"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    for name in ["notes.txt", "sub/model.pth", "sub/deeper/README", "archive.jpg.zip"]:
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.PNG", "b.jpg", "sub/c.jpeg", "sub/deeper/d.webp", "sub/e.bmp"]


def test_list_images_follows_links_once_and_survives_a_link_loop(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.jpg").write_bytes(b"x")
    (tmp_path / "real" / "loop").symlink_to(tmp_path, target_is_directory=True)   # real/loop -> root
    (tmp_path / "z_link").symlink_to(tmp_path / "real", target_is_directory=True)  # a second way to real/
    outside = tmp_path.parent / f"{tmp_path.name}_outside"
    outside.mkdir()
    (outside / "y.png").write_bytes(b"y")
    (tmp_path / "elsewhere").symlink_to(outside, target_is_directory=True)
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["elsewhere/y.png", "real/x.jpg"]


def test_list_images_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        list_images(tmp_path / "nowhere")


# --------------------------------------------------------------------------------------------
# to_rgb / load_rgb for every image mode
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, value, expected", [
    ("L", 77, (77, 77, 77)),
    ("1", 1, (255, 255, 255)),
    ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
    ("RGBA", (10, 20, 30, 0), (255, 255, 255)),          # fully transparent: white background
    ("LA", (100, 255), (100, 100, 100)),
])
def test_to_rgb_converts_modes(mode, value, expected):
    image = to_rgb(Image.new(mode, (3, 2), value))
    assert image.mode == "RGB" and image.size == (3, 2)
    assert image.getpixel((1, 1)) == expected


def test_to_rgb_half_transparent_rgba_blends_with_white():
    pixel = to_rgb(Image.new("RGBA", (1, 1), (0, 0, 0, 128))).getpixel((0, 0))
    assert all(abs(c - 127) <= 1 for c in pixel)        # 0·128/255 + 255·(1 − 128/255) ≈ 127


def test_load_rgb_palette_png(tmp_path):
    palette = Image.new("P", (4, 4))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 1)
    palette.save(tmp_path / "p.png")
    image = load_rgb(tmp_path / "p.png")
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (0, 0, 255) and image.getpixel((3, 3)) == (255, 0, 0)


def test_load_rgb_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # pure red ink-wise
    image = load_rgb(tmp_path / "c.jpg")
    assert image.mode == "RGB" and image.size == (16, 8)
    red, green, blue = image.getpixel((8, 4))
    assert red > 200 and green < 60 and blue < 60


def test_load_rgb_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 200, 40000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = np.asarray(load_rgb(tmp_path / "g16.png"))
    assert rgb.shape == (1, 4, 3)
    expected = np.round(values[0] / 65535 * 255)                     # 0, 1, 156, 255
    assert rgb[0, :, 0].tolist() == expected.astype(int).tolist()
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_load_rgb_1_bit_png(tmp_path):
    image = Image.new("1", (5, 5), 0)
    image.putpixel((2, 2), 1)
    image.save(tmp_path / "b.png")
    rgb = load_rgb(tmp_path / "b.png")
    assert rgb.getpixel((2, 2)) == (255, 255, 255) and rgb.getpixel((0, 0)) == (0, 0, 0)


def test_truncated_jpeg_is_unreadable(tmp_path):
    with pytest.raises(UnreadableImage):
        load_rgb(write_truncated_jpeg(tmp_path / "cut.jpg"))


def test_text_file_named_jpg_is_unreadable(tmp_path):
    (tmp_path / "fake.jpg").write_text("not an image at all\n")
    with pytest.raises(UnreadableImage):
        load_rgb(tmp_path / "fake.jpg")
    with pytest.raises(UserError, match="cannot read image"):
        read_image_or_fail(tmp_path / "fake.jpg")
    with pytest.raises(UserError, match="not found"):
        read_image_or_fail(tmp_path / "missing.jpg")


def test_jpeg_draft_decodes_smaller_but_not_below_the_request(tmp_path):
    path = write_jpeg(tmp_path / "big.jpg", size=(1200, 900))
    assert load_rgb(path).size == (1200, 900)
    width, height = load_rgb(path, draft_size=256).size
    assert width < 1200 and height < 900
    assert min(width, height) >= 256
    assert load_rgb(path, draft_size=2000).size == (1200, 900)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6                                      # rotate 90° clockwise for display
    Image.new("RGB", (40, 20), (0, 128, 0)).save(tmp_path / "o.jpg", exif=exif)
    assert load_rgb(tmp_path / "o.jpg").size == (20, 40)


# --------------------------------------------------------------------------------------------
# ImageFolderDataset
# --------------------------------------------------------------------------------------------

def test_dataset_skips_unreadable_files_with_one_warning_each(tmp_path, capsys):
    write_jpeg(tmp_path / "a_good.jpg", colour=(255, 0, 0))
    (tmp_path / "b_fake.jpg").write_text("text")
    write_truncated_jpeg(tmp_path / "c_cut.jpg")
    write_jpeg(tmp_path / "d_good.jpg", colour=(0, 0, 255))
    dataset = ImageFolderDataset(tmp_path, training_transform(16, 8))
    assert len(dataset) == 4 and dataset.skipped == 0
    items = [dataset[i] for i in range(4)] + [dataset[1], dataset[2]]
    assert dataset.skipped == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert "b_fake.jpg" in warnings[0] and "c_cut.jpg" in warnings[1]
    # an unreadable item is replaced by the next readable one (b, c -> d)
    means = [item.mean(dim=(1, 2)) for item in items]
    assert torch.allclose(means[0], torch.tensor([1.0, 0, 0]), atol=0.02)
    for index in (1, 2, 3):
        assert torch.allclose(means[index], torch.tensor([0, 0, 1.0]), atol=0.02)


def test_dataset_crops_images_smaller_than_the_crop(tmp_path):
    write_jpeg(tmp_path / "tiny.jpg", size=(5, 3))
    Image.new("L", (7, 9), 128).save(tmp_path / "grey.png")
    dataset = ImageFolderDataset(tmp_path, training_transform(image_size=40, crop_size=32), draft_size=40)
    for index in range(len(dataset)):
        item = dataset[index]
        assert item.shape == (3, 32, 32) and item.dtype == torch.float32
        assert 0 <= item.min() and item.max() <= 1


def test_check_readable_stops_when_nothing_decodes(tmp_path):
    (tmp_path / "a.jpg").write_text("text")
    write_truncated_jpeg(tmp_path / "b.jpg")
    dataset = ImageFolderDataset(tmp_path, training_transform(16, 8))
    with pytest.raises(UserError, match="none of the 2 image files"):
        dataset.check_readable()


def test_check_readable_passes_with_one_good_file(tmp_path):
    (tmp_path / "a.jpg").write_text("text")
    write_jpeg(tmp_path / "b.jpg")
    ImageFolderDataset(tmp_path, training_transform(16, 8)).check_readable()


def test_dataset_on_empty_or_missing_folder_is_a_user_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match="no image files"):
        ImageFolderDataset(tmp_path, training_transform(16, 8))
    with pytest.raises(UserError, match="not found"):
        ImageFolderDataset(tmp_path / "missing", training_transform(16, 8))


def test_dataset_works_in_loader_workers(tmp_path):
    """Two worker processes share the unreadable-file mask: the main process sees the count."""
    from torch.utils.data import DataLoader

    write_jpeg(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_text("text")
    dataset = ImageFolderDataset(tmp_path, training_transform(16, 8))
    batches = list(DataLoader(dataset, batch_size=1, num_workers=2))
    assert len(batches) == 2 and all(b.shape == (1, 3, 8, 8) for b in batches)
    assert dataset.skipped == 1
