"""Start-up fixes that make the pinned stack import cleanly on CPU-only machines.

Two things happen here, once, before anything imports torchvision or timm:

* Environment defaults: ``HF_HUB_OFFLINE=1`` (timm never waits ~46 s on the network for weights;
  weights come only from explicit local files), ``NO_ALBUMENTATIONS_UPDATE=1`` (no update check
  on import) and ``THP_MEM_ALLOC_ENABLE=1`` (torch backs CPU tensors of 2 MB and more with
  transparent huge pages: the 20-head ensemble's 130 MB weight gradients otherwise cost ~135,000
  page faults per step, a third of the step; scripts/bench_heads.py).  Values a user has already set
  are left alone.  torch reads ``THP_MEM_ALLOC_ENABLE`` at its first allocation, so the defaults are
  set when this module is imported, before it imports torch.
* The torchvision operator fix.  The PyPI wheel of torchvision 0.28.0 is a CUDA build whose compiled
  extension cannot load against the CPU build of torch, and ``import torchvision`` then dies with
  ``operator torchvision::nms does not exist`` when it registers fake kernels for those operators.
  If the extension does not load, the ``torchvision::nms`` and ``torchvision::qnms`` schemas are
  defined here with :mod:`torch.library` (``nms`` backed by a pure-PyTorch implementation).  Where the
  extension loads (a normal install), nothing is defined.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

ENVIRONMENT_DEFAULTS = {"HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "THP_MEM_ALLOC_ENABLE": "1"}


def set_environment_defaults() -> None:
    """Set the offline/no-update defaults unless the user chose otherwise."""
    for key, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(key, value)


set_environment_defaults()  # before torch is imported (THP_MEM_ALLOC_ENABLE is read once)

import torch  # noqa: E402

_OPERATOR_LIBRARY: torch.library.Library | None = None


def _torchvision_extension_loads() -> bool:
    """True if torchvision's compiled ``_C`` extension loads against the installed torch."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # torchvision absent: nothing to fix
    candidates = []
    for folder in spec.submodule_search_locations:
        candidates += glob.glob(os.path.join(folder, "_C*.so")) + glob.glob(os.path.join(folder, "_C*.pyd"))
    if not candidates:
        return False
    try:
        torch.ops.load_library(candidates[0])
    except (OSError, ImportError, RuntimeError):
        return False
    return True


def _operator_defined(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name).default  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; boxes (n, 4) as x1, y1, x2, y2. Returns kept indices, best first."""
    order = torch.argsort(scores, descending=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for rank, index in enumerate(order.tolist()):
        if suppressed[rank]:
            continue
        keep.append(index)
        rest = order[rank + 1 :]
        width = (torch.minimum(x2[rest], x2[index]) - torch.maximum(x1[rest], x1[index])).clamp(min=0)
        height = (torch.minimum(y2[rest], y2[index]) - torch.maximum(y1[rest], y1[index])).clamp(min=0)
        overlap = width * height
        iou = overlap / (areas[rest] + areas[index] - overlap).clamp(min=torch.finfo(boxes.dtype).tiny)
        suppressed[rank + 1 :] |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def _quantized_nms_unavailable(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    raise NotImplementedError(
        "torchvision::qnms needs torchvision's compiled extension, which does not load with this torch build"
    )


def patch_torchvision_operators() -> bool:
    """Define the torchvision operator schemas if its extension cannot load. Returns True if patched."""
    global _OPERATOR_LIBRARY
    if "torchvision" in sys.modules or _OPERATOR_LIBRARY is not None:
        return False
    if _torchvision_extension_loads() or _operator_defined("nms"):
        return False
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.impl("nms", box_nms, "CompositeExplicitAutograd")
    library.impl("qnms", _quantized_nms_unavailable, "CompositeExplicitAutograd")
    _OPERATOR_LIBRARY = library
    return True


def apply() -> None:
    set_environment_defaults()
    patch_torchvision_operators()
