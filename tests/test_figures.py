"""Line charts drawn with matplotlib: axes scaled to the data, not from 0, with short tick labels."""
import re

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg

from glfa.figures import chart_figure, line_chart

ITERATIONS = [1000, 2000, 3000, 4000, 5000]
SSIM = [0.7136, 0.7566, 0.7752, 0.7829, 0.7854]
GRAM = [0.000887, 0.000919, 0.000936, 0.000927, 0.000904]
MATHTEXT = re.compile(r"^\$\\mathdefault\{(.*)\}\$$")


def drawn_axes(series: dict[str, list[float]], x: list[float] | None = None) -> Axes:
    figure = chart_figure(series, "title", "iteration", "value", (640, 360), x)
    FigureCanvasAgg(figure).draw()
    return figure.axes[0]


def y_labels(axes: Axes) -> list[str]:
    """The y tick labels within the axis, as shown (mathtext's ``$\\mathdefault{…}$`` taken off)."""
    low, high = axes.get_ylim()
    return [MATHTEXT.sub(r"\1", t.get_text()) for t, value in zip(axes.get_yticklabels(), axes.get_yticks())
            if low <= value <= high]


def test_the_y_axis_is_scaled_to_the_data_with_short_labels() -> None:
    for values in (SSIM, GRAM):
        axes = drawn_axes({"score": values}, ITERATIONS)
        low, high = axes.get_ylim()
        spread = max(values) - min(values)
        assert min(values) - 0.3 * spread < low < min(values) and max(values) < high < max(values) + 0.3 * spread
        labels = y_labels(axes)
        assert len(labels) >= 4 and all(len(label) <= 5 for label in labels), labels
    assert axes.yaxis.get_offset_text().get_text()          # tiny values: "×10⁻⁴" once, above the axis
    x_labels = [t.get_text() for t, value in zip(axes.get_xticklabels(), axes.get_xticks())
                if ITERATIONS[0] <= value <= ITERATIONS[-1]]
    assert "1000" in x_labels and "5000" in x_labels and all("." not in label for label in x_labels)


def test_several_series_get_a_legend_and_a_flat_one_still_draws() -> None:
    assert drawn_axes({"a": [1.0, 2.0], "b": [2.0, 1.0]}).get_legend() is not None
    assert drawn_axes({"a": [1.0, 2.0]}).get_legend() is None
    low, high = drawn_axes({"still": [0.0, 0.0, 0.0]}).get_ylim()
    assert low < 0.0 < high


def test_the_chart_image_has_its_size_and_the_line_fills_the_plot() -> None:
    image = line_chart({"SSIM": SSIM}, "SSIM", "iteration", "SSIM", size=(500, 300), x=ITERATIONS)
    assert image.mode == "RGB" and image.size == (500, 300)
    pixels = np.asarray(image).astype(int)
    line = np.abs(pixels - np.array([0x1F, 0x77, 0xB4])).sum(axis=2) < 60     # matplotlib's first colour
    rows = np.nonzero(line.any(axis=1))[0]
    assert rows.max() - rows.min() > 0.5 * image.height      # a rise of 0.07 spans the plot, not a sliver of it
