"""What ``eval.py`` does: evaluate trained models on content/style pairs (pairing, stylising,
metrics, tables and figures). ``scripts/ablation.py`` calls ``evaluate`` directly."""
import math
import re
import sys
import time
from dataclasses import astuple, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from function import reinhard
from glfa.checkpoint import load_decoder, load_encoder
from glfa.errors import UserError
from glfa.figures import comparison_figure, contact_sheet
from glfa.images import list_images, read_image, save_image_file, thumbnail
from glfa.device import resolve_device
from glfa.inference import Stylizer
from glfa.metrics import StyleDistance, edge_ssim, luminance_ssim, tone_figures
from glfa.paths import default_vgg
from glfa.runfolder import RunFolder, shipped_model
from glfa.segments import LabelMap, check_map_file, maps_by_name, read_label_map
from glfa.options import RunOptions, StylizeOptions
from glfa.tables import markdown_table, write_csv
from net import AdaIN, parse_mode

# The evaluation's images, unless told otherwise: shorter sides of 512 px (the reference code's
# test size), the models' raw output (``eval.py`` asks for the mode's finish), on the CPU.
EVALUATION = StylizeOptions(content_size=512, style_size=512, smooth=None)
EVALUATION_RUN = RunOptions(device="cpu")
MODEL_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
SHIPPED_NAME = "shipped"
RAW_SUFFIX = "+raw"
SEGMENTED_SUFFIX = "+seg"
AUTO_SUFFIX = "+auto"


@dataclass(frozen=True)
class Pair:
    """A content image and the style image it is evaluated with, and their segmentation maps
    when they have them."""

    name: str
    content: Path
    style: Path
    content_seg: Path | None = None
    style_seg: Path | None = None


@dataclass(frozen=True)
class ModelFiles:
    """A trained model: decoder and transform checkpoints and the transform's kind."""

    name: str
    decoder: Path
    transform: Path
    kind: str


@dataclass
class Row:
    """The metrics of one model on one pair (or their average, ``pair == "average"``, or its
    standard error, ``pair == "stderr"``): structure and style, the time, then the tone figures
    (``glfa.metrics.tone_figures``)."""

    pair: str
    model: str
    ssim: float
    edge_ssim: float
    gram_loss: float
    mean_std_loss: float
    seconds: float
    black_shift: float
    clipped: float
    tonal_range: float
    cast: float


METRIC_HEADERS = {"ssim": "SSIM ↑", "edge_ssim": "edge SSIM ↑", "gram_loss": "Gram loss ↓",
                  "mean_std_loss": "mean/std loss ↓", "seconds": "s / image", "black_shift": "black shift",
                  "clipped": "clipped", "tonal_range": "tonal range", "cast": "cast ↓"}
METRIC_FORMATS = {"ssim": ".4f", "edge_ssim": ".4f", "gram_loss": ".4g", "mean_std_loss": ".4g", "seconds": ".3f",
                  "black_shift": "+.3f", "clipped": "+.4f", "tonal_range": ".3f", "cast": ".2f"}


# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------

def trailing_number(path: Path) -> int | None:
    """The number a file name ends with (``in7.png`` → 7), or None."""
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else None


def images_by_number(folder: str | Path, what: str) -> dict[int, Path]:
    images = list_images(folder)
    if not images:
        raise UserError(f"no {what} images in {folder}")
    by_number: dict[int, Path] = {}
    for path in images:
        number = trailing_number(path)
        if number is None:
            continue
        if number in by_number:
            raise UserError(f"two {what} images numbered {number}: {by_number[number]} and {path}")
        by_number[number] = path
    return by_number


def pairs_by_number(content_dir: str | Path, style_dir: str | Path) -> list[Pair]:
    """Content and style images paired by the number their names end with (``in7`` with ``tar7``).

    Images whose number has no partner are reported on stderr and left out.
    """
    contents, styles = images_by_number(content_dir, "content"), images_by_number(style_dir, "style")
    common = sorted(contents.keys() & styles.keys())
    if not common:
        raise UserError(f"no content image in {content_dir} shares its number with a style image in {style_dir} "
                        "(names like in7.png and tar7.png are paired)")
    unmatched = sorted(contents.keys() ^ styles.keys())
    if unmatched:
        print(f"warning: no partner for image number(s) {', '.join(map(str, unmatched))}; left out", file=sys.stderr)
    return [Pair(f"{contents[n].stem}_{styles[n].stem}", contents[n], styles[n]) for n in common]


