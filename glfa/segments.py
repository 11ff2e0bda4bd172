"""Segmentation maps in: the benchmark's colour-coded PNGs (any colour is a label) or integer
label arrays, made into label maps the size of their photo and of its encoder feature, and map
files matched to images by name.

Colour maps are anti-aliased (and sometimes saved lossily), so not every colour is a label: a
colour is a label when it covers at least ``LABEL_FRACTION`` of the map and is more than
``MERGE_DISTANCE`` from every more frequent label; every other pixel is snapped to the nearest
label colour. A content and a style label colour that close are the same label. A grey map whose
frequent levels lie that close (labels 0, 1, 2… saved as grey) holds label numbers, matched by
value, as an integer array's are. A map may have
another size than its photo, but the same aspect ratio (within ``ASPECT_SLACK`` pixels); it is
resized with nearest neighbours, then each feature position takes the label most of its pixels
hold.
"""
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

from glfa.errors import UserError
from glfa.images import ORIENTATION_TAG, list_images, to_rgb

LABEL_FRACTION = 0.01       # a colour covering at least 1% of the map can be a label
MERGE_DISTANCE = 24.0       # RGB distance under which a colour is a variant of a more frequent label
ASPECT_SLACK = 3            # pixels (at the coarser of map and photo) a map's sides may be off its photo's ratio
MAX_MAP_PIXELS = 4096 ** 2  # a larger colour map is reduced to this, by nearest neighbours, before its colours are read
COLOUR_CHUNK = 8192         # distinct colours snapped to their nearest label at a time
ROW_CHUNK = 256             # map rows given their labels at a time
NAMED_LABELS = 10           # labels a note names before it counts the rest
GREY_MODES = ("L", "I", "I;16", "I;16B", "I;16L", "I;16N")  # one value a pixel: maybe label numbers (index_values)


@dataclass(frozen=True)
class LabelMap:
    """An ``(H, W)`` int64 label map; ``colours``: its labels are packed ``0xRRGGBB`` colours
    (named ``#rrggbb`` in notes); ``source`` names it in messages."""

    labels: Tensor
    colours: bool = False
    source: str = "the map"

    def name(self, label: int) -> str:
        """How a label is written in notes: ``#rrggbb`` for colours, else its number."""
        return f"#{label:06x}" if self.colours else str(label)

    def centre_square(self) -> "LabelMap":
        """The map's centred square, as ``--crop`` takes a photo's."""
        height, width = self.labels.shape
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return LabelMap(self.labels[top:top + side, left:left + side].contiguous(), self.colours, self.source)

    def names(self, labels: list[int]) -> str:
        """Labels as a comma-separated list for notes: the first ``NAMED_LABELS``, then how many more."""
        named = ", ".join(self.name(label) for label in labels[:NAMED_LABELS])
        return named if len(labels) <= NAMED_LABELS else f"{named} and {len(labels) - NAMED_LABELS} more"


# A segmentation map as the Python API takes it: a colour-coded PIL image, or labels.
Mask = Image.Image | np.ndarray | Tensor | LabelMap


