"""The model, in the order of the method (docs/method.md): encoder and decoder layouts, the
feature transforms (SCT, LCT, and AdaIN as a baseline; each also region by region, from
``RegionStatistics``, docs/regions.md), the contrastive losses CCPL and WCE, and the training
networks that combine them.

Modes: ``photo`` works at relu3_1 (256 channels, 1/4 size), ``art`` at relu4_1 (512 channels,
1/8 size). Layer indexes are the child indexes of the reference ``nn.Sequential`` layouts, so
state-dict keys match checkpoints written by the CCPL and GLFA reference code.
"""
import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from function import (adain_from_stats, bounding_slices, calc_cov, calc_mean_std, full_precision, guided_filter,
                      local_moments, masked_cov, masked_mean_std, mean_norm)


# --------------------------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModeSpec:
    """What a training/testing mode uses of the encoder and decoder."""

    name: str
    encoder_end: int          # encoder children [:encoder_end]
    stage_ends: tuple         # child index after relu1_1, relu2_1, relu3_1[, relu4_1]
    channels: tuple           # channels of those layers
    decoder_start: int        # decoder children [decoder_start:]
    downscale: int            # image size / feature size at the last layer
    min_side: int             # smallest image side: SCT's style branch needs 3×3 (photo) or 5×5 (art) features

    @property
    def feature_channels(self) -> int:
        return self.channels[-1]


MODES = {
    "photo": ModeSpec("photo", 18, (4, 11, 18), (64, 128, 256), 10, 4, 12),
    "art": ModeSpec("art", 31, (4, 11, 18, 31), (64, 128, 256, 512), 0, 8, 40),
}
_MODE_ALIASES = {
    "photo": "photo", "pho": "photo", "photo-realistic": "photo", "photorealistic": "photo",
    "photo_realistic": "photo", "art": "art", "artistic": "art",
}


def parse_mode(name: str | ModeSpec) -> ModeSpec:
    """Mode from any spelling the reference code used (``pho``, ``Photo-realistic``, ``artistic``…);
    a ``ModeSpec`` is returned unchanged, so callers may pass either."""
    if isinstance(name, ModeSpec):
        return name
    key = _MODE_ALIASES.get(str(name).strip().lower())
    if key is None:
        raise ValueError(f"unknown mode {name!r}: use 'photo' (relu3_1) or 'art' (relu4_1)")
    return MODES[key]


# --------------------------------------------------------------------------------------------
# Encoder: normalised VGG-19 (frozen)
# --------------------------------------------------------------------------------------------

def _conv(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, 3), nn.ReLU()]


def _pool() -> nn.Module:
    return nn.MaxPool2d(2, 2, ceil_mode=True)


def vgg_layout() -> list[nn.Module]:
    """The reference encoder's 53 children, from the 1×1 input conv to relu5_4."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    layers += _conv(3, 64) + _conv(64, 64) + [_pool()]                          # relu1_1 at child 3
    layers += _conv(64, 128) + _conv(128, 128) + [_pool()]                      # relu2_1 at child 10
    layers += _conv(128, 256) + _conv(256, 256) + _conv(256, 256) + _conv(256, 256) + [_pool()]  # relu3_1 at 17
    layers += _conv(256, 512) + _conv(512, 512) + _conv(512, 512) + _conv(512, 512) + [_pool()]  # relu4_1 at 30
    layers += _conv(512, 512) + _conv(512, 512) + _conv(512, 512) + _conv(512, 512)
    return layers


def _indexed(layers: list[nn.Module], start: int, end: int) -> nn.Sequential:
    """Children ``[start:end]`` as a Sequential whose keys keep the full layout's indexes."""
    return nn.Sequential(OrderedDict((str(i), layers[i]) for i in range(start, end)))


def build_encoder(mode: str | ModeSpec) -> nn.Sequential:
    """The encoder children the mode uses, frozen (no gradients, eval mode)."""
    spec = parse_mode(mode)
    encoder = _indexed(vgg_layout(), 0, spec.encoder_end)
    encoder.requires_grad_(False)
    return encoder.eval()


# --------------------------------------------------------------------------------------------
# Decoder: the encoder's mirror
# --------------------------------------------------------------------------------------------

def decoder_layout() -> list[nn.Module]:
    """The reference decoder's 29 children, relu4_1 (512 channels, 1/8 size) to RGB."""
    up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
    layers: list[nn.Module] = _conv(512, 256) + [up()]                                    # 0-3
    layers += _conv(256, 256) + _conv(256, 256) + _conv(256, 256) + _conv(256, 128) + [up()]  # 4-16
    layers += _conv(128, 128) + _conv(128, 64) + [up()]                                   # 17-23
    layers += _conv(64, 64) + [nn.ReflectionPad2d(1), nn.Conv2d(64, 3, 3)]               # 24-28
    return layers


def build_decoder(mode: str | ModeSpec) -> nn.Sequential:
    """The decoder children the mode uses (photo: ``[10:]``, art: all 29)."""
    spec = parse_mode(mode)
    layers = decoder_layout()
    return _indexed(layers, spec.decoder_start, len(layers))


