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
        """(B, 3, H, W) -> (B, F) float32; the encoder runs under bf16 autocast when enabled."""
        with torch.autocast(
            "cpu", dtype=torch.bfloat16, enabled=self.autocast_bf16 and images.device.type == "cpu"
        ):
            features = self.encoder(images)
        return features.float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def bf16_supported() -> bool:
    """True where the CPU runs bf16 natively (AVX-512 BF16 / AMX), so autocast speeds it up."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