def read_text_file(path: Path) -> str:
    """A text file the user named, as UTF-8 (a byte-order mark allowed); other bytes, even in a
    comment, are a ``UserError`` naming the file, the line and the byte position."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise UserError(f"{path} is not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} (line {line}); "
                        "save it as UTF-8") from None


def read_pairs_file(path: str | Path) -> list[Pair]:
    """Pairs listed one per line as ``content style`` (comma- or whitespace-separated; ``#``
    starts a comment). Relative paths are taken from the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pairs file not found: {path}")
    pairs: list[Pair] = []
    for number, line in enumerate(read_text_file(path).splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")] if "," in line else line.split()
        if len(parts) != 2 or not all(parts):
            raise UserError(f"{path}:{number}: expected 'content_image style_image', got {line!r}")
        content, style = (p if Path(p).is_absolute() else path.parent / p for p in map(Path, parts))
        for image in (content, style):
            if not image.is_file():
                raise UserError(f"{path}:{number}: image not found: {image}")
        pairs.append(Pair(f"{content.stem}_{style.stem}", content, style))
    if not pairs:
        raise UserError(f"{path} lists no pairs")
    names = [p.name for p in pairs]
    return [Pair(f"{p.name}_{i}" if names.count(p.name) > 1 else p.name, p.content, p.style)
            for i, p in enumerate(pairs, 1)]


def all_pairs(content_dir: str | Path, style_dir: str | Path) -> list[Pair]:
    """Every content image with every style image (for folders like ``test/`` whose names are
    not numbered pairs), content-major."""
    contents, styles = list_images(content_dir), list_images(style_dir)
    for images, folder, what in ((contents, content_dir, "content"), (styles, style_dir, "style")):
        if not images:
            raise UserError(f"no {what} images in {folder}")
    return [Pair(f"{c.stem}_{s.stem}", c, s) for c in contents for s in styles]


def find_pairs(pairs_dir: str | Path | None = None, content_dir: str | Path | None = None,
               style_dir: str | Path | None = None, pairs_file: str | Path | None = None,
               every_pair: bool = False) -> list[Pair]:
    """The pairs from one source: a ``pairs_file``, a ``pairs_dir`` holding ``content/`` and
    ``style/``, or ``content_dir`` with ``style_dir``; folders are paired by number, or every
    content with every style when ``every_pair``."""
    if pairs_file:
        return read_pairs_file(pairs_file)
    if pairs_dir:
        root = Path(pairs_dir)
        if not root.is_dir():
            raise UserError(f"--pairs_dir {root} is not a folder")
        content_dir, style_dir = root / "content", root / "style"
    return all_pairs(content_dir, style_dir) if every_pair else pairs_by_number(content_dir, style_dir)


def with_segments(pairs: list[Pair], pairs_dir: str | Path) -> list[Pair]:
    """The pairs with their maps from ``content_seg/`` and ``style_seg/`` beside ``content/`` and
    ``style/``, matched by file name and checked before any work (``--seg``)."""
    root = Path(pairs_dir)
    for folder in ("content_seg", "style_seg"):
        if not (root / folder).is_dir():
            raise UserError(f"--seg reads the maps in {root / folder}, which is not a folder")
    content_maps = maps_by_name([p.content for p in pairs], None, root / "content_seg", "content")
    style_maps = maps_by_name([p.style for p in pairs], None, root / "style_seg", "style")
    for pair, content_map, style_map in zip(pairs, content_maps, style_maps):
        check_map_file(content_map, pair.content, "content")
        check_map_file(style_map, pair.style, "style")
    return [replace(p, content_seg=c, style_seg=s) for p, c, s in zip(pairs, content_maps, style_maps)]


def pair_maps(pair: Pair) -> tuple[LabelMap, LabelMap] | None:
    """The pair's content and style maps, read; None for a pair without maps."""
    if pair.content_seg is None or pair.style_seg is None:
        return None
    return read_label_map(pair.content_seg, "content"), read_label_map(pair.style_seg, "style")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

def latest_checkpoints(folder: Path) -> tuple[Path, Path, str]:
    """The decoder and transform of the last iteration saved in a training folder, and the kind."""
    if not folder.is_dir():
        raise UserError(f"model folder not found: {folder} (give NAME=DECODER,TRANSFORM[,lct|sct] or NAME=FOLDER)")
    model = RunFolder(folder).latest_model()
    if model is None:
        raise UserError(f"no decoder_iter_N.pth.tar with a matching lct_/sct_iter_N.pth.tar in {folder}")
    return model.decoder, model.transform, model.kind


def parse_model(text: str) -> ModelFiles:
    """``NAME=DECODER,TRANSFORM[,lct|sct]`` or ``NAME=FOLDER`` (the folder's latest checkpoints).

    Without a kind, it is read from the transform file's name (``sct_…`` is SCT, else LCT).
    """
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise UserError(f"--model {text!r}: expected NAME=DECODER,TRANSFORM[,lct|sct] or NAME=FOLDER")
    if not MODEL_NAME.match(name):
        raise UserError(f"--model name {name!r} may only hold letters, digits and _ . + -")
    parts = rest.split(",")
    if len(parts) == 1:
        decoder, transform, kind = latest_checkpoints(Path(parts[0]))
        return ModelFiles(name, decoder, transform, kind)
    if len(parts) not in (2, 3):
        raise UserError(f"--model {text!r}: expected NAME=DECODER,TRANSFORM[,lct|sct]")
    decoder, transform = Path(parts[0]), Path(parts[1])
    kind = parts[2].lower() if len(parts) == 3 else ("sct" if transform.name.lower().startswith("sct") else "lct")
    if kind not in ("lct", "sct"):
        raise UserError(f"--model {text!r}: the transform kind must be lct or sct, got {parts[2]!r}")
    return ModelFiles(name, decoder, transform, kind)


class Reinhard:
    """Reinhard colour transfer as an evaluated "model" (no network; maps are not used)."""

    def stylize(self, content: torch.Tensor, styles: list[torch.Tensor],
                maps: tuple[LabelMap, LabelMap] | None = None) -> torch.Tensor:
        return reinhard(content, styles[0])


@dataclass(frozen=True)
class Configured:
    """How one row stylises with a loaded ``Stylizer``: with ``options`` (the blend, the finish or
    none for ``NAME+raw``, ``auto_regions`` for ``NAME+autoK``), and region by region with each
    pair's maps when ``with_maps`` (``NAME+seg``)."""

    stylizer: Stylizer
    options: StylizeOptions
    with_maps: bool = False

    def stylize(self, content: torch.Tensor, styles: list[torch.Tensor],
                maps: tuple[LabelMap, LabelMap] | None = None) -> torch.Tensor:
        masks = {}
        if self.with_maps:
            if maps is None:
                raise UserError("a +seg row needs the pairs' maps (--seg with --pairs_dir)")
            masks = dict(content_mask=maps[0], style_masks=[maps[1]])
        return self.stylizer.stylize(content, styles, options=self.options, **masks)


@dataclass(frozen=True)
class Lineup:
    """What is evaluated: the ``models`` (their encoder ``vgg`` of ``mode``; None: the mode's in
    ``models/``), with ``raw`` each model's unfinished output too (``NAME+raw``), and the
    ``baselines``: ``reinhard`` (colour transfer, no network) and ``adain`` (AdaIN decoded by
    ``adain_decoder``, by default the first model's decoder), at full stylisation, unfinished."""

    models: Sequence[ModelFiles]
    vgg: str | Path | None = None
    mode: str = "photo"
    baselines: tuple[str, ...] = ()
    raw: bool = False
    adain_decoder: str | Path | None = None


@dataclass(frozen=True)
class Figures:
    """The comparison figures: the region enlarged (x, y, w, h as fractions; None: no zoom) and
    each panel's height in px."""

    zoom: tuple[float, float, float, float] | None = (0.4, 0.4, 0.25, 0.25)
    height: int = 256


BASELINES = ("reinhard", "adain")


def baseline_list(text: str) -> list[str]:
    """``--baselines reinhard,adain``: known names, comma-separated."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown or not names:
        raise ValueError(f"unknown baseline(s) {', '.join(unknown) or text!r}: choose from {', '.join(BASELINES)}")
    return names


def shipped_model_spec() -> ModelFiles:
    """The shipped photo model, the default ``--model``."""
    decoder, transform = shipped_model()
    return ModelFiles(SHIPPED_NAME, decoder, transform, "lct")


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

def evaluate(pairs: list[Pair], lineup: Lineup, output: str | Path, options: StylizeOptions = EVALUATION,
             run: RunOptions = EVALUATION_RUN, figures: Figures = Figures()) -> list[Row]:
    """Stylise every pair with every model of the ``lineup`` and measure it; write the results, a
    comparison figure per pair and a contact sheet under ``output``. Returns one row per pair and
    model.

    The images are read at ``options``' sizes (``content_size`` and ``style_size``, or
    ``long_side``), and the models stylise with them (the blend, the finish or none) as
    ``test.py`` does; the lineup adds the raw rows and the baselines. Pairs with maps
    (``with_segments``) add a row per model, ``NAME+seg``, stylised region by region, and
    ``options.auto_regions`` K adds ``NAME+autoK``, with K automatic regions (the models' own
    rows are global). A non-finite metric is an error for that model.

    On a GPU, every new combination of image sizes is stylised once untimed first, so the time
    per image leaves out one-off costs (cuDNN picks its algorithms per size).
    ``metrics.csv`` is rewritten after every pair, so an interrupted run keeps its numbers.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} exists and is not a folder")
    run = replace(run, device=resolve_device(run.device))
    spec = parse_mode(lineup.mode)
    lineup = replace(lineup, vgg=default_vgg(spec) if lineup.vgg is None else lineup.vgg)
    distance = StyleDistance(load_encoder(lineup.vgg, spec).to(run.device), spec)
    stylizers = evaluated_stylizers(lineup, options, run, segmented=any(pair.content_seg for pair in pairs))
    for folder in ["figures", *(f"results/{name}" for name in stylizers)]:
        (output / folder).mkdir(parents=True, exist_ok=True)

    rows: list[Row] = []
    sheet: list[tuple[str, list[torch.Tensor]]] = []
    sizes_seen: set[tuple[torch.Size, torch.Size]] = set()
    for pair in tqdm(pairs, desc="evaluate", dynamic_ncols=True):
        content = read_image(pair.content, options.content_size, long_side=options.long_side)
        style = read_image(pair.style, options.style_size, long_side=options.long_side)
        warm_up = run.device.type == "cuda" and (content.shape, style.shape) not in sizes_seen
        sizes_seen.add((content.shape, style.shape))
        style_feats, results, maps = distance.features(style), {}, pair_maps(pair)
        for name, stylizer in stylizers.items():
            row, results[name] = measure(partial(stylizer.stylize, maps=maps), content, style, style_feats, distance,
                                         warm_up)
            rows.append(Row(pair.name, name, *row))
            save_image_file(results[name], output / "results" / name / f"{pair.name}.png")
        comparison_figure(content, style, results, figures.zoom, figures.height).save(
            output / "figures" / f"{pair.name}.png")
        sheet.append((pair.name, [thumbnail(image) for image in (content, style, *results.values())]))
        write_metrics_csv(rows, output / "metrics.csv")
    contact_sheet(sheet, ["content", "style", *stylizers]).save(output / "contact_sheet.png")
    check_metrics_finite(rows)
    return rows


