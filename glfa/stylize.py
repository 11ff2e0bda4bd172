"""What ``test.py`` does: stylise every content image with every style image (or with one
weighted mix of the styles), optionally region by region (segmentation maps or automatic
regions), and write the results, reading the next images in the background."""
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import torch
from tqdm import tqdm

from glfa.background import read_ahead
from glfa.errors import UserError
from glfa.figures import contact_sheet as make_contact_sheet
from glfa.images import (InputFiles, UnreadableImage, list_images, load_rgb, read_image_or_fail, resize_to_tensor,
                         resized_size, save_image_file, thumbnail)
from glfa.inference import Stylizer
from glfa.options import StylizeOptions
from glfa.segments import LabelMap, check_map_file, maps_by_name, read_label_map

SAVE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def gather_inputs(single: str | None, folder: str | None, what: str) -> list[Path]:
    """The files named by ``--content``/``--style`` (comma-separated), each of which must exist,
    else the images in the folder."""
    if single:
        check_names(single, what)
        names = single.split(",")
        folders = [name for name in names if Path(name).is_dir()]
        if folders:
            raise UserError(f"--{what} {folders[0]} is a folder: use --{what}_dir for a folder of images")
        missing = [name for name in names if not Path(name).is_file()]
        if missing:
            raise UserError(f"--{what}: image not found: {missing[0]}"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return [Path(name) for name in names]
    paths = list_images(folder)
    if not paths:
        raise UserError(f"no {what} images in {folder}")
    return paths


def check_names(names: str | None, what: str) -> None:
    """``--content``/``--style`` (or a ``_segment`` flag): comma-separated file names, none of them
    empty (a stray comma)."""
    if names is not None and not all(name.strip() for name in names.split(",")):
        raise UserError(f"--{what} {names!r} holds an empty name (a stray comma?)")


def gather_maps(single: str | None, folder: str | None, images: list[Path], image_root: Path | None,
                what: str) -> list[Path] | None:
    """The segmentation map file of every image, in ``images``' order: ``--<what>_segment`` names
    them (comma-separated, one per image), ``--<what>_segment_dir`` holds them by name; None
    without either. Each is checked (an image with its photo's aspect ratio) before any work."""
    if single:
        check_names(single, f"{what}_segment")
        maps = [Path(name) for name in single.split(",")]
        if len(maps) != len(images):
            raise UserError(f"--{what}_segment names {len(maps)} map(s) for {len(images)} {what} image(s)")
    elif folder:
        if not Path(folder).is_dir():
            raise UserError(f"--{what}_segment_dir {folder} is not a folder")
        maps = maps_by_name(images, image_root, folder, what)
    else:
        return None
    for map_path, image in zip(maps, images):
        check_map_file(map_path, image, what)
    return maps


def read_map(path: Path | None, what: str, crop: bool = False) -> LabelMap | None:
    """The map file of an image (its centred square with ``crop``, as the image is cropped), or
    None when the run has no maps."""
    if path is None:
        return None
    label_map = read_label_map(path, what)
    return label_map.centre_square() if crop else label_map


def output_names(paths: list[Path], root: Path | None, separator: str = "/") -> list[str]:
    """One name per input for the outputs made from it, no two alike (nor alike but for case): its
    path relative to ``root`` (its file name when ``root`` is None) without the extension, the
    folders joined by ``separator``; where several would share a name, the extension is kept
    (``x_jpg``, ``x_png``), and a number is added to any still alike."""
    relative = [p.relative_to(root) if root is not None and root.is_dir() else Path(p.name) for p in paths]
    stems = [separator.join(r.with_suffix("").parts) for r in relative]
    counts = Counter(stem.lower() for stem in stems)
    stems = [f"{stem}_{p.suffix.lstrip('.')}" if counts[stem.lower()] > 1 else stem for stem, p in zip(stems, paths)]
    return list(unique_names(stems))


def unique_names(names: Iterable[str], taken: set[str] | None = None) -> Iterator[str]:
    """``names`` with ``_2``, ``_3``… added to each repeat (case-insensitively) of an earlier one,
    or of one already in ``taken`` (lower case; the names given out are added to it)."""
    taken = set() if taken is None else taken
    for name in names:
        unique, count = name, 1
        while unique.lower() in taken:
            count += 1
            unique = f"{name}_{count}"
        taken.add(unique.lower())
        yield unique


class ImageReader:
    """Reads the images of a run at their working size. A file the user named must be readable
    (a ``UserError``); one found in a folder that cannot be read is skipped with a warning and
    counted in ``failures``. Resized images longer than ``max_size`` are scaled down, with a note."""

    def __init__(self, crop: bool = False, max_size: int = 0):
        self.crop, self.max_size = crop, max_size
        self.failures: list[Path] = []

    def __call__(self, path: Path, size: int, named: bool) -> torch.Tensor | None:
        try:
            image = read_image_or_fail(path, size or None) if named else load_rgb(path, size or None)
        except UnreadableImage as err:
            print(f"warning: skipping unreadable image {err}", file=sys.stderr)
            self.failures.append(path)
            return None
        width, height = resized_size(image, size) if size else image.size
        if size and width > image.width:
            print(f"note: {path} is enlarged from {image.width}×{image.height} to {width}×{height} px for a shorter "
                  f"side of {size} (0 keeps a photo's own size)")
        if self.max_size and size and not self.crop and max(width, height) > self.max_size:
            print(f"note: {path} would be {width}×{height} px at a shorter side of {size}; scaled down to fit "
                  f"--max_size {self.max_size}")
        return resize_to_tensor(image, size, self.crop, self.max_size)


def style_jobs(styles: list[tuple[str, torch.Tensor, LabelMap | None]], weights: list[float] | None) -> list[tuple]:
    """``(name suffix, style images, weights, style maps)`` per output of a content image: one per
    style, or with ``weights`` a single mix of them all (CCPL's ``_interpolation``)."""
    if weights:
        total = sum(weights)
        return [("_interpolation", [image for _, image, _ in styles], [w / total for w in weights],
                 [label_map for _, _, label_map in styles])]
    return [(f"_stylized_{name}", [image], None, [label_map]) for name, image, label_map in styles]


def region_masks(content_map: LabelMap | None, style_maps: list[LabelMap | None]) -> dict:
    """``Stylizer.stylize``'s masks for one output: the maps when the run has them."""
    if content_map is None:
        return {}
    return {"content_mask": content_map, "style_masks": style_maps}


@dataclass(frozen=True)
class InputImages:
    """One side of a run, content or style: the image files, the folder they were found in (None:
    the user named them, and an unreadable one is an error; found in a folder, they keep their
    sub-folders in the output names and an unreadable one is skipped), and their segmentation map
    files in the same order (None: none)."""

    paths: Sequence[Path]
    root: Path | None = None
    maps: Sequence[Path] | None = None

    def __post_init__(self) -> None:
        if self.maps is not None and len(self.maps) != len(self.paths):
            raise ValueError(f"{len(self.maps)} map file(s) for {len(self.paths)} image(s): give one per image")


@dataclass(frozen=True)
class Outputs:
    """Where and how ``stylize_all`` writes: the folder, the results' extension, and whether a
    ``contact_sheet.png`` (content, style and result side by side) is written too."""

    folder: Path
    save_ext: str = ".jpg"
    contact_sheet: bool = False


class Written(NamedTuple):
    """What ``stylize_all`` wrote: the results under ``output`` and the contact sheet, if any."""
    output: Path
    results: list[Path]
    contact_sheet: Path | None = None

    def line(self) -> str:
        """One line naming what was written and where: ``wrote 12 results to output/ (and
        output/contact_sheet.png)``."""
        count = len(self.results)
        sheet = f" (and {self.contact_sheet})" if self.contact_sheet else ""
        return f"wrote {count} result{'' if count == 1 else 's'} to {self.output}/{sheet}"


def write_contact_sheet(rows: list[tuple[str, list[torch.Tensor]]], mixed: bool, output: Path,
                        inputs: InputFiles) -> Path | None:
    """``contact_sheet.png`` in ``output``, one row per pair (content, style or the first of a mix,
    result), unless there are no rows; its path."""
    if not rows:
        return None
    path = output / "contact_sheet.png"
    inputs.check([path])
    make_contact_sheet(rows, ["content", "first style" if mixed else "style", "result"]).save(path)
    return path


def stylize_all(stylizer: Stylizer, contents: InputImages, styles: InputImages, outputs: Outputs,
                options: StylizeOptions | None = None, weights: list[float] | None = None) -> Written:
    """Write every content image stylised with every style image to the output folder as
    ``<content>_stylized_<style><save_ext>``; with ``weights``, one mix of all the styles per
    content image, ``<content>_interpolation<save_ext>`` (CCPL's name). Contents found under a
    folder keep their sub-folders; ``output_names`` keeps every output's name its own.

    ``options`` (None: the Stylizer's) set the sizes the images are read at and how they are
    stylised; with map files on both sides, or ``options.auto_regions``, the transfer is region
    by region (``Stylizer.stylize``). Unreadable images are handled by ``ImageReader``; once the
    others are written, a ``UserError`` counts those skipped. Returns what was written; the
    ``UserError`` for skipped images says it too.
    """
    options = options or stylizer.options
    if weights and len(weights) != len(styles.paths):
        raise UserError(f"{len(weights)} interpolation weights for {len(styles.paths)} style images")
    outputs.folder.mkdir(parents=True, exist_ok=True)
    read = ImageReader(options.crop, options.max_size)
    style_maps = styles.maps or [None] * len(styles.paths)
    crop_styles, crop_contents = options.crop and options.style_size > 0, options.crop and options.content_size > 0
    read_styles = [(name, read(path, options.style_size, styles.root is None), read_map(map_path, "style", crop_styles))
                   for path, name, map_path in zip(styles.paths, output_names(styles.paths, styles.root, "_"),
                                                   style_maps)]
    read_styles = [style for style in read_styles if style[1] is not None]
    if not read_styles:
        raise UserError(f"none of the style images in {styles.paths[0].parent} can be read")
    jobs = style_jobs(read_styles, weights)
    named_contents = list(zip(contents.paths, output_names(contents.paths, contents.root),
                              contents.maps or [None] * len(contents.paths)))
    loaded = read_ahead(named_contents, lambda item: (read(item[0], options.content_size, contents.root is None),
                                                      read_map(item[2], "content", crop_contents)))
    written: set[str] = set()  # a last guard: no output of this run overwrites another
    results: list[Path] = []
    inputs = InputFiles([*contents.paths, *styles.paths, *(contents.maps or []), *style_maps])   # nor an input
    sheet: list[tuple[str, list[torch.Tensor]]] = []
    with tqdm(total=len(contents.paths) * len(jobs), desc="stylise", unit="pair", dynamic_ncols=True) as progress:
        for (_, content_name, _), (content, content_map) in loaded:
            for suffix, style_images, style_weights, job_maps in jobs if content is not None else ():
                result = stylizer.stylize(content, style_images, style_weights, options,
                                          **region_masks(content_map, job_maps))
                name = next(unique_names([f"{content_name}{suffix}"], written))
                path = outputs.folder / f"{name}{outputs.save_ext}"
                inputs.check([path])
                path.parent.mkdir(parents=True, exist_ok=True)
                save_image_file(result, path)
                results.append(path)
                if outputs.contact_sheet:
                    sheet.append((name, [thumbnail(image) for image in (content, style_images[0], result)]))
                progress.update()
            if content is None:
                progress.update(len(jobs))
    done = Written(outputs.folder, results, write_contact_sheet(sheet, bool(weights), outputs.folder, inputs))
    if read.failures:
        raise UserError(f"{len(read.failures)} image(s) could not be read and were skipped (see warnings above); "
                        f"{done.line()}")
    return done