# --------------------------------------------------------------------------------------------
# Transforms: SCT and LCT
# --------------------------------------------------------------------------------------------

class StyleStatistics(NamedTuple):
    """What a transform takes from a style feature: the compressed covariance (SCT and LCT; None
    for AdaIN), the channel means and the channel stds."""

    cov: Tensor | None
    mean: Tensor
    std: Tensor


class Transform(Protocol):
    """What inference needs of a feature transform: the style's statistics, taken once per style,
    and the transform of a content feature (or a tile of it) from the content's statistics over
    the whole image, so that tiles agree with the whole.

    Region-wise (segmentation maps, automatic regions): ``style_statistics`` with a ``mask``
    takes the statistics of the style's masked positions alone, and ``apply`` with ``regions``
    (every content position's region, ``(H, W)``) takes the means and stds as per-position maps
    and ``style.cov`` as one matrix per region, as ``RegionStatistics.at`` gives them.
    ``snet_border`` is how many positions its style statistics lose on each side of a region
    (valid convolutions), which the region sizes must allow for.
    """

    snet_border: int

    def style_statistics(self, style_feat: Tensor, mask: Tensor | None = None) -> StyleStatistics: ...

    def apply(self, content_feat: Tensor, content_mean: Tensor, content_std: Tensor,
              style: StyleStatistics, regions: Tensor | None = None) -> Tensor: ...


class RegionStatistics(NamedTuple):
    """The statistics of a region-wise transform: the region of every content feature position,
    and per region (stacked on dim 0) the content's mean and std and the style's statistics,
    each taken over that region's positions alone. Where some positions' label has no region of
    its own (the style lacks it, or it is too small for stable statistics), region 0 holds the
    whole content's and the whole style's statistics, and those positions are transformed as
    without maps."""

    index: Tensor               # (H, W) int64, the region of every content position
    content_mean: Tensor        # (R, C, 1, 1)
    content_std: Tensor         # (R, C, 1, 1)
    style: StyleStatistics      # cov (R, 32, 32) or None (AdaIN); mean and std (R, C, 1, 1)

    def at(self, rows: slice = slice(None),
           cols: slice = slice(None)) -> tuple[Tensor, Tensor, StyleStatistics, Tensor]:
        """``apply``'s statistics for the positions ``[rows, cols]`` (a tile, or all): means and
        stds spread to per-position maps ``(1, C, h, w)``, the style's matrices per region, and
        the positions' regions ``(h, w)``."""
        index = self.index[rows, cols]

        def spread(stat: Tensor) -> Tensor:
            return stat[:, :, 0, 0].T[:, index][None]

        style = StyleStatistics(self.style.cov, spread(self.style.mean), spread(self.style.std))
        return spread(self.content_mean), spread(self.content_std), style, index


class AdaIN(nn.Module):
    """AdaIN (Huang and Belongie): the content feature with the style's channel means and stds.
    LCT's skip connection on its own; it has no parameters. The baseline of the evaluation.
    Its statistics are per channel, so region-wise it needs only the per-position maps."""

    snet_border = 0

    def style_statistics(self, style_feat: Tensor, mask: Tensor | None = None) -> StyleStatistics:
        mean, std = calc_mean_std(style_feat) if mask is None else masked_mean_std(style_feat, mask)
        return StyleStatistics(None, mean, std)

    def apply(self, content_feat: Tensor, content_mean: Tensor, content_std: Tensor,
              style: StyleStatistics, regions: Tensor | None = None) -> Tensor:
        return adain_from_stats(content_feat, content_mean, content_std, style.mean, style.std)

    def forward(self, content_feat: Tensor, style_feat: Tensor) -> Tensor:
        return self.apply(content_feat, *calc_mean_std(content_feat), self.style_statistics(style_feat))