def evaluated_stylizers(lineup: Lineup, options: StylizeOptions, run: RunOptions,
                        segmented: bool = False) -> dict[str, "Configured | Reinhard"]:
    """Every evaluated row by name, in table order: the models with ``options`` (their automatic
    regions aside), with ``lineup.raw`` their unfinished versions, their region-wise versions
    (``segmented``: with maps; ``options.auto_regions``), then the baselines (at full
    stylisation, unfinished). Each model is loaded once, with the encoder ``lineup.vgg``."""
    spec, auto_regions = parse_mode(lineup.mode), options.auto_regions
    models, options = lineup.models, options.replace(auto_regions=0)
    loaded = {m.name: Stylizer.from_checkpoints(m.decoder, m.transform, vgg=lineup.vgg, mode=spec, kind=m.kind,
                                                run=run, options=options)
              for m in models}
    rows = {m.name: Configured(loaded[m.name], options) for m in models}
    if lineup.raw:
        rows |= {m.name + RAW_SUFFIX: Configured(loaded[m.name], options.replace(smooth=None)) for m in models}
    if segmented:
        rows |= {m.name + SEGMENTED_SUFFIX: Configured(loaded[m.name], options, with_maps=True) for m in models}
    if auto_regions:
        rows |= {f"{m.name}{AUTO_SUFFIX}{auto_regions}": Configured(loaded[m.name],
                                                                     options.replace(auto_regions=auto_regions))
                 for m in models}
    names = [*rows, *lineup.baselines]
    if len(set(names)) != len(names):
        raise UserError(f"model names must differ, got {', '.join(names)}")
    if "adain" in lineup.baselines:
        first = loaded[models[0].name]
        decoder = first.decoder if lineup.adain_decoder is None else load_decoder(lineup.adain_decoder, spec)
        baseline = options.replace(alpha=1.0, smooth=None)
        rows["adain"] = Configured(Stylizer(first.encoder, decoder, AdaIN(), spec, run=run, options=baseline), baseline)
    if "reinhard" in lineup.baselines:
        rows["reinhard"] = Reinhard()
    return {name: rows[name] for name in names}


