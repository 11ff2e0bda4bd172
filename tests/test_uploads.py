"""Bounded decoding of the demo's uploads (glfa/uploads.py), tested where Gradio is absent too:
large photos scaled down with a note, every mode converted as the whole image would be, files
that are not images in one line, and decompression bombs refused or decoded in bounded memory and
time (measured in a subprocess)."""
import io
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import glfa.uploads
from glfa.errors import UserError
from glfa.images import ORIENTATION_TAG, to_rgb
from glfa.uploads import MAX_PIXELS, decode_upload
from helpers import NOT_AN_IMAGE, REPO_ROOT, encoded, photo_bytes, png_file

MAX_SIDE = 256


def test_decoding_uploads_needs_no_gradio():
    code = "import sys, glfa.uploads; print(sorted(m for m in ('gradio', 'fastapi', 'uvicorn') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_large_photos_are_decoded_scaled_down_with_a_note():
    for fmt in ("JPEG", "PNG"):
        image, note = decode_upload(photo_bytes(1500, 600, fmt), MAX_SIDE, what="The content photo")
        assert image.size == (256, 102) and image.mode == "RGB"
        assert note == ("The content photo was scaled down from 1500×600 to 256×102 px "
                        "(this demo takes at most 256 px on a side).")
    image, note = decode_upload(photo_bytes(200, 120), MAX_SIDE)
    assert image.size == (200, 120) and note is None


def test_orientation_greyscale_depths_and_transparency_match_the_whole_image_conversion(monkeypatch):
    """Strip by strip (forced small here), reduced or not, every mode gives what converting the
    whole image with ``data.to_rgb`` and resizing it gives."""
    monkeypatch.setattr(glfa.uploads, "STRIP_PIXELS", 5000)
    ramp = np.linspace(0, 1, 600 * 300).reshape(300, 600)
    images = {"I;16": Image.fromarray((ramp * 65535).astype(np.uint16)),
              "I": Image.fromarray((ramp * 40000).astype(np.int32)), "F": Image.fromarray(ramp.astype(np.float32) * 200),
              "RGBA": Image.open(io.BytesIO(photo_bytes(600, 300))).convert("RGBA"), "P": Image.new("P", (600, 300))}
    images["RGBA"].putalpha(Image.fromarray((ramp * 255).astype(np.uint8)))
    images["P"].putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    images["P"].paste(1, (100, 50, 400, 250))
    images["P"].info["transparency"] = 0
    for mode, image in images.items():
        for max_side in (600, 150):
            decoded, _ = decode_upload(encoded(image, "TIFF" if mode in ("I", "F") else "PNG"), max_side)
            expected = to_rgb(image).resize(decoded.size, Image.Resampling.LANCZOS)
            difference = np.abs(np.asarray(decoded, float) - np.asarray(expected, float)).mean()
            assert decoded.size == (max_side, max_side // 2) and difference < 1.5, (mode, max_side, difference)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6                           # stored sideways: turn it a quarter
    turned, note = decode_upload(photo_bytes(300, 100, "JPEG", exif=exif.tobytes()), MAX_SIDE)
    assert turned.size == (85, 256) and "from 300×100 to 85×256 px" in note


def test_files_that_are_not_images_get_a_one_line_message():
    postscript = encoded(Image.open(io.BytesIO(photo_bytes(64, 64))), "EPS")  # Pillow would run Ghostscript
    for data in (b"not a photo\n" * 100, b"", photo_bytes(96, 96, "JPEG")[:300], photo_bytes(96, 96)[:-40],
                 postscript):
        with pytest.raises(UserError) as raised:
            decode_upload(data, MAX_SIDE, what="The style photo")
        assert str(raised.value) == f"The style photo {NOT_AN_IMAGE}"
    with pytest.raises(UserError, match=r"^The image is larger than this demo decodes \(at most 0.01 Mpx\): "
                                        r"it is 200×120 px$"):
        decode_upload(photo_bytes(200, 120), MAX_SIDE, max_pixels=10_000)


def bomb_png(path: Path, size: int, mode: str) -> Path:
    """A ``size``×``size`` PNG of one colour in ``mode`` (L, I;16 or RGBA), written a block of rows
    at a time: a few hundred KB on disk, gigabytes decoded."""
    colour_type, depth, pixel = {"L": (0, 8, b"\x80"), "I;16": (0, 16, b"\x12\x34"),
                                 "RGBA": (6, 8, bytes([10, 20, 30, 128]))}[mode]
    row = b"\0" + pixel * size
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row * 64) for _ in range(size // 64))
    data += compressor.compress(row * (size % 64)) + compressor.flush()
    path.write_bytes(png_file(size, size, colour_type, depth, data))
    return path


# Run in a fresh interpreter whose big buffers are all mmapped (so freed memory leaves the process):
# for each file and pixel budget, the peak resident memory above the start of the call and its time.
MEASURE = """
import json, sys, time
from glfa.uploads import decode_upload
from glfa.errors import UserError

def kib(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key))

for path, budget in json.loads(sys.argv[1]):
    data = open(path, "rb").read()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")                             # the peak (VmHWM) starts again from here
    base, started = kib("VmRSS"), time.perf_counter()
    try:
        answer = list(decode_upload(data, 1024, budget, "The photo")[0].size)
    except UserError as err:
        answer = str(err)
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": (kib("VmHWM") - base) / 1024,
                      "answer": answer}), flush=True)
"""


def test_decompression_bombs_are_refused_or_decoded_in_bounded_memory_and_time(tmp_path: Path):
    """The attack's files: 13000² grey, 16-bit grey and RGBA PNGs, and one declaring 30000².
    Within the default budget (100 Mpx) they are refused before decoding; with a budget that
    admits them (200 Mpx) they are decoded at a reduced scale, each under 1 GB above idle (before:
    +1.0, +4.5 and +3.9 GB, and a 500 for the 30000² one)."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("peak memory is read from /proc/self (Linux)")
    files = [bomb_png(tmp_path / f"{name}.png", 13000, mode) for name, mode in (("grey", "L"), ("grey16", "I;16"),
                                                                                ("rgba", "RGBA"))]
    declared = tmp_path / "declared.png"
    declared.write_bytes(png_file(30000, 30000, 0, 8, zlib.compress(b"\0" * 30001 * 4)))
    files.append(declared)
    assert max(path.stat().st_size for path in files) < 700_000
    runs = [(str(path), budget) for budget in (MAX_PIXELS, 200_000_000) for path in files]
    done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(runs)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    refused = "The photo is larger than this demo decodes (at most {:g} Mpx)"
    for (path, budget), result in zip(runs, results):
        if budget == MAX_PIXELS or path == str(declared):
            suffix = "" if path == str(declared) else ": it is 13000×13000 px"
            assert result["answer"] == refused.format(budget / 1e6) + suffix, result
            assert result["peak_mb"] < 50 and result["seconds"] < 1, (path, result)
        else:
            assert result["answer"] == [1024, 1024], result
            assert result["peak_mb"] < 1024 and result["seconds"] < 30, (path, result)