class SCT(nn.Module):
    """CCPL's simple covariance transformation.

    The normalised content feature and the centred style feature are compressed to 32
    channels; the style's 32×32 second-moment matrix multiplies the compressed content;
    ``uncompress`` restores the channels and the style's channel means are added back.
    """

    def __init__(self, mode: str | ModeSpec = "photo"):
        super().__init__()
        spec = parse_mode(mode)
        self.mode = spec.name
        if spec.name == "art":
            self.cnet = nn.Sequential(nn.Conv2d(512, 256, 1), nn.ReLU(), nn.Conv2d(256, 128, 1), nn.ReLU(),
                                      nn.Conv2d(128, 32, 1))
            self.snet = nn.Sequential(nn.Conv2d(512, 256, 3), nn.ReLU(), nn.Conv2d(256, 128, 3), nn.ReLU(),
                                      nn.Conv2d(128, 32, 1))
        else:
            self.cnet = nn.Sequential(nn.Conv2d(256, 128, 1), nn.ReLU(), nn.Conv2d(128, 32, 1))
            self.snet = nn.Sequential(nn.Conv2d(256, 128, 3), nn.ReLU(), nn.Conv2d(128, 32, 1))
        self.uncompress = nn.Conv2d(32, spec.feature_channels, 1)

    @property
    def snet_border(self) -> int:
        """How many positions snet's valid 3×3 convolutions lose on each side (photo 1, art 2)."""
        return sum((layer.kernel_size[0] - 1) // 2 for layer in self.snet if isinstance(layer, nn.Conv2d))

    def style_statistics(self, style_feat: Tensor, mask: Tensor | None = None) -> StyleStatistics:
        """The style's compressed 32×32 matrix (fp32), its channel means and stds.

        With ``mask`` ((H, W) bool), those of one region: the feature is centred by the region's
        mean, and snet, whose valid convolutions shrink it by ``snet_border`` per side (output
        ``(i, j)`` is centred on input ``(i + b, j + b)``), runs on the region's bounding box
        grown by that border, its output masked by the mask without its border.
        """
        if mask is None:
            centred, _ = mean_norm(style_feat)
            mean, std = calc_mean_std(style_feat)
            return StyleStatistics(calc_cov(self.snet(centred).float()), mean, std)
        mean, std = masked_mean_std(style_feat, mask)
        border = self.snet_border
        rows, cols = bounding_slices(mask, border)
        compressed = self.snet(style_feat[..., rows, cols] - mean).float()
        inner = mask[rows, cols][border:-border or None, border:-border or None]
        return StyleStatistics(masked_cov(compressed, inner), mean, std)

    def apply(self, content_feat: Tensor, content_mean: Tensor, content_std: Tensor,
              style: StyleStatistics, regions: Tensor | None = None) -> Tensor:
        """The transform from precomputed statistics (SCT itself ignores the style's stds)."""
        compressed = self.cnet((content_feat - content_mean) / content_std)
        return self.uncompress(covariance_mix(style.cov, compressed, regions)) + style.mean

    def forward(self, content_feat: Tensor, style_feat: Tensor) -> Tensor:
        return self.apply(content_feat, *calc_mean_std(content_feat), self.style_statistics(style_feat))


def covariance_mix(cov: Tensor, compressed: Tensor, regions: Tensor | None = None) -> Tensor:
    """SCT's product of the style's compressed matrix with the compressed content ``(N, 32, H, W)``;
    with ``regions`` (``(H, W)``), every position's product with its own region's matrix
    (``cov`` is ``(R, 32, 32)``)."""
    n, c, h, w = compressed.shape
    flat = compressed.flatten(2)
    cov = cov.to(flat.dtype)
    if regions is None:
        return torch.bmm(cov, flat).view(n, c, h, w)
    where = regions.flatten()
    mixed = torch.zeros_like(flat)
    for region in where.unique().tolist():
        mixed = torch.where(where == region, torch.bmm(cov[region:region + 1].expand(n, -1, -1), flat), mixed)
    return mixed.view(n, c, h, w)


class LCT(SCT):
    """This method's linear covariance transformation: SCT plus an AdaIN skip connection,
    ``LCT(c, s) = (SCT(c, s) + AdaIN(c, s)) / 2``. Same parameters as SCT."""

    def apply(self, content_feat: Tensor, content_mean: Tensor, content_std: Tensor,
              style: StyleStatistics, regions: Tensor | None = None) -> Tensor:
        sct = super().apply(content_feat, content_mean, content_std, style, regions)
        adain = adain_from_stats(content_feat, content_mean, content_std, style.mean, style.std)
        return (sct + adain) / 2


TRANSFORMS = {"lct": LCT, "sct": SCT, "adain": AdaIN}


def build_transform(kind: str, mode: str | ModeSpec = "photo") -> nn.Module:
    """``lct``, ``sct`` or ``adain`` for the given mode (AdaIN has no weights and no mode)."""
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}: use 'lct', 'sct' or 'adain'")
    return AdaIN() if kind == "adain" else TRANSFORMS[kind](mode)


# --------------------------------------------------------------------------------------------
# Contrastive losses: CCPL and WCE
# --------------------------------------------------------------------------------------------

# The method's defaults: anchors per layer, contrastive layers, InfoNCE temperature, and the
# entropic OT plan's regularisation and Sinkhorn iterations.
NUM_S, NUM_L, TAU = 8, 3, 0.07
OT_EPS, OT_ITERS = 1.0, 50

