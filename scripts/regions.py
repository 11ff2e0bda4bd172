r"""Region-wise transfer measured, in one command (the figures of docs/regions.md):

1. eval.py's metrics on the pairs with maps (--pairs_dir: content/, style/, content_seg/,
   style_seg/), without maps, with them and with automatic regions, and a region Gram loss: the
   Gram loss of each content region of the result against the style's region of its label;
2. the same without maps and with automatic regions on --validation_dir (no maps there);
3. how well the automatic regions agree with the maps: the share of each content position's
   region in the style that holds the position's own true label (1 with the maps themselves);
4. the time per image without maps, with maps and with automatic regions (medians, interleaved);
5. the figure: content, style, and the three results for --figure_pairs.

Writes <output>/regions.md (the tables), <output>/regions.jpg (the figure) and eval.py's folders.

Example: python scripts/regions.py --pairs_dir ../shared/data/photo_pairs \
             --validation_dir datasets/validation --device cpu --output output/regions
"""
import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from glfa.autoregions import DEFAULT_REGIONS, AutoRegions
from glfa.cli import add_device_flag, command_parser, run_main
from glfa.device import resolve_device
from glfa.errors import UserError
from function import masked_cov
from glfa.checkpoint import load_encoder
from glfa.eval import (AUTO_SUFFIX, EVALUATION, SEGMENTED_SUFFIX, Figures, Lineup, ModelFiles, Pair, average_rows,
                       evaluate, find_pairs, metrics_table, pair_maps, parse_model, shipped_model_spec, with_segments)
from glfa.figures import comparison_figure, stack_vertically
from glfa.flagtypes import positive_int, region_count
from glfa.images import read_image
from glfa.inference import Stylizer
from glfa.options import RunOptions
from glfa.metrics import StyleDistance
from glfa.paths import REPO_ROOT, default_vgg
from glfa.regions import Segments
from glfa.segments import feature_labels, match_colours
from glfa.tables import markdown_table


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(__doc__)
    parser.add_argument("--pairs_dir", default=str(REPO_ROOT.parent / "shared" / "data" / "photo_pairs"),
                        help="numbered pairs with maps: content/, style/, content_seg/, style_seg/")
    parser.add_argument("--validation_dir",
                        help="numbered pairs without maps (content/, style/); left out if not given")
    parser.add_argument("--model", metavar="NAME=DECODER,TRANSFORM[,lct|sct]",
                        help="the model measured (eval.py's --model; default: the shipped one)")
    parser.add_argument("--auto_regions", type=region_count, default=DEFAULT_REGIONS, metavar="K",
                        help="the number of automatic regions")
    parser.add_argument("--long_side", type=positive_int, default=512, help="every image's longer side in px")
    parser.add_argument("--figure_pairs", default="in3_tar3,in6_tar6", help="the pairs shown, comma-separated")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed calls per variant and pair")
    parser.add_argument("--output", default=str(REPO_ROOT / "output" / "regions"), help="folder for everything")
    add_device_flag(parser)
    return parser


def averages_table(rows: list, title: str) -> str:
    """eval.py's averages over the pairs under a heading."""
    return f"### {title}\n\n{metrics_table(average_rows(rows))}\n"


def variants(model: ModelFiles, k: int) -> dict[str, str]:
    """The figure's and the timing's labels of the eval rows of ``model``."""
    return {model.name: "global", model.name + SEGMENTED_SUFFIX: "maps",
            f"{model.name}{AUTO_SUFFIX}{k}": f"automatic (K={k})"}


def region_gram_loss(distance: StyleDistance, result: torch.Tensor, style: torch.Tensor, pair: Pair) -> float:
    """eval.py's Gram loss taken region by region: per layer, the MSE between the Gram matrix of
    the result's positions of each label both maps hold and that of the style's positions of the
    label, weighted by the label's share of those content positions; summed over the layers."""
    content_map, style_map = pair_maps(pair)
    style_map = match_colours(content_map, style_map)
    total = 0.0
    for result_feat, style_feat in zip(distance.features(result), distance.features(style)):
        factor = round(result.shape[-1] / result_feat.shape[-1])
        labels = [feature_labels(label_map, tuple(image.shape[-2:]), tuple(feat.shape[-2:]), factor).labels
                  for label_map, image, feat in ((content_map, result, result_feat), (style_map, style, style_feat))]
        common = sorted(set(labels[0].unique().tolist()) & set(labels[1].unique().tolist()))
        shares = torch.tensor([float((labels[0] == label).sum()) for label in common])
        grams = [[masked_cov(feat, label_map == label) / feat.shape[1] for label in common]
                 for feat, label_map in ((result_feat, labels[0]), (style_feat, labels[1]))]
        total += sum(float(share) * float(F.mse_loss(a, b)) for share, a, b in zip(shares / shares.sum(), *grams))
    return total


def region_gram_table(pairs: list[Pair], results: Path, names: dict[str, str], vgg: Path, device: torch.device,
                      long_side: int) -> str:
    """The mean region Gram loss of each named eval row over ``pairs``, from its saved results."""
    distance = StyleDistance(load_encoder(vgg, "photo").to(device), "photo")
    rows = []
    for name, label in names.items():
        losses = [region_gram_loss(distance, read_image(results / name / f"{pair.name}.png"),
                                   read_image(pair.style, long_side=long_side), pair) for pair in pairs]
        rows.append([label, f"{sum(losses) / len(losses):.4g}"])
    return markdown_table(["transfer", "region Gram loss ↓"], rows)


