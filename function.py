"""Small statistics helpers shared by the model, the losses and inference, and the guided filter
of ``--smooth``.

Every feature tensor here is ``(N, C, H, W)``; statistics are taken per sample and per
channel over the spatial positions.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-5
# ITU-R BT.601 luma weights for R, G, B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def full_precision(tensor: Tensor) -> Tensor:
    """Half-precision tensors (from autocast) as fp32, so statistics keep their precision."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def luma(image: Tensor) -> Tensor:
    """The BT.601 luma of ``(N, 3, H, W)`` RGB images in [0, 1], ``(N, 1, H, W)`` in fp32."""
    weights = torch.tensor(LUMA_WEIGHTS, device=image.device).view(1, 3, 1, 1)
    return (full_precision(image).float() * weights).sum(1, keepdim=True)


def calc_mean_std(feat: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std, shaped ``(N, C, 1, 1)``; std = sqrt(unbiased var + eps).
    Computed in fp32 (at least) whatever the feature's precision."""
    n, c = feat.shape[:2]
    flat = full_precision(feat.reshape(n, c, -1))
    var = flat.var(dim=2, unbiased=True) + eps
    return flat.mean(dim=2).view(n, c, 1, 1), var.sqrt().view(n, c, 1, 1)


def mean_variance_norm(feat: Tensor) -> Tensor:
    """Give every channel zero mean and unit std."""
    mean, std = calc_mean_std(feat)
    return (feat - mean) / std


def mean_norm(feat: Tensor) -> tuple[Tensor, Tensor]:
    """Subtract the per-channel mean; return the centred feature and the mean."""
    mean = full_precision(feat).mean(dim=(2, 3), keepdim=True)
    return feat - mean, mean


def calc_cov(feat: Tensor) -> Tensor:
    """Second-moment matrix ``F Fᵀ / positions`` of a feature, shaped ``(N, C, C)``.

    The caller centres the feature first when it wants a true covariance (SCT feeds it the
    compressed, mean-centred style feature).
    """
    flat = full_precision(feat.flatten(2))
    with torch.autocast(flat.device.type, enabled=False):  # autocast would run bmm in half precision
        return torch.bmm(flat, flat.transpose(1, 2)) / flat.shape[2]


def masked_positions(feat: Tensor, mask: Tensor) -> Tensor:
    """The feature's positions where the ``(H, W)`` bool ``mask`` holds, as an ``(N, C, n)`` column
    in row-major order (with every position masked, the same values as ``feat.flatten(2)``)."""
    return feat.flatten(2)[:, :, mask.flatten()]


def bounding_slices(mask: Tensor, margin: int = 0) -> tuple[slice, slice]:
    """The rows and columns of the box around an ``(H, W)`` bool mask's true positions, grown by
    ``margin`` on each side and clipped to the map."""
    spans = []
    for axis in (1, 0):
        hits = mask.any(dim=axis).nonzero().flatten()
        first, last = (int(hits[0]), int(hits[-1])) if len(hits) else (0, -1)
        spans.append(slice(max(0, first - margin), min(mask.shape[1 - axis], last + 1 + margin)))
    return spans[0], spans[1]


def masked_mean_std(feat: Tensor, mask: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """``calc_mean_std`` over the positions of one region (an ``(H, W)`` bool ``mask``): the
    statistics of a region-wise transform. With every position masked it equals ``calc_mean_std``."""
    return calc_mean_std(masked_positions(feat, mask)[..., None], eps)


def masked_cov(feat: Tensor, mask: Tensor) -> Tensor:
    """``calc_cov`` over the positions of one region (an ``(H, W)`` bool ``mask``), ``(N, C, C)``."""
    return calc_cov(masked_positions(feat, mask)[..., None])


def adaptive_instance_normalization(content_feat: Tensor, style_feat: Tensor) -> Tensor:
    """AdaIN: give the content feature the style feature's per-channel mean and std."""
    return adain_from_stats(content_feat, *calc_mean_std(content_feat), *calc_mean_std(style_feat))


def adain_from_stats(content_feat: Tensor, content_mean: Tensor, content_std: Tensor,
                     style_mean: Tensor, style_std: Tensor) -> Tensor:
    """AdaIN with the statistics given (tiled inference takes them over the whole image)."""
    return (content_feat - content_mean) / content_std * style_std + style_mean


def _matrix_sqrt(sym: Tensor, inverse: bool = False) -> Tensor:
    """Square root (or its inverse) of a symmetric positive-definite matrix via eigh."""
    eigval, eigvec = torch.linalg.eigh(sym)
    eigval = eigval.clamp_min(1e-8)
    power = -0.5 if inverse else 0.5
    return eigvec @ torch.diag_embed(eigval.pow(power)) @ eigvec.transpose(-1, -2)


def coral(source: Tensor, target: Tensor) -> Tensor:
    """Colour matching for ``--preserve_color``: give ``source`` the RGB mean and covariance of ``target``.

    Both are ``(3, H, W)`` images in [0, 1]; the result has ``source``'s shape. The style image
    is matched to the content image before transfer, so the output keeps the content's colours.
    """
    src = source.reshape(3, -1).double()
    tgt = target.reshape(3, -1).double()
    src_mean, tgt_mean = src.mean(1, keepdim=True), tgt.mean(1, keepdim=True)
    src_c, tgt_c = src - src_mean, tgt - tgt_mean
    eye = torch.eye(3, dtype=src.dtype, device=src.device)
    src_cov = src_c @ src_c.T / src_c.shape[1] + EPS * eye
    tgt_cov = tgt_c @ tgt_c.T / tgt_c.shape[1] + EPS * eye
    matched = _matrix_sqrt(tgt_cov) @ _matrix_sqrt(src_cov, inverse=True) @ src_c + tgt_mean
    return matched.reshape(source.shape).to(source.dtype).clamp(0, 1)


# Reinhard et al. 2001, "Color Transfer between Images": RGB → LMS cone space → log10 → lαβ, whose
# three channels are nearly decorrelated for natural images, so matching them one by one works.
_RGB_TO_LMS = torch.tensor([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]],
                           dtype=torch.float64)
_LOG_LMS_TO_LAB = torch.diag(torch.tensor([3 ** -0.5, 6 ** -0.5, 2 ** -0.5], dtype=torch.float64)) @ torch.tensor(
    [[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]], dtype=torch.float64)


def rgb_to_lab(image: Tensor) -> Tensor:
    """``(3, H, W)`` RGB in [0, 1] to Reinhard's lαβ, flattened to ``(3, H·W)`` (float64)."""
    lms = _RGB_TO_LMS.to(image.device) @ image.reshape(3, -1).double()
    return _LOG_LMS_TO_LAB.to(image.device) @ lms.clamp_min(1e-4).log10()


def lab_to_rgb(lab: Tensor) -> Tensor:
    """Inverse of ``rgb_to_lab`` on ``(3, N)`` values."""
    lms = 10 ** torch.linalg.solve(_LOG_LMS_TO_LAB.to(lab.device), lab)
    return torch.linalg.solve(_RGB_TO_LMS.to(lab.device), lms)


def reinhard(content: Tensor, style: Tensor) -> Tensor:
    """Reinhard colour transfer, the classic baseline that needs no network: give ``content`` the
    per-channel mean and std of ``style`` in lαβ. ``(3, H, W)`` images in [0, 1]."""
    source, target = rgb_to_lab(content), rgb_to_lab(style)
    matched = ((source - source.mean(1, keepdim=True)) / source.std(1, keepdim=True).clamp_min(1e-8)
               * target.std(1, keepdim=True) + target.mean(1, keepdim=True))
    return lab_to_rgb(matched).reshape(content.shape).to(content.dtype).clamp(0, 1)


# --------------------------------------------------------------------------------------------
# Edge-aware smoothing (``--smooth``): He et al.'s guided filter with a colour guide
# --------------------------------------------------------------------------------------------

def box_filter(x: Tensor, radius: int) -> Tensor:
    """Mean over the ``(2r+1)×(2r+1)`` window around every pixel of an ``(N, C, H, W)`` tensor, in fp32.

    Windows are cut at the borders and averaged over the pixels they hold (count normalisation).
    The box is separable, so it is a row pass then a column pass of ``avg_pool2d``: O(r) a pixel,
    each sum over at most 2r+1 values (cumulative sums over a whole row would lose fp32 digits).
    A radius beyond the image is the same as one reaching its far border. Many channels are pooled
    channels-last, which gives the same sums about twice as fast on a CPU; the result is contiguous.
    """
    x = full_precision(x)
    if x.shape[1] > 3:
        x = x.contiguous(memory_format=torch.channels_last)
    rows, cols = min(radius, x.shape[-2] - 1), min(radius, x.shape[-1] - 1)
    if cols > 0:
        x = F.avg_pool2d(x, (1, 2 * cols + 1), stride=1, padding=(0, cols), count_include_pad=False)
    if rows > 0:
        x = F.avg_pool2d(x, (2 * rows + 1, 1), stride=1, padding=(rows, 0), count_include_pad=False)
    return x.contiguous()


def guided_filter(guide: Tensor, source: Tensor, radius: int, eps: float) -> Tensor:
    """He, Sun and Tang's guided filter (TPAMI 2013): ``source`` smoothed where ``guide`` is flat,
    its edges kept where ``guide`` has them. ``(N, 3, H, W)`` (colour) or ``(N, 1, H, W)`` (grey)
    guide, ``(N, C, H, W)`` source; returns ``(N, C, H, W)`` in fp32 whatever the inputs' precision.
    It is the affine models of ``guided_filter_coefficients`` applied to the guide itself
    (``apply_affine``); an output pixel depends on inputs up to ``2·radius`` away.
    """
    return apply_affine(guided_filter_coefficients(guide, source, radius, eps), guide)


def guided_filter_coefficients(guide: Tensor, source: Tensor, radius: int, eps: float) -> Tensor:
    """The guided filter's per-pixel affine colour models, ``(N, G + 1, C, H, W)`` in fp32: for
    every output channel c, ``[:, :G, c]`` are the weights of the G guide channels and
    ``[:, G, c]`` the offset, so the filtered pixel is ``Σ_i A[i, c]·I_i + A[G, c]``.

    In every ``(2r+1)²`` window k the source is fitted as an affine function of the guide,
    ``p ≈ a_kᵀ I + b_k``, by ridge regression: ``a_k = (Σ_k + eps·U)⁻¹ cov_k(I, p)`` and
    ``b_k = mean_k(p) − a_kᵀ mean_k(I)``, with ``Σ_k`` the guide's colour covariance in the window
    (a 3×3 matrix inverted per pixel by cofactors). Each pixel's model averages the ``a``, ``b``
    of the windows covering it. ``eps`` (in squared intensity) sets which variations count as edges.
    Fitted on a small copy of a photo, the models can be upsampled and applied to the full-size
    photo: He and Sun's fast guided filter (``glfa.smoothing``).
    """
    guide, source = full_precision(guide).float(), full_precision(source).float()
    n, channels, height, width = source.shape
    mean_i, mean_p = box_filter(guide, radius), box_filter(source, radius)
    # cov(I, p) for every guide channel i and source channel c: (N, G, C, H, W)
    products = (guide[:, :, None] * source[:, None]).flatten(1, 2)
    cov_ip = (box_filter(products, radius).view(n, -1, channels, height, width)
              - mean_i[:, :, None] * mean_p[:, None])
    if guide.shape[1] == 1:                                    # grey guide: a scalar ridge regression
        a = cov_ip / (box_filter(guide * guide, radius) - mean_i * mean_i + eps)[:, :, None]
    elif guide.shape[1] == 3:
        # Σ + eps·U, its six distinct entries (00, 01, 02, 11, 12, 22), each (N, H, W)
        pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
        products = torch.stack([guide[:, i] * guide[:, j] for i, j in pairs], 1)
        s00, s01, s02, s11, s12, s22 = (box_filter(products, radius)
                                        - torch.stack([mean_i[:, i] * mean_i[:, j] for i, j in pairs], 1)).unbind(1)
        s00, s11, s22 = s00 + eps, s11 + eps, s22 + eps
        # inverse of the symmetric 3×3 matrix: cofactors over the determinant
        c00, c01, c02 = s11 * s22 - s12 * s12, s02 * s12 - s01 * s22, s01 * s12 - s02 * s11
        c11, c12, c22 = s00 * s22 - s02 * s02, s01 * s02 - s00 * s12, s00 * s11 - s01 * s01
        det = s00 * c00 + s01 * c01 + s02 * c02
        inverse = torch.stack([c00, c01, c02, c01, c11, c12, c02, c12, c22], 1).view(n, 3, 3, 1, height, width)
        a = (inverse * cov_ip[:, None]).sum(2) / det[:, None, None]          # (N, 3, C, H, W): a[:, i, c]
    else:
        raise ValueError(f"the guide needs 1 or 3 channels, got {guide.shape[1]}")
    b = mean_p - (a * mean_i[:, :, None]).sum(1)
    models = torch.cat([a, b[:, None]], 1)
    return box_filter(models.flatten(1, 2), radius).view_as(models)


def apply_affine(models: Tensor, guide: Tensor) -> Tensor:
    """The per-pixel affine colour models ``(N, G + 1, C, H, W)`` of ``guided_filter_coefficients``
    applied to a guide ``(N, G, H, W)`` of the same size: ``Σ_i A[i, c]·I_i + A[G, c]``, fp32."""
    guide = full_precision(guide).float()
    return (models[:, :-1] * guide[:, :, None]).sum(1) + models[:, -1]


# --------------------------------------------------------------------------------------------
# Local structure (the structure loss, ``--structure_weight``)
# --------------------------------------------------------------------------------------------

def local_moments(first: Tensor, second: Tensor, radius: int) -> tuple[Tensor, Tensor, Tensor]:
    """The variances of two ``(N, 1, H, W)`` maps and their covariance in the ``(2r+1)²`` box
    around every pixel (``box_filter``'s windows), in fp32."""
    first, second = full_precision(first), full_precision(second)
    mean_1, mean_2 = box_filter(first, radius), box_filter(second, radius)
    var_1 = (box_filter(first * first, radius) - mean_1 * mean_1).clamp_min(0)
    var_2 = (box_filter(second * second, radius) - mean_2 * mean_2).clamp_min(0)
    return var_1, var_2, box_filter(first * second, radius) - mean_1 * mean_2

