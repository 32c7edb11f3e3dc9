"""Where the engine computes: the CPU or a CUDA GPU.

``device`` settings (``train.device`` in a config, ``--device`` on ``evaluate``, ``predict`` and
``predict-tiles``): ``auto`` (the default: the GPU if torch sees one, else the CPU), ``cpu``, ``cuda``
or ``cuda:N``.  Under ``torchrun`` a bare ``cuda`` (or ``auto`` on a GPU machine) means this process's
GPU, ``cuda:LOCAL_RANK``, and the process group uses NCCL; on the CPU it uses gloo.

Data stay on the CPU (images, the feature cache, targets); each batch moves to the device, and what
comes back (features, probabilities) returns to the CPU, so metrics, tables and maps are computed the
same way on both.  Checkpoints load to the CPU first (``map_location="cpu"``) and are portable.

Note: this machine and CI have no GPU, so the CUDA and NCCL paths are written to torch's documented
contracts but have not been run on a GPU; tests cover the device plumbing on the CPU.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from seabed_hmc.config import ConfigError


def resolve_device(name: str | torch.device | None = "auto", key: str = "device") -> torch.device:
    """The torch device for a ``device`` setting (see the module docstring); clear errors, naming the
    setting ``key``, otherwise."""
    if isinstance(name, torch.device):
        return name
    text = (name or "auto").strip().lower()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text != "cuda" and not text.startswith("cuda:"):
        raise ConfigError(f"{key} {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    index = local_rank if text == "cuda" else _index(text, name, key)  # the spelling first, then the GPU
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{key} {name!r}: torch sees no CUDA GPU here (torch {torch.__version__}); "
            "use device 'cpu' or 'auto', or install a CUDA build of torch"
        )
    count = torch.cuda.device_count()
    if text == "cuda" and local_rank >= count:  # torchrun started more processes here than GPUs
        processes = os.environ.get("LOCAL_WORLD_SIZE", "?")
        raise ConfigError(
            f"{key} {name!r}: this is process {local_rank} of {processes} that torchrun started on this "
            f"machine, but only {count} CUDA GPU(s) are visible: start one process per GPU (torchrun's "
            f"nproc_per_node={count}), or set {key} to 'cpu' to run every process on the CPU"
        )
    if index >= count:
        raise ConfigError(f"{key} {name!r}: only {count} CUDA GPU(s) visible")
    return torch.device("cuda", index)


def _index(text: str, name, key: str) -> int:
    try:
        index = int(text.split(":", 1)[1])
    except ValueError:
        raise ConfigError(f"{key} {name!r}: expected 'cuda:N' with N a GPU number") from None
    if index < 0:
        raise ConfigError(f"{key} {name!r}: the GPU number cannot be negative")
    return index


def default_batch(device: torch.device) -> int:
    """Images or tiles per batch when only scoring (predict, evaluation, feature extraction,
    predict-tiles): 32 on the CPU (larger batches gain nothing on a few cores), 256 on a CUDA GPU
    (MobileNetV2 at 224 px in bf16 needs about 3 GB of GPU memory for that).  Training keeps
    ``train.batch_size`` on every device: it changes the optimisation, not just the speed."""
    return 256 if device.type == "cuda" else 32


def loader_workers(setting: int | None, device: torch.device | None = None) -> int:
    """Image-loading processes (``data.workers``): the setting when given; by default 2 on the CPU
    (the model needs the cores), and on a CUDA GPU every core but two, at most 16 (decoding and
    augmenting JPEGs is then what keeps the GPU waiting)."""
    if setting is not None:
        return int(setting)
    if device is not None and device.type == "cuda":
        return max(1, min(16, (os.cpu_count() or 1) - 2))
    return 2


def normalises_on_device(setting: bool | str, device: torch.device | None) -> bool:
    """Whether images travel as uint8 and are normalised on ``device`` (``data.normalise_on_device``):
    ``auto`` means on a CUDA GPU."""
    if setting == "auto":
        return device is not None and device.type == "cuda"
    return bool(setting)


def device_of(module: nn.Module) -> torch.device:
    """The device of a module's parameters (the CPU for a module without any)."""
    for parameter in module.parameters():
        return parameter.device
    return torch.device("cpu")


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; asynchronous from pinned memory on a GPU, a no-op on the same device."""
    if tensor.device == device:
        return tensor
    return tensor.to(device, non_blocking=device.type == "cuda" and tensor.is_pinned())