def region_figure(pairs: list[Pair], results: Path, names: dict[str, str], long_side: int) -> Image.Image:
    """One row per pair: content, style, then each named eval row's result read back from ``results``."""
    figures = []
    for pair in pairs:
        shown = {label: read_image(results / name / f"{pair.name}.png") for name, label in names.items()}
        figures.append(comparison_figure(read_image(pair.content, long_side=long_side),
                                         read_image(pair.style, long_side=long_side), shown, None, 200))
    return stack_vertically(figures)


def agreement(stylizer: Stylizer, pairs: list[Pair], k: int, long_side: int) -> list[float]:
    """Per pair: the mean over content positions of the share of style positions in the content
    position's automatic region (the whole style where the style lacks it) that hold the content
    position's true label, by the maps."""
    scores = []
    for pair in pairs:
        content, style = (read_image(path, long_side=long_side) for path in (pair.content, pair.style))
        with torch.no_grad():
            feats = [stylizer.encoder(image[None].to(stylizer.device)) for image in (content, style)]
        sizes = [tuple(image.shape[-2:]) for image in (content, style)]
        downscale = stylizer.spec.downscale
        truth = Segments(*pair_maps(pair)).feature_labels(sizes[0], feats[0], sizes[1], feats[1], downscale)
        auto = AutoRegions(k).feature_labels(sizes[0], feats[0], sizes[1], feats[1], downscale)
        true_content, true_style = truth[0].labels, truth[1].labels
        total = 0.0
        for region in auto[0].labels.unique().tolist():
            in_style = auto[1].labels == region
            style_labels = true_style[in_style] if in_style.any() else true_style.flatten()
            for label in true_content[auto[0].labels == region].unique().tolist():
                count = int(((auto[0].labels == region) & (true_content == label)).sum())
                total += count * float((style_labels == label).float().mean())
        scores.append(total / true_content.numel())
    return scores


def timings(stylizer: Stylizer, pairs: list[Pair], k: int, long_side: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per stylisation without maps, with maps and with automatic regions, the three
    interleaved call by call (so a busy machine slows them alike), after one untimed round."""
    calls = {"global": {}, "maps": None, f"automatic (K={k})": {"auto_regions": k}}
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for pair in pairs:
        content, style = (read_image(path, long_side=long_side) for path in (pair.content, pair.style))
        maps = pair_maps(pair)
        calls["maps"] = {"content_mask": maps[0], "style_masks": [maps[1]]}
        for round_ in range(repeats + 1):
            for name, options in calls.items():
                start = time.perf_counter()
                stylizer.stylize(content, [style], **options)
                if round_:
                    seconds[name].append(time.perf_counter() - start)
    return seconds


def cost_table(seconds: dict[str, list[float]]) -> str:
    """Median seconds per image of each variant, and its ratio to the global transfer."""
    base = statistics.median(seconds["global"])
    rows = [[name, f"{statistics.median(values):.3f}", f"{statistics.median(values) / base:.2f}×", len(values)]
            for name, values in seconds.items()]
    return markdown_table(["transfer", "median s / image", "vs global", "calls"], rows)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    model = parse_model(args.model) if args.model else shipped_model_spec()
    device, output, k = resolve_device(args.device), Path(args.output), args.auto_regions
    pairs = with_segments(find_pairs(args.pairs_dir), args.pairs_dir)
    if args.validation_dir and not Path(args.validation_dir).is_dir():
        raise UserError(f"--validation_dir {args.validation_dir} is not a folder")
    validation = find_pairs(args.validation_dir) if args.validation_dir else None   # both found before any work
    shown = [pair for pair in pairs if pair.name in args.figure_pairs.split(",")]
    if not shown:
        raise UserError(f"--figure_pairs {args.figure_pairs}: none of them is among {', '.join(p.name for p in pairs)}")
    settings = (EVALUATION.replace(long_side=args.long_side, auto_regions=k), RunOptions(device), Figures(zoom=None))
    report = [averages_table(evaluate(pairs, Lineup([model]), output / "pairs", *settings),
                             f"{len(pairs)} pairs with maps, {args.long_side} px"),
              region_gram_table(pairs, output / "pairs" / "results", variants(model, k), default_vgg("photo"),
                                device, args.long_side) + "\n"]
    if validation:
        report.append(averages_table(evaluate(validation, Lineup([model]), output / "validation", *settings),
                                     f"{len(validation)} validation pairs (no maps), {args.long_side} px"))
    stylizer = Stylizer.from_checkpoints(model.decoder, model.transform, kind=model.kind, device=device)
    scores = agreement(stylizer, pairs, k, args.long_side)
    report.append(f"### Automatic regions (K={k}) against the maps\n\nagreement {sum(scores) / len(scores):.3f} "
                  f"(per pair: {', '.join(f'{s:.2f}' for s in scores)})\n")
    report.append(f"### Time per image ({args.long_side} px, {device})\n\n"
                  f"{cost_table(timings(stylizer, shown, k, args.long_side, args.repeats))}\n")
    region_figure(shown, output / "pairs" / "results", variants(model, k), args.long_side).save(
        output / "regions.jpg", quality=90)
    (output / "regions.md").write_text("\n".join(report))
    print("\n".join(report))
    print(f"wrote {output / 'regions.md'} and {output / 'regions.jpg'}")


if __name__ == "__main__":
    run_main(main)
