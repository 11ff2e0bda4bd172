"""Stylising images with a trained model: the model is loaded once, then applied per pair."""
import torch
import torch.nn.functional as F
from torch import Tensor

from checkpoint import load_decoder, load_encoder, load_transform
from cli import UserError
from function import coral
from net import parse_mode


class Stylizer:
    """Encoder, transform and decoder for inference, with the options of the CCPL family:
    ``alpha`` blending, interpolation between styles, and colour preservation."""

    def __init__(self, vgg: str, decoder: str, transform: str, mode: str = "photo", kind: str = "lct",
                 device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None):
        self.spec = parse_mode(mode)
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype
        self.encoder = load_encoder(vgg, self.spec).to(self.device).eval()
        self.decoder = load_decoder(decoder, self.spec).to(self.device).eval()
        self.transform = load_transform(transform, self.spec, kind).to(self.device).eval()

    def check_size(self, image: Tensor, what: str) -> None:
        """Images smaller than the mode's minimum cannot be encoded deep enough."""
        if min(image.shape[-2:]) < self.spec.min_side:
            raise UserError(f"{what} is {image.shape[-1]}×{image.shape[-2]} px; {self.spec.name} mode needs "
                            f"at least {self.spec.min_side} px on each side")

    def _encode(self, image: Tensor) -> Tensor:
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            return self.encoder(image.to(self.device))

    @torch.no_grad()
    def stylize(self, content: Tensor, styles: list[Tensor], weights: list[float] | None = None,
                alpha: float = 1.0, preserve_color: bool = False) -> Tensor:
        """Stylise one ``(3, H, W)`` content image in [0, 1]; returns ``(3, H, W)`` in [0, 1].

        Several styles are mixed with ``weights`` in feature space. Sizes that are not a
        multiple of the encoder's downscale are reflection-padded and cropped back.
        """
        self.check_size(content, "the content image")
        if weights is None:
            weights = [1.0 / len(styles)] * len(styles)
        height, width = content.shape[-2:]
        multiple = self.spec.downscale
        pad_h, pad_w = -height % multiple, -width % multiple
        padded = F.pad(content[None], (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else content[None]
        content_feat = self._encode(padded)
        feat = torch.zeros_like(content_feat, dtype=torch.float32)
        for style, weight in zip(styles, weights):
            self.check_size(style, "the style image")
            if preserve_color:
                style = coral(style.to(self.device), content.to(self.device))
            style_feat = self._encode(style[None])
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                feat = feat + weight * self.transform(content_feat, style_feat).float()
        feat = alpha * feat + (1 - alpha) * content_feat.float()
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            result = self.decoder(feat)
        return result[0, :, :height, :width].float().clamp(0, 1).cpu()