def measure(stylize: Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor], content: torch.Tensor,
            style: torch.Tensor, style_feats: list[torch.Tensor], distance: StyleDistance,
            warm_up: bool) -> tuple[tuple[float, ...], torch.Tensor]:
    """The metrics of one pair stylised by ``stylize(content, [style])`` (``Row``'s order after
    its names) and the result, against the style's features ``style_feats``; with ``warm_up``,
    one untimed call first."""
    if warm_up:
        stylize(content, [style])
    start = time.perf_counter()
    result = stylize(content, [style])
    seconds = time.perf_counter() - start
    losses = distance.losses(distance.features(result), style_feats)
    return (luminance_ssim(result, content), edge_ssim(result, content), losses["gram_loss"],
            losses["mean_std_loss"], seconds, *tone_figures(result, content, style).values()), result


def check_metrics_finite(rows: list[Row]) -> None:
    """A NaN or infinite metric means a broken model (or image): an error naming where, not a number."""
    broken = [f"{r.model} on {r.pair} ({m} = {getattr(r, m)})" for r in rows for m in METRICS
              if not math.isfinite(getattr(r, m))]
    if broken:
        raise UserError(f"non-finite metric(s) for {'; '.join(broken[:3])}"
                        f"{f' and {len(broken) - 3} more' if len(broken) > 3 else ''}; "
                        "the per-pair numbers are in metrics.csv")


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