# (row, col) offsets of an anchor's 8 neighbours, in the reference order.
NEIGHBOUR_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def sample_anchors(height: int, width: int, num_s: int, device: torch.device | str = "cpu") -> Tensor:
    """``num_s`` distinct anchor positions ``(row, col)`` away from the border, shape ``(num_s, 2)``."""
    if height < 3 or width < 3:
        raise ValueError(f"feature map {height}×{width} is too small for 3×3 neighbourhoods")
    inner_w = width - 2
    flat = torch.randperm((height - 2) * inner_w, device=device)[:num_s]
    return torch.stack((flat // inner_w + 1, flat % inner_w + 1), dim=1)


def neighbourhood_index(anchors: Tensor, width: int) -> Tensor:
    """Flat position indexes of every anchor's 3×3 block, shape ``(9, num_s)``.

    Row 0 holds the anchors, rows 1–8 their neighbours in ``NEIGHBOUR_OFFSETS`` order.
    """
    offsets = torch.tensor(((0, 0),) + NEIGHBOUR_OFFSETS, device=anchors.device)
    rows = anchors[None, :, 0] + offsets[:, 0, None]
    cols = anchors[None, :, 1] + offsets[:, 1, None]
    return rows * width + cols


def gather_blocks(feat: Tensor, index: Tensor) -> Tensor:
    """Features at ``index`` (9, S): one gather for all anchors, shape ``(N, 9, S, C)``."""
    n, c = feat.shape[:2]
    picked = feat.flatten(2).index_select(2, index.flatten())
    return picked.view(n, c, *index.shape).permute(0, 2, 3, 1)


# Norm floor of every L2 normalisation in the losses: a vector shorter than this is divided by
# the floor instead of its norm, so the gradient gain stays below 1/UNIT_EPS for near-zero
# difference vectors (flat image regions) instead of growing as 1/norm.
UNIT_EPS = 1e-3


def unit_vectors(vectors: Tensor) -> Tensor:
    """L2-normalise the last dimension in fp32, with the norm floored at ``UNIT_EPS``."""
    return F.normalize(full_precision(vectors), dim=-1, eps=UNIT_EPS)


def projected_differences(blocks: Tensor, head: nn.Module) -> Tensor:
    """Anchor−neighbour difference vectors through a projection head, L2-normalised.

    ``blocks`` is ``(N, 9, num_s, C)``; the result is ``(N, 8·num_s, D)``, neighbour-major
    like the reference.
    """
    diffs = (blocks[:, :1] - blocks[:, 1:]).flatten(1, 2)
    return unit_vectors(head(diffs))


def in_fp32(fn: Callable) -> Callable:
    """Run a loss helper with autocast off and half-precision tensor arguments cast to fp32:
    its similarities, exponentials and logs need fp32 even inside a mixed-precision step."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next(a.device.type for a in (*args, *kwargs.values()) if isinstance(a, Tensor))
        args = [full_precision(a) if isinstance(a, Tensor) else a for a in args]
        kwargs = {k: full_precision(v) if isinstance(v, Tensor) else v for k, v in kwargs.items()}
        with torch.autocast(device, enabled=False):
            return fn(*args, **kwargs)
    return wrapper


@in_fp32
def info_nce(query: Tensor, key: Tensor, tau: float, log_weights: Tensor | None = None) -> Tensor:
    """InfoNCE within each image: query ``i``'s positive is key ``i``, the other keys are negatives.

    ``query``/``key`` are ``(N, S, D)`` unit vectors. ``log_weights`` (N, S, S), when given, is
    added (times ``tau``) to the negative logits, as WCE does. Self-pairs are masked out.
    """
    n, s, _ = query.shape
    positive = (query * key).sum(-1, keepdim=True)
    negative = torch.bmm(query, key.transpose(1, 2))
    if log_weights is not None:
        negative = negative + tau * log_weights
    self_pair = torch.eye(s, dtype=torch.bool, device=query.device)
    negative = negative.masked_fill(self_pair, float("-inf"))
    logits = torch.cat((positive, negative), dim=2) / tau
    target = torch.zeros(n * s, dtype=torch.long, device=query.device)
    return F.cross_entropy(logits.flatten(0, 1), target)


def sinkhorn_scaling(kernel: Tensor, iters: int) -> Tensor:
    """The Sinkhorn loop: column scales ``(N, 1, S)`` after ``iters`` row-then-column passes.

    Batched over images. The sums are elementwise products and reductions rather than matmuls,
    so they stay exact fp32 where TF32 matmuls are allowed.
    """
    col_scale = torch.ones_like(kernel[:, :1, :])
    for _ in range(iters):
        row_scale = (kernel * col_scale).sum(2, keepdim=True).reciprocal()
        col_scale = (kernel * row_scale).sum(1, keepdim=True).reciprocal()
    return col_scale


@in_fp32
def sinkhorn_weights(query: Tensor, key: Tensor, eps: float = OT_EPS, iters: int = OT_ITERS) -> Tensor:
    """MoNCE's weights of the negatives: an entropic OT plan between queries and keys.

    Kernel ``exp(q·kᵀ / eps)`` with self-pairs masked; Sinkhorn scaling towards unit row and
    column sums (ending on the rows), then ×(S−1) so each row's weights over its S−1
    negatives average exactly 1. Batched over images. ``(N, S, S)``.
    Differentiable: the caller passes attached queries and detached keys (the method's gradient
    paths), so the plan's gradient flows back into the queries.
    """
    s = query.shape[1]
    kernel = torch.exp(torch.bmm(query, key.transpose(1, 2)) / eps)
    kernel = kernel * (1 - torch.eye(s, dtype=kernel.dtype, device=query.device))
    plan = kernel * sinkhorn_scaling(kernel, iters)
    plan = plan / plan.sum(2, keepdim=True)
    return plan * (s - 1)


@in_fp32
def neighbourhood_kl(blocks_result: Tensor, blocks_content: Tensor) -> Tensor:
    """WCE's global-consistency term: KL(content ‖ result) of the similarity distributions
    within every anchor's 3×3 block of raw features, averaged over rows, anchors and images.

    Each block's 9 vectors are L2-normalised; cosine similarities map to ``(cos + 1) / 2`` and
    each row is divided by its sum.
    """
    def distribution(blocks: Tensor) -> Tensor:
        unit = unit_vectors(blocks.transpose(1, 2))                      # (N, S, 9, C)
        affinity = (torch.matmul(unit, unit.transpose(-1, -2)) + 1) / 2  # (N, S, 9, 9)
        return affinity / affinity.sum(-1, keepdim=True).clamp_min(1e-12)

    p_content, p_result = distribution(blocks_content), distribution(blocks_result)
    log_ratio = p_content.clamp_min(1e-12).log() - p_result.clamp_min(1e-12).log()
    return (p_content * log_ratio).sum(-1).mean()


class CCPL(nn.Module):
    """Contrastive coherence preserving loss on the last ``num_l`` encoder layers.

    Owns one projection head per encoder layer (Linear C→C, ReLU, Linear C→C/4).
    """

    def __init__(self, channels: tuple, num_s: int = NUM_S, num_l: int = NUM_L, tau: float = TAU):
        super().__init__()
        if not 1 <= num_l <= len(channels):
            raise ValueError(f"num_l must be between 1 and {len(channels)} for this mode, got {num_l}")
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, c // 4)) for c in channels)
        self.num_s, self.num_l, self.tau = num_s, num_l, tau

    def queries_and_keys(self, blocks_result: Tensor, blocks_content: Tensor,
                         head: nn.Module) -> tuple[Tensor, Tensor]:
        """The result's projected difference vectors (queries) and the content's (keys). The keys
        are detached: the head and the network learn through the queries alone (docs/method.md)."""
        return projected_differences(blocks_result, head), projected_differences(blocks_content, head).detach()

    def layer_loss(self, blocks_result: Tensor, blocks_content: Tensor, head: nn.Module) -> dict[str, Tensor]:
        """The loss of one layer: InfoNCE between the result's and the content's difference vectors."""
        query, key = self.queries_and_keys(blocks_result, blocks_content, head)
        return {"nce": info_nce(query, key, self.tau)}

    def layer_blocks(self, feats_result: list[Tensor], feats_content: list[Tensor],
                     anchors: list[Tensor] | None = None) -> list[tuple[Tensor, Tensor, nn.Module]]:
        """Per used layer: the result's and the content's 3×3 blocks around the anchors, and the
        layer's head. ``anchors`` pins one ``(num_s, 2)`` tensor per used layer (for tests);
        otherwise anchors are drawn at random, shared by the batch."""
        first = len(feats_result) - self.num_l
        layers = []
        for i in range(first, len(feats_result)):
            result, content = feats_result[i], feats_content[i]
            h, w = result.shape[2:]
            layer_anchors = (anchors[i - first] if anchors is not None
                             else sample_anchors(h, w, self.num_s, result.device))
            index = neighbourhood_index(layer_anchors.to(result.device), w)
            layers.append((gather_blocks(result, index), gather_blocks(content, index), self.heads[i]))
        return layers

    def forward(self, feats_result: list[Tensor], feats_content: list[Tensor],
                anchors: list[Tensor] | None = None) -> dict[str, Tensor]:
        """Each term of ``layer_loss`` summed over the used layers (``anchors`` as in ``layer_blocks``)."""
        return self.sum_of_layer_losses(self.layer_blocks(feats_result, feats_content, anchors))

    def sum_of_layer_losses(self, layers: list[tuple[Tensor, Tensor, nn.Module]]) -> dict[str, Tensor]:
        total: dict[str, Tensor] = {}
        for blocks_result, blocks_content, head in layers:
            for name, value in self.layer_loss(blocks_result, blocks_content, head).items():
                total[name] = total[name] + value if name in total else value
        return total


class WCE(CCPL):
    """Weighted contrast estimation: CCPL whose negatives are weighted by an optimal-transport
    plan (MoNCE), plus a KL term on raw-feature similarities for global consistency.

    ``layer_loss`` is the method, one layer at a time; ``forward`` takes the fast path
    ``stacked_wce``, which gives the same sum (value and gradients) with one Sinkhorn loop
    for all layers.
    """

    def __init__(self, channels: tuple, num_s: int = NUM_S, num_l: int = NUM_L, tau: float = TAU,
                 ot_eps: float = OT_EPS, ot_iters: int = OT_ITERS):
        super().__init__(channels, num_s, num_l, tau)
        self.ot_eps, self.ot_iters = ot_eps, ot_iters

    def layer_loss(self, blocks_result: Tensor, blocks_content: Tensor, head: nn.Module) -> dict[str, Tensor]:
        """The loss of one layer: the OT-weighted InfoNCE (``nce``) and the KL term (``kl``)."""
        query, key = self.queries_and_keys(blocks_result, blocks_content, head)
        return {"nce": self.weighted_nce(query, key), "kl": neighbourhood_kl(blocks_result, blocks_content)}

    def weighted_nce(self, query: Tensor, key: Tensor) -> Tensor:
        """InfoNCE with each negative's logit raised by tau × the log of its OT weight."""
        weights = sinkhorn_weights(query, key, self.ot_eps, self.ot_iters)
        return info_nce(query, key, self.tau, log_weights=weights.clamp_min(1e-30).log())

    def forward(self, feats_result: list[Tensor], feats_content: list[Tensor],
                anchors: list[Tensor] | None = None) -> dict[str, Tensor]:
        """``sum_of_layer_losses`` by the fast path ``stacked_wce``."""
        return stacked_wce(self, self.layer_blocks(feats_result, feats_content, anchors))


def stacked_wce(wce: WCE, layers: list[tuple[Tensor, Tensor, nn.Module]]) -> dict[str, Tensor]:
    """Fast path of ``wce.sum_of_layer_losses(layers)``: the same value and gradients, with the
    OT-weighted InfoNCE of all layers in one batch (``stacked_weighted_nce``)."""
    kl = sum(neighbourhood_kl(blocks_result, blocks_content) for blocks_result, blocks_content, _ in layers)
    return {"nce": stacked_weighted_nce(wce, layers), "kl": kl}


def stacked_weighted_nce(wce: WCE, layers: list[tuple[Tensor, Tensor, nn.Module]]) -> Tensor:
    """The sum over ``layers`` of ``wce.weighted_nce``, as one batch.

    The queries and keys of layers with as many anchors are zero-padded to the widest head's
    width and stacked along the batch. Padding changes no dot product, so no kernel, plan or
    logit; the Sinkhorn loop runs once instead of once per layer (on a GPU its many small steps
    dominate the step time). Stacked layers have the same N·S vectors each, so the stack's mean
    × its layer count is the sum of their losses.
    """
    stacks: dict[int, list[tuple[Tensor, Tensor]]] = {}
    for blocks_result, blocks_content, head in layers:
        query, key = wce.queries_and_keys(blocks_result, blocks_content, head)
        stacks.setdefault(query.shape[1], []).append((query, key))
    return sum(len(pairs) * wce.weighted_nce(*zero_padded_stack(pairs)) for pairs in stacks.values())


def zero_padded_stack(pairs: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """``(N, S, D_l)`` query/key pairs zero-padded to the widest D and concatenated along N."""
    width = max(query.shape[-1] for query, _ in pairs)
    return tuple(torch.cat([F.pad(pair[side], (0, width - pair[side].shape[-1])) for pair in pairs])
                 for side in (0, 1))


CONTRASTIVE = {"wce": WCE, "ccpl": CCPL}


@dataclass(frozen=True)
class ContrastiveSpec:
    """The contrastive loss of a training network: ``kind`` ``wce``, ``ccpl`` or ``none``, with
    ``num_s`` anchors per layer on the last ``num_l`` layers and the InfoNCE temperature ``tau``."""

    kind: str = "wce"
    num_s: int = NUM_S
    num_l: int = NUM_L
    tau: float = TAU

    def __post_init__(self):
        if self.kind not in (*CONTRASTIVE, "none"):
            raise ValueError(f"unknown contrastive loss {self.kind!r}: use 'wce', 'ccpl' or 'none'")

    def build(self, channels: tuple[int, ...]) -> CCPL | None:
        """The loss module for encoder layers of ``channels``, None for ``none``."""
        return None if self.kind == "none" else CONTRASTIVE[self.kind](channels, self.num_s, self.num_l, self.tau)


# --------------------------------------------------------------------------------------------
# The network: encoder → transform → decoder, and the training losses
# --------------------------------------------------------------------------------------------

# The reconstruction objective's pixel-loss weight (its feature loss has the content weight).
PIXEL_WEIGHT = 10.0

class EncoderDecoder(nn.Module):
    """The frozen encoder cut into its stages (relu1_1, relu2_1, relu3_1[, relu4_1]) and a decoder."""

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential, mode: str | ModeSpec = "photo"):
        super().__init__()
        self.spec = parse_mode(mode)
        bounds = (0,) + self.spec.stage_ends
        self.stages = nn.ModuleList(encoder[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1))
        self.stages.requires_grad_(False)
        self.decoder = decoder

    def train(self, mode: bool = True) -> "EncoderDecoder":
        super().train(mode)
        self.stages.eval()
        return self

    def encode_with_intermediate(self, image: Tensor) -> list[Tensor]:
        """Features at relu1_1, relu2_1, relu3_1[, relu4_1]."""
        feats = []
        for stage in self.stages:
            image = stage(image)
            feats.append(image)
        return feats


class ReconstructionNet(EncoderDecoder):
    """Encoder → decoder with no transform: the decoder learns to invert the encoder, the warm
    start of a transfer run. Losses: ``content`` (the method's content loss, MSE at the last layer,
    here a feature loss against the input itself) and ``pixel`` (MSE between image and result)."""

    def forward(self, content: Tensor, style: Tensor | None = None,
                anchors: list[Tensor] | None = None) -> tuple[dict[str, Tensor], Tensor]:
        with torch.no_grad():
            target = self.encode_with_intermediate(content)[-1]
        result = self.decoder(target)
        feature = self.encode_with_intermediate(result)[-1]
        losses = {"content": F.mse_loss(feature.float(), target.float()),
                  "pixel": F.mse_loss(result.float(), content.float())}
        return losses, result


class StyleTransferNet(EncoderDecoder):
    """Encoder → transform → decoder, returning the training losses and the stylised image.

    Losses: content (MSE at the last layer), style (mean and std MSE at every used layer) and
    the contrastive terms (``nce`` and, for WCE, ``kl``) between the result and the content.
    With ``identity``, also SANet's identity losses of the content transferred to its own style,
    ``decoder(transform(c, c))``, which should give the content back: ``identity``, their pixel
    MSE, and ``identity_feature``, the MSE of their features summed over the used layers. They
    keep the decoder sharp where the losses above do not look. With ``structure`` (the name of
    its terms), also ``structure``: the structure loss between the result's luminance and the
    content's (``structure_loss``), which keeps the photo's local structure in the pixels.
    With ``finish``, every loss is computed on the *finished* result: the decoder's output
    smoothed by the guided filter with the content as guide (``Finish``), as it is at inference,
    so the network learns to put the style into what the finish keeps.
    """

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential, transform: nn.Module,
                 contrastive: CCPL | None, mode: str | ModeSpec = "photo", identity: bool = False,
                 structure: str | None = None, finish: "Finish | None" = None):
        super().__init__(encoder, decoder, mode)
        self.transform, self.contrastive, self.identity = transform, contrastive, identity
        self.structure, self.finish = structure, finish

    def forward(self, content: Tensor, style: Tensor,
                anchors: list[Tensor] | None = None) -> tuple[dict[str, Tensor], Tensor]:
        with torch.no_grad():
            content_feats = self.encode_with_intermediate(content)
            style_feats = self.encode_with_intermediate(style)
        result = self.decoder(self.transform(content_feats[-1], style_feats[-1]))
        if self.finish is not None:
            result = self.finish(content, result)
        result_feats = self.encode_with_intermediate(result)

        losses = {
            "content": F.mse_loss(result_feats[-1].float(), content_feats[-1].float()),
            "style": sum(style_loss(r, s) for r, s in zip(result_feats, style_feats)),
        }
        if self.contrastive is not None:
            losses.update(self.contrastive(result_feats, content_feats, anchors))
        if self.identity:
            itself = self.decoder(self.transform(content_feats[-1], content_feats[-1]))
            losses["identity"] = F.mse_loss(itself.float(), content.float())
            losses["identity_feature"] = sum(F.mse_loss(i.float(), c.float()) for i, c in
                                             zip(self.encode_with_intermediate(itself), content_feats))
        if self.structure:
            losses["structure"] = structure_loss(result, content, terms=self.structure)
        return losses, result


@dataclass(frozen=True)
class Finish:
    """The guided filter (He et al.) that finishes a result: in every ``(2·radius+1)²`` window the
    result is refitted as an affine function of the content photo's colours (ridge ``eps``), so
    the decoder's texture, blotches and halos go while its colour and tone stay. It is linear in
    the result, so gradients pass through it unchanged in kind."""

    radius: int
    eps: float

    def __call__(self, content: Tensor, result: Tensor) -> Tensor:
        return guided_filter(content, result, self.radius, self.eps).to(result.dtype)


def style_loss(result_feat: Tensor, style_feat: Tensor) -> Tensor:
    """MSE between the channel means plus MSE between the channel stds."""
    result_mean, result_std = calc_mean_std(result_feat.float())
    style_mean, style_std = calc_mean_std(style_feat.float())
    return F.mse_loss(result_mean, style_mean) + F.mse_loss(result_std, style_std)


# BT.601 luma weights. The structure loss's window radius; its variance floor (a std of 0.001 in
# [0, 1] units), which keeps flat windows finite; SSIM's C₂ = (0.03 · range)², the variance below
# which a window counts as flat (the correlation form's half-weight point, the contrast-structure
# form's stabiliser).
LUMA = (0.299, 0.587, 0.114)
STRUCTURE_RADIUS = 3
STRUCTURE_FLOOR = 1e-6
STRUCTURE_TEXTURE = 0.03 ** 2


def luma(image: Tensor) -> Tensor:
    """The BT.601 luminance of ``(N, 3, H, W)`` images, as ``(N, 1, H, W)``."""
    weights = torch.tensor(LUMA, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(1, keepdim=True)


STRUCTURE_TERMS = ("correlation", "contrast_structure")


def structure_loss(result: Tensor, content: Tensor, radius: int = STRUCTURE_RADIUS,
                   terms: str = "correlation") -> Tensor:
    """The structure loss of ``terms``: ``correlation`` (below) or ``contrast_structure``
    (``contrast_structure_loss``)."""
    if terms not in STRUCTURE_TERMS:
        raise ValueError(f"unknown structure terms {terms!r}: use 'correlation' or 'contrast_structure'")
    loss = correlation_loss if terms == "correlation" else contrast_structure_loss
    return loss(result, content, radius)


def contrast_structure_loss(result: Tensor, content: Tensor, radius: int = STRUCTURE_RADIUS) -> Tensor:
    """1 − the mean over ``(2r+1)²`` windows of SSIM without its brightness term,
    ``(2·cov + t) / (var_r + var_c + t)``: the result's luminance must follow the content's in
    structure and in local contrast, so texture in the content's flat areas costs as much as lost
    edges; the brightness, and so the tone the style sets, stays free."""
    var_result, var_content, cov = local_moments(luma(full_precision(result)), luma(full_precision(content)), radius)
    return 1 - ((2 * cov + STRUCTURE_TEXTURE) / (var_result + var_content + STRUCTURE_TEXTURE)).mean()


def correlation_loss(result: Tensor, content: Tensor, radius: int = STRUCTURE_RADIUS) -> Tensor:
    """1 − the local correlation of the result's luminance with the content's in ``(2r+1)²``
    windows, averaged with weights ``var_c / (var_c + t)`` that leave out windows where the
    content is flat. 0 when every window of the result is the content's up to brightness and
    contrast: colour and tone, which the style sets, are free; painted-in texture and smeared
    edges are not. Flattening the result never lowers it (the correlation has no additive
    constant that would reward a flat window)."""
    var_result, var_content, cov = local_moments(luma(full_precision(result)), luma(full_precision(content)), radius)
    correlation = cov / ((var_result + STRUCTURE_FLOOR) * (var_content + STRUCTURE_FLOOR)).sqrt()
    weight = var_content / (var_content + STRUCTURE_TEXTURE)
    return 1 - (weight * correlation).sum() / weight.sum().clamp_min(1e-12)


@dataclass(frozen=True)
class LossWeights:
    """The weight of every loss term, each named like its term (the method's defaults).

    ``nce`` weights the contrastive InfoNCE (CCPL's or WCE's), ``kl`` WCE's KL term; the method
    weights both by the contrastive weight 5. This code takes the KL per 3×3 block (a sum over
    each row's 9 entries, averaged over rows, anchors and images); the GLFA reference averages
    over every element, 9× smaller, so ``kl=5/9`` reproduces it. ``pixel`` weights the pixel
    loss of the reconstruction objective (``ReconstructionNet``), ``identity`` and
    ``identity_feature`` the identity losses of ``StyleTransferNet``, ``structure`` its structure
    loss (all three off by default).
    """

    content: float = 1.0
    style: float = 10.0
    nce: float = 5.0
    kl: float = 5.0
    pixel: float = PIXEL_WEIGHT
    identity: float = 0.0
    identity_feature: float = 0.0
    structure: float = 0.0


def total_loss(losses: dict[str, Tensor], weights: LossWeights) -> Tensor:
    """The weighted sum of the loss terms present: ``Σ weights.<term> · losses[<term>]``."""
    return sum(getattr(weights, name) * value for name, value in losses.items())


OBJECTIVES = ("transfer", "reconstruction")


def build_network(mode: str = "photo", transform: str = "lct", contrastive: str | ContrastiveSpec = "wce",
                  encoder: nn.Sequential | None = None, objective: str = "transfer",
                  identity: bool = False, structure: str | None = None,
                  finish: Finish | None = None) -> EncoderDecoder:
    """A training network with freshly initialised decoder, transform and heads.

    ``objective`` ``transfer`` is the method (``StyleTransferNet``); ``reconstruction`` trains
    the decoder alone to invert the encoder (``ReconstructionNet``; the transform and
    contrastive arguments are unused). ``contrastive`` is a ``ContrastiveSpec``, or its kind
    (``wce``, ``ccpl`` or ``none``) with the default anchors; ``identity`` adds the identity
    loss, ``structure`` (``STRUCTURE_TERMS``) the structure loss; with ``finish`` the losses are
    taken on the guided-filter-finished result. ``encoder`` is the pretrained VGG
    (``glfa.checkpoint.load_encoder``); without one the encoder has random weights.
    """
    spec = parse_mode(mode)
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}: use 'transfer' or 'reconstruction'")
    contrastive = ContrastiveSpec(contrastive) if isinstance(contrastive, str) else contrastive
    encoder = build_encoder(spec) if encoder is None else encoder
    if objective == "reconstruction":
        return ReconstructionNet(encoder, build_decoder(spec), spec)
    loss = contrastive.build(spec.channels)      # built first: a seeded run's initial weights depend on the order
    return StyleTransferNet(encoder, build_decoder(spec), build_transform(transform, spec), loss, spec, identity,
                            structure, finish)