def colour_labels(rgb: np.ndarray) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 colour map as ``(H, W)`` packed label colours, each pixel snapped to
    the nearest label colour (see the module's docstring for which colours are labels). Memory
    stays near 16 bytes a pixel however many colours the map holds: colours are packed in 32
    bits and counted by one sort, snapped to labels a chunk of colours at a time, and the pixels
    take their labels a chunk of rows at a time."""
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours, counts = np.unique(packed, return_counts=True)
    channels = np.stack([(colours >> shift) & 255 for shift in (16, 8, 0)], axis=1).astype(np.float64)
    labels: list[int] = []
    for index in np.argsort(-counts, kind="stable"):
        if labels and counts[index] < LABEL_FRACTION * packed.size:
            break
        if not labels or np.linalg.norm(channels[labels] - channels[index], axis=1).min() > MERGE_DISTANCE:
            labels.append(int(index))
    label_channels = channels[labels]
    nearest = np.concatenate([np.linalg.norm(chunk[:, None, :] - label_channels[None], axis=2).argmin(axis=1)
                              for chunk in np.split(channels, range(COLOUR_CHUNK, len(channels), COLOUR_CHUNK))])
    snapped = colours[labels].astype(np.int64)[nearest]
    result = np.empty(packed.shape, np.int64)
    for top in range(0, len(packed), ROW_CHUNK):
        result[top:top + ROW_CHUNK] = snapped[np.searchsorted(colours, packed[top:top + ROW_CHUNK])]
    return result


def bounded_map(image: Image.Image) -> Image.Image:
    """A map image upright (its EXIF orientation applied, as photos are) and reduced by nearest
    neighbours (labels are not averaged) to at most ``MAX_MAP_PIXELS``, in its own mode."""
    if image.getexif().get(ORIENTATION_TAG, 1) != 1:
        image = ImageOps.exif_transpose(image)
    width, height = image.size
    if width * height > MAX_MAP_PIXELS:
        scale = (MAX_MAP_PIXELS / (width * height)) ** 0.5
        image = image.resize((max(1, int(width * scale)), max(1, int(height * scale))), Image.Resampling.NEAREST)
    return image


def index_values(image: Image.Image) -> np.ndarray | None:
    """A grey map's values when they are label numbers rather than colours (labels 0, 1, 2… as 8-
    or 16-bit grey levels): when two of its levels that cover ``LABEL_FRACTION`` of the map each
    would be merged as colours, read as ``to_rgb`` reads them. None for other maps."""
    if image.mode not in GREY_MODES:
        return None
    values = np.asarray(image)
    levels, counts = np.unique(values, return_counts=True)
    frequent = levels[counts >= LABEL_FRACTION * values.size].astype(np.float64)
    wide = image.mode.startswith("I;16") or levels.max() > 255
    if len(frequent) < 2 or np.diff(frequent).min() * (255 / 65535 if wide else 1) * 3 ** 0.5 > MERGE_DISTANCE:
        return None
    return values.astype(np.int64)


def as_label_map(mask: Mask, source: str = "the map") -> LabelMap:
    """A segmentation map given as a PIL image (colour-coded, or grey levels that are label
    numbers: ``index_values``; ``bounded_map`` turns it upright and bounds its size), an ``(H, W)``
    integer array or tensor of labels, or a ``LabelMap``, as a ``LabelMap``."""
    if isinstance(mask, LabelMap):
        return mask
    if isinstance(mask, Image.Image):
        if mask.width * mask.height == 0:
            raise UserError(f"{source} is empty ({mask.width}×{mask.height} px)")
        image = bounded_map(mask)
        values = index_values(image)
        if values is not None:
            return LabelMap(torch.from_numpy(values), source=source)
        return LabelMap(torch.from_numpy(colour_labels(np.asarray(to_rgb(image)))), colours=True, source=source)
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, Tensor) or mask.dim() != 2:
        raise TypeError(f"{source}: expected a PIL image or an (H, W) array or tensor of labels, "
                        f"got {getattr(mask, 'shape', type(mask))}")
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(f"{source}: a label array holds integers (or bools), got {mask.dtype}")
    if mask.numel() == 0:
        raise UserError(f"{source} is empty ({mask.shape[1]}×{mask.shape[0]} labels)")
    return LabelMap(mask.long().cpu(), source=source)


def unpack(colours: Tensor) -> Tensor:
    """Packed ``0xRRGGBB`` labels as ``(n, 3)`` float RGB."""
    return torch.stack([(colours >> shift) & 255 for shift in (16, 8, 0)], dim=1).double()


def match_colours(content: LabelMap, style: LabelMap) -> LabelMap:
    """The style map with each label colour replaced by the content's nearest label colour where
    that is within ``MERGE_DISTANCE`` (one map's green may be ``#00ff00``, the other's ``#00ff01``).
    Maps of integer labels match exactly and are returned as they are."""
    if not (content.colours and style.colours):
        return style
    content_colours, style_colours = content.labels.unique(), style.labels.unique()
    distances = torch.cdist(unpack(style_colours), unpack(content_colours))
    nearest = distances.min(dim=1)
    targets = torch.where(nearest.values <= MERGE_DISTANCE, content_colours[nearest.indices], style_colours)
    relabelled = targets[torch.searchsorted(style_colours, style.labels)]
    return LabelMap(relabelled, True, style.source)


def read_label_map(path: str | os.PathLike, what: str) -> LabelMap:
    """The colour-coded map file ``path``; one that is not an image is a user error."""
    path = Path(path)
    check_map_path(path, what)
    try:
        with Image.open(path) as image:
            image.load()
            return as_label_map(image, f"the {what} map {path}")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(f"the {what} map {path} is not a readable image ({err})") from None


def check_aspect(map_size: tuple[int, int], photo_size: tuple[int, int], source: str) -> None:
    """A map must have its photo's aspect ratio, within ``ASPECT_SLACK`` pixels at the coarser of
    the two resolutions (sizes are ``(width, height)``)."""
    (map_w, map_h), (photo_w, photo_h) = map_size, photo_size
    scale = max(1.0, map_w / photo_w, map_h / photo_h)
    off = max(abs(map_h - map_w * photo_h / photo_w), abs(map_w - map_h * photo_w / photo_h)) / scale
    if off > ASPECT_SLACK:
        raise UserError(f"{source} is {map_w}×{map_h} px but its image is {photo_w}×{photo_h}: another aspect "
                        f"ratio (a map may have another size, but its shape must be its image's within "
                        f"{ASPECT_SLACK} px)")


def resize_nearest(labels: Tensor, height: int, width: int) -> Tensor:
    """An ``(H, W)`` label map resized to ``(height, width)`` with nearest neighbours (pixel centres)."""
    rows = ((torch.arange(height) + 0.5) * labels.shape[0] / height).long().clamp_max(labels.shape[0] - 1)
    cols = ((torch.arange(width) + 0.5) * labels.shape[1] / width).long().clamp_max(labels.shape[1] - 1)
    return labels[rows][:, cols]


def majority_pool(labels: Tensor, factor: int) -> Tensor:
    """Each ``factor``×``factor`` block's most frequent label (a tie: the smaller label). A side
    that is not a multiple ends in partial blocks, as the encoder's ceil-mode pooling does. Every
    block is sorted and its runs of equal labels measured at once, so the cost grows with the
    pixels, not with the number of labels."""
    values, dense = labels.unique(return_inverse=True)       # labels as 0..n-1, in their order
    height, width = labels.shape
    padded = F.pad(dense, (0, -width % factor, 0, -height % factor), value=len(values))  # n: no pixel
    rows, cols, size = padded.shape[0] // factor, padded.shape[1] // factor, factor * factor
    ordered = padded.view(rows, factor, cols, factor).transpose(1, 2).reshape(rows * cols, size).sort(dim=1).values
    position = torch.arange(size).expand_as(ordered)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, position, 0).cummax(dim=1).values                   # where each run starts
    last = torch.where(ends, position, size - 1).flip(1).cummin(dim=1).values.flip(1)  # and ends
    length = torch.where(ordered < len(values), last - first + 1, 0)
    best = ordered.gather(1, length.argmax(dim=1, keepdim=True))   # the first longest run: the smaller label
    return values[best.view(rows, cols)]


def feature_labels(label_map: LabelMap, image_size: tuple[int, int], feature_size: tuple[int, int],
                   downscale: int) -> LabelMap:
    """The map of an image of ``image_size`` ``(H, W)`` at its encoder feature's ``feature_size``:
    checked against the image's aspect ratio, resized to the image, majority-pooled."""
    labels = label_map.labels
    check_aspect((labels.shape[1], labels.shape[0]), (image_size[1], image_size[0]), label_map.source)
    pooled = majority_pool(resize_nearest(labels, *image_size), downscale)
    if tuple(pooled.shape) != tuple(feature_size):
        raise ValueError(f"a {image_size} image's map pools to {tuple(pooled.shape)}, not its feature's {feature_size}")
    return LabelMap(pooled, label_map.colours, label_map.source)


# --------------------------------------------------------------------------------------------
# Map files
# --------------------------------------------------------------------------------------------

# EXIF orientations 5-8 store the picture turned a quarter: its upright width is the stored height.
QUARTER_TURNS = (5, 6, 7, 8)


def image_size(path: Path) -> tuple[int, int] | None:
    """Upright ``(width, height)`` from an image file's header (its EXIF orientation applied, as
    the image readers apply it), None when it is not a readable image."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            return (height, width) if image.getexif().get(ORIENTATION_TAG) in QUARTER_TURNS else (width, height)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def check_map_path(path: Path, what: str) -> None:
    """A map file exists: a folder or a missing file is a ``UserError`` saying which."""
    if path.is_dir():
        raise UserError(f"the {what} map {path} is a folder: give a map file (a folder of maps is "
                        f"--{what}_segment_dir)")
    if not path.is_file():
        raise UserError(f"{what} map not found: {path}")


def check_map_file(map_path: Path, photo_path: Path, what: str) -> None:
    """Before any work: the map is an image with its photo's aspect ratio (headers only). An
    unreadable photo is left to the image reader, which reports or skips it."""
    check_map_path(map_path, what)
    map_size, photo_size = image_size(map_path), image_size(photo_path)
    if map_size is None:
        raise UserError(f"the {what} map {map_path} is not a readable image")
    if photo_size is not None:
        check_aspect(map_size, photo_size, f"the {what} map {map_path}")


def maps_by_name(images: list[Path], image_root: Path | None, folder: str | os.PathLike, what: str) -> list[Path]:
    """The map in ``folder`` of each image, matched by name: the image's path under ``image_root``
    without its extension (``sub/in7``), else its file name's stem (``in7``) where no other image
    has that stem (``city/001`` and ``beach/001`` are matched by their folders only). A missing map
    is a user error naming the first image without one."""
    stems = Counter(path.stem.lower() for path in {image.resolve() for image in images})
    keys = []
    for image in images:
        relative = (image.relative_to(image_root).with_suffix("").as_posix()
                    if image_root is not None and image_root.is_dir() else image.stem)
        keys.append([relative] + ([image.stem] if relative != image.stem and stems[image.stem.lower()] == 1 else []))
    return maps_by_keys(keys, [str(image) for image in images], folder, what, images)


def maps_by_keys(keys: list[list[str]], names: list[str], folder: str | os.PathLike, what: str,
                 images: list[Path] = ()) -> list[Path]:
    """The map in ``folder`` of each item named ``names[i]``: the file whose path under ``folder``
    without extension is one of ``keys[i]``, else the one file whose stem is (letter case
    ignored). The ``images`` themselves, where the maps' folder holds them too, are never maps."""
    folder = Path(folder)
    own = {image.resolve() for image in images}
    by_path: dict[str, Path] = {}
    by_stem: dict[str, list[Path]] = {}
    for path in list_images(folder):
        if path.resolve() not in own:
            by_path.setdefault(path.relative_to(folder).with_suffix("").as_posix().lower(), path)
            by_stem.setdefault(path.stem.lower(), []).append(path)

    def find(item: list[str]) -> Path | None:
        for key in map(str.lower, item):
            if key in by_path:
                return by_path[key]
            if len(by_stem.get(key, ())) == 1:
                return by_stem[key][0]
        return None

    found = [find(item) for item in keys]
    if None in found:
        first = found.index(None)
        raise UserError(f"no {what} map for {names[first]} in {folder} (maps are matched by file name, e.g. "
                        f"{keys[first][-1]}.png; {found.count(None)} of {len(found)} have none)")
    return found