METRICS = tuple(f.name for f in fields(Row) if f.name not in ("pair", "model"))


def average_rows(rows: list[Row]) -> list[Row]:
    """One row per model with every metric averaged over the pairs, in the models' order."""
    return [Row("average", model, *values.mean(0).tolist()) for model, values in metric_values(rows).items()]


def standard_error_rows(rows: list[Row]) -> list[Row]:
    """One row per model with the standard error of each metric's mean over the pairs
    (sample standard deviation / √pairs; NaN for a single pair)."""
    return [Row("stderr", model, *((values.std(0) / len(values) ** 0.5).tolist() if len(values) > 1
                                   else [math.nan] * len(METRICS)))
            for model, values in metric_values(rows).items()]


def metric_values(rows: list[Row]) -> dict[str, torch.Tensor]:
    """Each model's metrics as a ``(pairs, metrics)`` float64 tensor, in the models' order."""
    return {model: torch.tensor([[getattr(r, m) for m in METRICS] for r in rows if r.model == model],
                                dtype=torch.float64)
            for model in dict.fromkeys(r.model for r in rows)}


def write_metrics_csv(rows: list[Row], path: str | Path) -> None:
    """Rows as CSV with full precision, one line per pair and model."""
    write_csv(path, [f.name for f in fields(Row)], map(astuple, rows))


def metrics_table(rows: list[Row], label_headers: tuple[str, ...] = ("model",),
                  labels: list[list[str]] | None = None, errors: list[Row] | None = None) -> str:
    """A Markdown table of ``rows``: label columns (by default the rows' fields named in
    ``label_headers``; ``labels`` gives other values, one list per row), then the metrics, each
    followed by ``± error`` when ``errors`` gives one row of standard errors per row."""
    if labels is None:
        labels = [[str(getattr(r, h)) for h in label_headers] for r in rows]

    def cell(row: Row, error: Row | None, metric: str) -> str:
        value = format(getattr(row, metric), METRIC_FORMATS[metric])
        spread = METRIC_FORMATS[metric].lstrip("+")                     # an error has no sign
        return value if error is None else f"{value} ± {format(getattr(error, metric), spread)}"

    return markdown_table([*label_headers, *(METRIC_HEADERS[m] for m in METRICS)],
                          ([*row_labels, *(cell(r, e, m) for m in METRICS)]
                           for r, e, row_labels in zip(rows, errors or [None] * len(rows), labels)))


def report(rows: list[Row]) -> str:
    """The Markdown report: per model the mean ± standard error over the pairs, then every pair."""
    pairs = len(dict.fromkeys(r.pair for r in rows))
    averages = metrics_table(average_rows(rows), errors=standard_error_rows(rows))
    return (f"### Mean ± standard error over {pairs} pair(s)\n\n{averages}\n\n"
            f"### Per pair\n\n{metrics_table(rows, ('pair', 'model'))}\n")


def write_tables(rows: list[Row], output: str | Path) -> str:
    """Write ``metrics.csv`` (per pair, then the means and their standard errors) and ``metrics.md``;
    return the Markdown."""
    output = Path(output)
    write_metrics_csv(rows + average_rows(rows) + standard_error_rows(rows), output / "metrics.csv")
    text = report(rows)
    (output / "metrics.md").write_text(text)
    return text
