"""Figures: labelled comparisons with zoomed insets, contact sheets, strips of frames and animated
GIFs drawn with Pillow, and line charts with matplotlib. Images come in as ``(3, H, W)`` tensors
in [0, 1]."""
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from glfa.images import to_pil

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
INSET_OUTLINE = (255, 40, 40)
LABEL_HEIGHT = 22
GAP = 6
CHART_DPI = 100


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
    """A line chart of one or more series against ``x`` (default: their 1-based index), as an
    image of ``size`` pixels (``chart_figure`` draws it)."""
    canvas = FigureCanvasAgg(chart_figure(series, title, x_label, y_label, size, x))
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")


def chart_figure(series: dict[str, list[float]], title: str, x_label: str, y_label: str,
                 size: tuple[int, int], x: list[float] | None) -> Figure:
    """``line_chart``'s matplotlib figure: both axes scaled to the data, with readable ticks."""
    figure = Figure(figsize=(size[0] / CHART_DPI, size[1] / CHART_DPI), dpi=CHART_DPI, layout="constrained")
    axes = figure.add_subplot()
    for name, values in series.items():
        across = list(range(1, len(values) + 1)) if x is None else x[:len(values)]
        axes.plot(across, values, marker="o", markersize=3, linewidth=1.5, label=name)
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.margins(x=0.03, y=0.12)
    axes.grid(color="0.9")
    if x is None or all(float(value).is_integer() for value in x):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    formatter = ScalarFormatter(useMathText=True)   # small values as 9.0 … with a ×10⁻⁴ above the axis
    formatter.set_powerlimits((-3, 4))
    axes.yaxis.set_major_formatter(formatter)
    if len(series) > 1:
        axes.legend(frameon=False)
    return figure


def image_rows(rows: list[tuple[str, list[Tensor]]], height: int = 96) -> Image.Image:
    """Labelled rows of images (e.g. content frames, stylised frames, difference maps)."""
    columns = max(len(images) for _, images in rows)
    return contact_sheet(rows, [str(i + 1) for i in range(columns)], height)


def dithered(image: Image.Image) -> Image.Image:
    """A palette image of an RGB one: 256 colours by a fast octree, pixels dithered onto them."""
    palette = image.quantize(256, method=Image.Quantize.FASTOCTREE)
    return image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)


def save_gif(frames: list[Image.Image], path: str | Path, fps: float = 10.0) -> None:
    """An endlessly looping animated GIF of equally sized frames, each reduced to its own 256
    colours: a fast octree palette, then Floyd-Steinberg dithering onto it (14 ms for a 910×256
    frame, where the GIF writer's own conversion takes 150-200 ms; without the dithering smooth
    skies break into flat patches)."""
    frames = [dithered(frame.convert("RGB")) for frame in frames]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=max(1, round(1000 / fps)), loop=0)
