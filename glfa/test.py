"""What ``test.py`` does: stylise every content image with every style image (or with one
weighted mix of the styles) and write the results, reading the next images in the background."""
import sys
from pathlib import Path

import torch
from torchvision.utils import save_image
from tqdm import tqdm

from glfa.cli import UserError
from glfa.data import UnreadableImage, list_images, load_rgb
from glfa.images import read_image, resize_to_tensor
from glfa.inference import Stylizer, read_ahead

SAVE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def gather_inputs(single: str | None, folder: str | None, what: str) -> list[Path]:
    """The files named by ``--content``/``--style`` (comma-separated), else the images in the folder."""
    if single:
        return [Path(p) for p in single.split(",")]
    paths = list_images(folder)
    if not paths:
        raise UserError(f"no {what} images in {folder}")
    return paths


def stylize_all(stylizer: Stylizer, content_paths: list[Path], style_paths: list[Path], output: Path, *,
                content_size: int = 512, style_size: int = 512, crop: bool = False, named_contents: bool = False,
                named_styles: bool = False, weights: list[float] | None = None, alpha: float = 1.0,
                preserve_color: bool = False, save_ext: str = ".jpg") -> None:
    """Write every content image stylised with every style image to ``output`` as
    ``<content>_stylized_<style><save_ext>``; with ``weights``, one mix of all the styles per
    content image, ``<content>_interpolation<save_ext>`` (CCPL's name).

    Files the user named (``named_…``) must be readable. Images found in a folder that cannot be
    read are skipped with a warning; once the others are written, a ``UserError`` counts them.
    """
    if weights and len(weights) != len(style_paths):
        raise UserError(f"{len(weights)} interpolation weights for {len(style_paths)} style images")
    output.mkdir(parents=True, exist_ok=True)
    failures: list[Path] = []

    def read(path: Path, size: int, named: bool) -> torch.Tensor | None:
        if named:
            return read_image(path, size, crop, draft=True)
        try:
            return resize_to_tensor(load_rgb(path, size or None), size, crop)
        except UnreadableImage as err:
            print(f"warning: skipping unreadable image {err}", file=sys.stderr)
            failures.append(path)
            return None

    styles = [(p, read(p, style_size, named_styles)) for p in style_paths]
    styles = [(p, s) for p, s in styles if s is not None]
    if not styles:
        raise UserError(f"none of the style images in {style_paths[0].parent} can be read")
    if weights:
        total = sum(weights)
        jobs = [("_interpolation", [s for _, s in styles], [w / total for w in weights])]
    else:
        jobs = [(f"_stylized_{p.stem}", [s], None) for p, s in styles]

    contents = read_ahead(content_paths, lambda path: read(path, content_size, named_contents))
    with tqdm(total=len(content_paths) * len(jobs), desc="stylise", unit="pair", dynamic_ncols=True) as progress:
        for content_path, content in contents:
            if content is None:
                progress.update(len(jobs))
                continue
            for suffix, style_images, style_weights in jobs:
                result = stylizer.stylize(content, style_images, style_weights, alpha, preserve_color)
                save_image(result, output / f"{content_path.stem}{suffix}{save_ext}")
                progress.update()
    if failures:
        raise UserError(f"{len(failures)} image(s) could not be read and were skipped (see warnings above)")
