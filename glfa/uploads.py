"""Uploads decoded within bounds: an uploaded file's bytes made an RGB photo of at most a given side
and pixel budget, in bounded memory and time, with Pillow alone (no Gradio).

A file that declares a huge image costs neither gigabytes nor minutes: an image that would
decode to more than the budget is refused before decoding, a JPEG is decoded at a reduced scale
and other formats are reduced strip by strip. Whatever is not an image Pillow itself reads is
one ``UserError``, never an exception from Pillow.
"""
import io
import warnings

import numpy as np
from PIL import Image

from glfa.errors import UserError
from glfa.images import ORIENTATION_TAG, to_rgb

MAX_PIXELS = 100_000_000          # pixels one photo may decode to (4 bytes each at most)
REDUCING_GAP = 2                  # box-reduce to about twice the final size, then Lanczos (Pillow's thumbnail)
STRIP_PIXELS = 2**21              # pixels converted at a time while reducing a large image
# Pillow's own decoders for the extensions data.IMAGE_EXTENSIONS lists (JPEG opens phones' MPO
# files too); formats Pillow hands to outside programs through temporary files (EPS) are left out.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM")
AVERAGEABLE = ("L", "LA", "RGB", "RGBA")  # modes Pillow's reduce averages correctly
TRANSPOSES = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def scaled_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` scaled down to at most ``max_side`` px on a side (unchanged if it fits)."""
    width, height = size
    if max(width, height) <= max_side:
        return size
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _grey_scale(image: Image.Image) -> float | None:
    """The factor taking 16- and 32-bit greyscale to 8 bits (``data.to_rgb``'s rule, decided once
    for the whole image so that every strip gets the same), None for other modes."""
    if image.mode.startswith("I;16"):
        return 255 / 65535
    if image.mode in ("I", "F"):
        return 255 / (65535 if image.getextrema()[1] > 255 else 255)
    return None


def _reduced_rgb(image: Image.Image, factor: int) -> Image.Image:
    """``image`` as 8-bit RGB reduced ``factor`` times (box average), strip by strip: only Pillow's
    decoded image and one strip are ever held at full size, and no float64 copy is made. Strips in
    ``AVERAGEABLE`` modes are reduced before they are converted (transparency is averaged
    premultiplied, so this equals converting first), which is far cheaper."""
    scale = _grey_scale(image)
    width, height = image.size
    rows = factor * max(1, STRIP_PIXELS // (width * factor))
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(top + rows, height)))
        if scale is not None:
            values = np.asarray(strip, dtype=np.float32) * scale + 0.5
            strip = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L")
        if strip.mode not in AVERAGEABLE:  # palettes, bilevel, CMYK…: their values cannot be averaged as they are
            strip = to_rgb(strip)
        if factor > 1:
            strip = strip.reduce(factor)
        reduced.paste(to_rgb(strip), (0, top // factor))
    return reduced


def decode_upload(data: bytes, max_side: int, max_pixels: int = MAX_PIXELS,
                  what: str = "The image") -> tuple[Image.Image, str | None]:
    """An uploaded file's bytes as an RGB image at most ``max_side`` px on a side (EXIF orientation
    applied), and a note for the page when it was scaled down.

    Memory and time stay bounded whatever the file declares: an image that would decode to more
    than ``max_pixels`` is refused before decoding, a JPEG is decoded at a reduced scale (``draft``),
    and other formats are reduced strip by strip. A file that is not an image Pillow reads itself
    (``UPLOAD_FORMATS``), is truncated or is a decompression bomb is a ``UserError`` starting with
    ``what``, never an exception from Pillow.
    """
    unreadable = UserError(f"{what} is not an image this demo can read: upload a JPEG, PNG, WebP, GIF, "
                           "BMP, TIFF or PPM file")
    too_large = f"{what} is larger than this demo decodes (at most {max_pixels / 1e6:g} Mpx)"
    try:
        with warnings.catch_warnings():  # our budget is tighter than Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
    except Image.DecompressionBombError:
        raise UserError(too_large) from None
    except Exception:  # noqa: BLE001 - untrusted bytes: any failure of Pillow means "not an image"
        raise unreadable from None
    with image:
        width, height = image.size
        target = scaled_size(image.size, max_side)
        if target != image.size and image.format in ("JPEG", "MPO"):
            image.draft(None, (target[0] * REDUCING_GAP, target[1] * REDUCING_GAP))
        if image.width * image.height > max_pixels:
            raise UserError(f"{too_large}: it is {width}×{height} px")
        factor = max(1, min(image.width // (target[0] * REDUCING_GAP), image.height // (target[1] * REDUCING_GAP)))
        try:
            reduced = _reduced_rgb(image, factor)
            orientation = image.getexif().get(ORIENTATION_TAG, 1)
        except Exception:  # noqa: BLE001 - a truncated or corrupt file fails while decoding
            raise unreadable from None
    result = reduced if reduced.size == target else reduced.resize(target, Image.Resampling.LANCZOS)
    if orientation in TRANSPOSES:
        result = result.transpose(TRANSPOSES[orientation])
    note = None if target == (width, height) else (
        f"{what} was scaled down from {width}×{height} to {result.width}×{result.height} px "
        f"(this demo takes at most {max_side} px on a side).")
    return result, note
