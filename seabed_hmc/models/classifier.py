"""The full model: an encoder producing pooled features and the batched ensemble head."""

from __future__ import annotations

import torch
from torch import nn

from seabed_hmc.models.heads import EnsembleHead


class HierarchicalClassifier(nn.Module):
    """``encoder`` (images (B, 3, H, W) -> features (B, F)) followed by an :class:`EnsembleHead`.

    ``forward(images)`` returns logits (heads, batch, nodes); ``head(features)`` skips the encoder,
    which is what training on cached features of a frozen encoder uses.
    """

    def __init__(self, encoder: nn.Module, head: EnsembleHead, autocast_bf16: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.autocast_bf16 = autocast_bf16

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, F) float32; the encoder runs under bf16 autocast when enabled, on the
        CPU or on a CUDA GPU that supports bf16."""
        kind = images.device.type
        enabled = self.autocast_bf16 and (
            kind == "cpu" or (kind == "cuda" and torch.cuda.is_bf16_supported())
        )
        with torch.autocast(
            kind if kind in ("cpu", "cuda") else "cpu", dtype=torch.bfloat16, enabled=enabled
        ):
            features = self.encoder(images)
        return features.float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def bf16_supported() -> bool:
    """True where bf16 autocast speeds the encoder up: a CUDA GPU with bf16 (Ampere and later), or a
    CPU that runs bf16 natively (AVX-512 BF16 / AMX)."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
