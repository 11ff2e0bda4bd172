"""Figures drawn with Pillow: labelled comparisons with zoomed insets, contact sheets, line
charts, strips of frames and animated GIFs. Images come in as ``(3, H, W)`` tensors in [0, 1]."""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from glfa.images import to_pil

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
INSET_OUTLINE = (255, 40, 40)
SERIES_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189))
LABEL_HEIGHT = 22
GAP = 6


def font(size: int = 14) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` (scalable where FreeType is present)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: only the fixed bitmap font
        return ImageFont.load_default()


def resize_to_height(image: Image.Image, height: int) -> Image.Image:
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def _centred_text(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], text: str,
                  typeface: ImageFont.ImageFont) -> None:
    left, top, right, bottom = box
    width = draw.textlength(text, font=typeface)
    while width > right - left and len(text) > 1:
        text = text[:-4] + "..."
        width = draw.textlength(text, font=typeface)
    draw.text(((left + right - width) / 2, (top + bottom) / 2), text, fill=TEXT, font=typeface, anchor="lm")


def zoom_pixels(zoom: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """A zoom box given as fractions ``(x, y, w, h)`` of the image, in pixels ``(left, top, right, bottom)``."""
    x, y, w, h = zoom
    left, top = int(x * width), int(y * height)
    return left, top, max(left + 1, round((x + w) * width)), max(top + 1, round((y + h) * height))


def comparison_figure(content: Tensor, style: Tensor, results: dict[str, Tensor],
                      zoom: tuple[float, float, float, float] | None = (0.4, 0.4, 0.25, 0.25),
                      height: int = 256) -> Image.Image:
    """Content, style and each result side by side, labelled, all ``height`` px tall.

    With ``zoom`` (fractions ``x, y, w, h`` of the content frame), the region is outlined on
    the content and every result and shown enlarged beneath them, as in the paper's figures;
    the insets are cut from the full-resolution images, so they show detail the panels cannot.
    """
    originals = [("content", to_pil(content), True), ("style", to_pil(style), False)]
    originals += [(name, to_pil(image), True) for name, image in results.items()]
    panels = [(label, original, resize_to_height(original, height), zoomed) for label, original, zoomed in originals]
    inset_height = 0
    if zoom is not None:
        left, top, right, bottom = zoom_pixels(zoom, panels[0][2].width, height)
        inset_height = min(round(panels[0][2].width * (bottom - top) / (right - left)), 2 * height)

    total_width = sum(panel.width for _, _, panel, _ in panels) + GAP * (len(panels) + 1)
    total_height = LABEL_HEIGHT + height + GAP * 2 + (inset_height + GAP if inset_height else 0)
    canvas = Image.new("RGB", (total_width, total_height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    typeface = font()
    image_top, inset_top = LABEL_HEIGHT + GAP, LABEL_HEIGHT + height + GAP * 2
    x = GAP
    for label, original, panel, zoomed in panels:
        _centred_text(draw, (x, 0, x + panel.width, LABEL_HEIGHT), label, typeface)
        canvas.paste(panel, (x, image_top))
        if inset_height and zoomed:
            box = zoom_pixels(zoom, panel.width, panel.height)
            draw.rectangle((x + box[0], image_top + box[1], x + box[2] - 1, image_top + box[3] - 1),
                           outline=INSET_OUTLINE, width=2)
            crop = original.crop(zoom_pixels(zoom, original.width, original.height))
            enlarging = crop.width < panel.width
            inset = crop.resize((panel.width, inset_height),
                                Image.Resampling.NEAREST if enlarging else Image.Resampling.LANCZOS)
            canvas.paste(inset, (x, inset_top))
            draw.rectangle((x, inset_top, x + panel.width - 1, inset_top + inset_height - 1),
                           outline=INSET_OUTLINE, width=2)
        x += panel.width + GAP
    return canvas


def stack_vertically(images: list[Image.Image], gap: int = GAP) -> Image.Image:
    """Figures one above the other, left-aligned on a white canvas, ``gap`` px apart."""
    canvas = Image.new("RGB", (max(image.width for image in images),
                               sum(image.height for image in images) + gap * (len(images) - 1)), BACKGROUND)
    top = 0
    for image in images:
        canvas.paste(image, (0, top))
        top += image.height + gap
    return canvas


def contact_sheet(rows: list[tuple[str, list[Tensor]]], column_labels: list[str], height: int = 128) -> Image.Image:
    """A grid of thumbnails ``height`` px tall: one labelled row per entry of ``rows``
    (name, images), one labelled column per image; a row may hold fewer images than columns."""
    typeface = font()
    label_width = max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(name, font=typeface))
                      for name, _ in rows) + 2 * GAP
    thumbs = [[resize_to_height(to_pil(image), height) for image in images] for _, images in rows]
    widths = [max(row[col].width for row in thumbs if col < len(row)) for col in range(len(column_labels))]
    canvas = Image.new("RGB", (label_width + sum(widths) + GAP * len(widths),
                               LABEL_HEIGHT + (height + GAP) * len(rows)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    lefts = np.cumsum([label_width] + [w + GAP for w in widths[:-1]]).tolist()
    for label, left, width in zip(column_labels, lefts, widths):
        _centred_text(draw, (left, 0, left + width, LABEL_HEIGHT), label, typeface)
    for row_index, ((name, _), row) in enumerate(zip(rows, thumbs)):
        top = LABEL_HEIGHT + row_index * (height + GAP)
        _centred_text(draw, (0, top, label_width, top + height), name, typeface)
        for thumb, left, width in zip(row, lefts, widths):
            canvas.paste(thumb, (left + (width - thumb.width) // 2, top))
    return canvas


def line_chart(series: dict[str, list[float]], title: str, x_label: str, y_label: str,
               size: tuple[int, int] = (640, 360), x: list[float] | None = None) -> Image.Image:
    """A plain line chart of one or more equally long series against ``x`` (default: their
    1-based index)."""
    width, height = size
    margin_left, margin_right, margin_top, margin_bottom = 70, 20, 40, 50
    plot = (margin_left, margin_top, width - margin_right, height - margin_bottom)
    values = np.array([v for vs in series.values() for v in vs], dtype=np.float64)
    low, high = 0.0, float(values.max()) if values.size else 1.0
    high = high * 1.05 if high > 0 else 1.0
    count = max(len(vs) for vs in series.values())
    x = list(range(1, count + 1)) if x is None else x
    x_low, x_high = min(x), max(x) if max(x) > min(x) else min(x) + 1

    canvas = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    typeface, small = font(15), font(11)
    _centred_text(draw, (0, 0, width, margin_top - 10), title, typeface)
    _centred_text(draw, (plot[0], height - 22, plot[2], height - 4), x_label, small)
    draw.text((4, margin_top - 22), y_label, fill=TEXT, font=small)
    draw.rectangle(plot, outline=TEXT)

    def to_xy(index: int, value: float) -> tuple[float, float]:
        across = plot[0] + (x[index] - x_low) / (x_high - x_low) * (plot[2] - plot[0])
        return across, plot[3] - (value - low) / (high - low) * (plot[3] - plot[1])

    for tick in np.linspace(low, high, 5):
        _, y = to_xy(0, tick)
        draw.line((plot[0] - 4, y, plot[0], y), fill=TEXT)
        draw.text((plot[0] - 6, y), f"{tick:.3g}", fill=TEXT, font=small, anchor="rm")
    for index in sorted({0, count - 1, (count - 1) // 2}):
        across, _ = to_xy(index, low)
        draw.line((across, plot[3], across, plot[3] + 4), fill=TEXT)
        label = str(int(x[index])) if float(x[index]).is_integer() else f"{x[index]:.3g}"
        draw.text((across, plot[3] + 6), label, fill=TEXT, font=small, anchor="mt")
    for row, (name, vs) in enumerate(series.items()):
        colour = SERIES_COLOURS[row % len(SERIES_COLOURS)]
        points = [to_xy(i, v) for i, v in enumerate(vs)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
        legend_y = plot[1] + 8 + row * 16
        draw.line((plot[0] + 10, legend_y, plot[0] + 30, legend_y), fill=colour, width=3)
        draw.text((plot[0] + 36, legend_y), name, fill=TEXT, font=small, anchor="lm")
    return canvas


def image_rows(rows: list[tuple[str, list[Tensor]]], height: int = 96) -> Image.Image:
    """Labelled rows of images (e.g. content frames, stylised frames, difference maps)."""
    columns = max(len(images) for _, images in rows)
    return contact_sheet(rows, [str(i + 1) for i in range(columns)], height)


def save_gif(frames: list[Image.Image], path: str | Path, fps: float = 10.0) -> None:
    """An endlessly looping animated GIF of equally sized frames."""
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=max(1, round(1000 / fps)), loop=0)
