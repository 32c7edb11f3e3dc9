"""Frozen-encoder features: computed once, cached on disk, reused across epochs and runs.

A frozen encoder's features do not change (METHOD.md section 8), so training the heads for many
epochs costs almost nothing beyond the first pass.  The cache key covers everything that changes the
features: the encoder description (architecture, weight source and hash, noise alpha and its seed,
truncation, input size), the image list (path, size and modification time of every file), the
transform, the number of augmented views and their seed.  A stale entry is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm  # not tqdm.auto: it iterates a DataLoader twice (two worker sets)

from seabed_hmc.atomic import atomic_path
from seabed_hmc.data.images import ImageDataset, collate_skip_bad
from seabed_hmc.engine.device import device_of, to_device
from seabed_hmc.models.classifier import HierarchicalClassifier


def image_list_signature(paths: Sequence[str]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) for every image: a changed or replaced file changes the key."""
    signature = []
    for path in paths:
        try:
            status = os.stat(path)
            signature.append((str(path), status.st_size, status.st_mtime_ns))
        except OSError:
            signature.append((str(path), -1, -1))
    return signature


def cache_key(
    encoder_description: dict, paths: Sequence[str], transform: object, views: int, seed: int
) -> str:
    record = {
        "encoder": encoder_description,
        "images": image_list_signature(paths),
        "transform": repr(transform),
        "views": views,
        "seed": seed,
        "version": 1,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:32]


@torch.no_grad()
def extract_features(
    model: HierarchicalClassifier,
    dataset: ImageDataset,
    batch_size: int = 64,
    workers: int = 0,
    channels_last: bool = True,
    progress: bool = False,
    description: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features of every image: ``(features (n, F) float32, ok (n,) bool)``.

    Images that fail to load at this point are reported by ``ok == False`` (their rows are zeros).
    """
    model.eval()
    device = device_of(model)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_skip_bad,
        pin_memory=device.type == "cuda",
    )
    features = torch.zeros(len(dataset), model.head.in_features)
    ok = torch.zeros(len(dataset), dtype=torch.bool)
    for batch in tqdm(loader, desc=description, disable=not progress, leave=False):
        if batch["index"].numel() == 0:
            continue
        images = to_device(batch["image"], device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        features[batch["index"]] = model.features(images).cpu()
        ok[batch["index"]] = True
    return features, ok


class FeatureCache:
    """A folder of cached feature tensors, one file per key, written atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def load(self, key: str) -> dict | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged entry is recomputed, not trusted
            path.unlink(missing_ok=True)
            return None

    def save(self, key: str, entry: dict) -> None:
        with atomic_path(self.path(key)) as temporary:
            torch.save(entry, temporary)

    def features(
        self,
        model: HierarchicalClassifier,
        dataset: ImageDataset,
        encoder_description: dict,
        views: int = 1,
        seed: int = 0,
        **extract_options,
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Features of ``dataset`` for ``views`` passes: ``(features (views, n, F), ok (n,), hit)``.

        With a random (training) transform each view is a different augmentation, seeded by
        ``seed`` and the view number, so the cached views are reproducible.
        """
        key = cache_key(encoder_description, dataset.paths, dataset.transform, views, seed)
        entry = self.load(key)
        if entry is not None:
            return entry["features"], entry["ok"], True
        stacked, ok_all = [], torch.ones(len(dataset), dtype=torch.bool)
        for view in range(views):
            torch.manual_seed(seed * 1000 + view)
            dataset.seed(seed * 1000 + view)
            features, ok = extract_features(model, dataset, **extract_options)
            stacked.append(features)
            ok_all &= ok
        entry = {"features": torch.stack(stacked), "ok": ok_all}
        self.save(key, entry)
        return entry["features"], entry["ok"], False
