"""The full model: an encoder producing pooled features and the batched ensemble head."""

from __future__ import annotations

import torch
from torch import nn

from seabed_hmc.models.heads import EnsembleHead


class HierarchicalClassifier(nn.Module):
    """``encoder`` (images (B, 3, H, W) -> features (B, F)) followed by an :class:`EnsembleHead`.

    ``forward(images)`` returns logits (heads, batch, nodes); ``head(features)`` skips the encoder,
    which is what training on cached features of a frozen encoder uses.

    Images are normalised float tensors, or uint8 (0-255) once :meth:`set_input_normalisation` has
    given the run's mean and std: the model then normalises them itself, on their device (how images
    travel to a GPU: a quarter of the bytes of float, see ``data.normalise_on_device``).
    """

    def __init__(self, encoder: nn.Module, head: EnsembleHead, autocast_bf16: bool | str = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.autocast_bf16 = autocast_bf16
        self.input_normalisation: tuple[torch.Tensor, torch.Tensor] | None = None  # not in the state dict
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def set_input_normalisation(self, mean, std) -> None:
        """The per-channel mean and std (in [0, 1] units) that uint8 inputs are normalised with."""
        mean, std = (torch.as_tensor(v, dtype=torch.float32).reshape(1, 3, 1, 1) for v in (mean, std))
        self.input_normalisation, self._on_device = (mean, std), {}

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` as the encoder's input: uint8 images normalised on their device (in fp32,
        whatever autocast is active; memory format kept), float images as they are."""
        if images.dtype != torch.uint8:
            return images
        if self.input_normalisation is None:
            raise ValueError(
                "uint8 images need the input normalisation: call set_input_normalisation(mean, std) "
                "(load_model and training do), or normalise the images in the transform"
            )
        if images.device not in self._on_device:
            self._on_device[images.device] = tuple(t.to(images.device) for t in self.input_normalisation)
        mean, std = self._on_device[images.device]
        kind = images.device.type if images.device.type in ("cpu", "cuda") else "cpu"
        with torch.autocast(kind, enabled=False):
            return normalise_uint8(images, mean, std)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, F) float32; the encoder runs under bf16 autocast when enabled, on the
        CPU or on a CUDA GPU that supports bf16.  uint8 images: see :meth:`prepare_input`."""
        images = self.prepare_input(images)
        kind = images.device.type if images.device.type in ("cpu", "cuda") else "cpu"
        if self.autocast_bf16 == "auto":  # decided by the device the images are on
            enabled = bf16_supported(kind)
        else:
            enabled = bool(self.autocast_bf16) and (kind == "cpu" or torch.cuda.is_bf16_supported())
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=enabled):
            features = self.encoder(images)
        return features.float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def normalise_uint8(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x / 255 - mean) / std of uint8 ``images`` (B, 3, H, W), as float32 in one pass: x * 1/(255 std)
    - mean/std.  The result keeps the input's memory format, so a channels-last view (a permuted
    (B, H, W, 3) batch) gives a channels-last tensor without another copy (2.8 vs 7.0 ms for 32 tiles of
    224 px as float(), sub_, mul_ on this project's CPU).  ``mean``, ``std``: (1, 3, 1, 1) float32."""
    return torch.addcmul(-mean / std, images, 1.0 / (255.0 * std))


def bf16_supported(kind: str = "cpu") -> bool:
    """True where bf16 autocast speeds the encoder up on a device of ``kind``: ``"cuda"``, a GPU with
    bf16 (Ampere and later); ``"cpu"``, a CPU that runs bf16 natively (AVX-512 BF16 / AMX).  A GPU in
    the machine says nothing about the CPU: a run with ``train.device=cpu`` there keeps fp32 unless
    its CPU has bf16."""
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
