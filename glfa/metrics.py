"""Image-quality metrics for evaluating stylised photos.

Content fidelity: SSIM between the result and the content on luminance, and SSIM between
their Sobel edge maps (structure kept, whatever the colours). Both use scikit-image's
``structural_similarity`` with the settings of Wang et al. (2004): an 11×11 Gaussian window,
sigma 1.5, population statistics. Stylisation: the Gram-matrix loss and the mean/std loss
between the result and the style on the encoder's layers (relu1_1…relu3_1 in photo mode,
…relu4_1 in art mode), summed over layers like the training style loss. Tone: how far the
result's darkest and brightest tones moved from the content's (a veil lifts the blacks, a blow-out
clips the highlights), its tonal range against the content's, and its colour cast against the style.
"""
import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import rgb2lab
from skimage.filters import sobel
from skimage.metrics import structural_similarity
from torch import Tensor, nn

from function import LUMA_WEIGHTS, calc_cov
from net import ModeSpec, parse_mode, style_loss
# Wang et al.'s window: Gaussian, sigma 1.5, truncated at 3.5 sigma → 11×11.
SSIM_SIGMA = 1.5
SSIM_MIN_SIDE = 11
# Tone: the dark and bright percentiles of the luminance, and the luminance from which a pixel
# counts as clipped to white.
DARK_PERCENTILE, BRIGHT_PERCENTILE = 1, 99
CLIPPED_LUMINANCE = 0.98


def luminance(image: Tensor) -> np.ndarray:
    """The BT.601 luma of a ``(3, H, W)`` image in [0, 1], as an ``(H, W)`` float64 array."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=torch.float64).view(3, 1, 1)
    return (image.detach().cpu().double() * weights).sum(0).numpy()


def ssim(first: np.ndarray, second: np.ndarray, data_range: float = 1.0) -> float:
    """SSIM of two equally sized greyscale arrays (Gaussian window, as in Wang et al.)."""
    if first.shape != second.shape:
        raise ValueError(f"SSIM needs images of the same size, got {first.shape} and {second.shape}")
    if min(first.shape) < SSIM_MIN_SIDE:
        raise ValueError(f"SSIM needs images of at least {SSIM_MIN_SIDE} px on each side, got {first.shape}")
    return float(structural_similarity(first, second, data_range=data_range, gaussian_weights=True,
                                       sigma=SSIM_SIGMA, use_sample_covariance=False))


def luminance_ssim(result: Tensor, content: Tensor) -> float:
    """SSIM between the luminance of two ``(3, H, W)`` images in [0, 1]."""
    return ssim(luminance(result), luminance(content))


def edge_map(image: Tensor) -> np.ndarray:
    """Sobel gradient magnitude of the luminance, in [0, 1]."""
    return sobel(luminance(image))


def edge_ssim(result: Tensor, content: Tensor) -> float:
    """SSIM between the Sobel edge maps of two images: are the same edges in the same places?"""
    return ssim(edge_map(result), edge_map(content))


def gram_matrix(feat: Tensor) -> Tensor:
    """Gram matrix of ``(N, C, H, W)`` features normalised by ``C·H·W`` (Gatys et al.), ``(N, C, C)``."""
    return calc_cov(feat.float()) / feat.shape[1]


class StyleDistance:
    """Gram-matrix and mean/std losses between images on the encoder's layers.

    ``encoder`` is the frozen VGG of ``mode`` (e.g. from ``glfa.checkpoint.load_encoder``); it is
    cut at relu1_1, relu2_1, relu3_1[, relu4_1] like the training network.
    """

    def __init__(self, encoder: nn.Sequential, mode: str | ModeSpec = "photo"):
        spec = parse_mode(mode)
        bounds = (0,) + spec.stage_ends
        self.stages = [encoder[start:end] for start, end in zip(bounds, bounds[1:])]
        self.device = next(encoder.parameters()).device

    @torch.no_grad()
    def features(self, image: Tensor) -> list[Tensor]:
        """Features of a ``(3, H, W)`` image at every layer, fp32."""
        feat = image[None].to(self.device)
        feats = []
        for stage in self.stages:
            feat = stage(feat)
            feats.append(feat.float())
        return feats

    @torch.no_grad()
    def losses(self, result_feats: list[Tensor], style_feats: list[Tensor]) -> dict[str, float]:
        """``gram_loss``: summed MSE between Gram matrices; ``mean_std_loss``: the training
        style loss (MSE of channel means plus MSE of channel stds), summed over layers."""
        gram = sum(F.mse_loss(gram_matrix(r), gram_matrix(s)) for r, s in zip(result_feats, style_feats))
        mean_std = sum(style_loss(r, s) for r, s in zip(result_feats, style_feats))
        return {"gram_loss": float(gram), "mean_std_loss": float(mean_std)}


def black_shift(result: Tensor, content: Tensor) -> float:
    """The 1st percentile of the result's luminance minus the content's: above 0 the blacks are
    lifted (a veil, washed-out shadows), below 0 crushed."""
    return float(np.percentile(luminance(result), DARK_PERCENTILE) - np.percentile(luminance(content), DARK_PERCENTILE))


def clipped_share(result: Tensor, content: Tensor) -> float:
    """The share of the result's pixels at luminance ``CLIPPED_LUMINANCE`` or above minus the
    content's: above 0, highlights blown out that the photo did not have."""
    return float((luminance(result) >= CLIPPED_LUMINANCE).mean() - (luminance(content) >= CLIPPED_LUMINANCE).mean())


def tonal_range(result: Tensor, content: Tensor) -> float:
    """The result's luminance range between its 1st and 99th percentiles over the content's: below
    1 the contrast is washed out, above 1 exaggerated."""
    def spread(image: Tensor) -> float:
        low, high = np.percentile(luminance(image), (DARK_PERCENTILE, BRIGHT_PERCENTILE))
        return float(high - low)
    return spread(result) / max(spread(content), 1e-6)


def colour_cast(result: Tensor, style: Tensor) -> float:
    """The distance in CIELAB's a*b* plane between the result's mean colour and the style's: how
    far the result's overall tint is from the one it was asked for."""
    def mean_ab(image: Tensor) -> np.ndarray:
        lab = rgb2lab(image.detach().cpu().double().clamp(0, 1).permute(1, 2, 0).numpy())
        return lab[..., 1:].reshape(-1, 2).mean(0)
    return float(np.linalg.norm(mean_ab(result) - mean_ab(style)))


def tone_figures(result: Tensor, content: Tensor, style: Tensor) -> dict[str, float]:
    """``black_shift``, ``clipped``, ``tonal_range`` and ``cast`` of a result (see each function)."""
    return {"black_shift": black_shift(result, content), "clipped": clipped_share(result, content),
            "tonal_range": tonal_range(result, content), "cast": colour_cast(result, style)}
