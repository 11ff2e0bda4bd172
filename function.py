"""Small statistics helpers shared by the model, the losses and inference.

Every feature tensor here is ``(N, C, H, W)``; statistics are taken per sample and per
channel over the spatial positions.
"""
import torch
from torch import Tensor

EPS = 1e-5


def full_precision(tensor: Tensor) -> Tensor:
    """Half-precision tensors (from autocast) as fp32, so statistics keep their precision."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


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
