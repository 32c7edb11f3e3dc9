"""The start-up fixes: offline defaults, and torchvision/timm importable on this machine."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

import seabed_hmc  # noqa: F401  (applies the fixes)
from seabed_hmc._compat import box_nms


def test_environment_defaults_set_but_user_values_kept():
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["NO_ALBUMENTATIONS_UPDATE"] == "1"
    code = "import os, seabed_hmc; print(os.environ['HF_HUB_OFFLINE'])"
    env = {**os.environ, "HF_HUB_OFFLINE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_huge_pages_default_is_set_before_torch_is_imported():
    """torch reads THP_MEM_ALLOC_ENABLE at its first allocation: the package sets it before torch is
    imported (an import hook in a fresh process records the variable when torch's import starts)."""
    code = (
        "import os, sys\n"
        "os.environ.pop('THP_MEM_ALLOC_ENABLE', None)\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            print('at torch import:', os.environ.get('THP_MEM_ALLOC_ENABLE'))\n"
        "sys.meta_path.insert(0, Spy())\n"
        "import seabed_hmc\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "at torch import: 1"
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "0"}  # a user's choice is kept
    code = "import os, seabed_hmc; print(os.environ['THP_MEM_ALLOC_ENABLE'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_timm_and_torchvision_import_and_run_in_a_fresh_process():
    code = (
        "import seabed_hmc, torch, timm, torchvision\n"
        "m = timm.create_model('resnet18', pretrained=False, num_classes=0).eval()\n"
        "print(m(torch.zeros(1, 3, 32, 32)).shape[1])\n"
        "print(torchvision.transforms.functional.hflip(torch.arange(4.).view(1, 2, 2)).flatten().tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["512", "[1.0, 0.0, 3.0, 2.0]"]


def brute_force_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        return inter / (area(a) + area(b) - inter)

    keep: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: -float(scores[i])):
        if all(iou(boxes[i].tolist(), boxes[k].tolist()) <= threshold for k in keep):
            keep.append(i)
    return keep


def test_box_nms_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(60, 2, generator=generator) * 50
    sizes = torch.rand(60, 2, generator=generator) * 20 + 1
    boxes = torch.cat([corners, corners + sizes], dim=1)
    scores = torch.rand(60, generator=generator)
    for threshold in (0.1, 0.3, 0.7):
        assert box_nms(boxes, scores, threshold).tolist() == brute_force_nms(boxes, scores, threshold)
    assert torch.ops.torchvision.nms(boxes, scores, 0.3).tolist() == brute_force_nms(boxes, scores, 0.3)
