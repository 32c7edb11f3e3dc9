"""Benchmark for a GPU machine (runs on the CPU too, smaller): mapping and training speed against the
model alone, in one run of a few minutes on synthetic data (nothing outside the repository).

1. ``predict-tiles`` end to end (checkpoint loading, window reads, the model, blending, COG writing) on
   a generated ``--size`` px 3-band raster (MobileNetV2, 5 heads, 224 px tiles; the device's default
   batch, readers and precision: :func:`seabed_hmc.engine.device.default_batch`, ``tiles.default_workers``,
   ``inference_dtype``), in tiles/s, against the same model on ready tensors already on the device
   (same batch, same precision, channels-last): ``tiles_ratio`` = end to end / model only.
2. Training a trainable MobileNetV2 (20 heads, batch ``--train-batch``): images/s through the full
   input pipeline as ``train`` runs it (PNG decode, augmentation, the device's loading processes
   :func:`seabed_hmc.engine.device.loader_workers`, pinned uint8 batches normalised by the model on a
   GPU) against the same steps on ready batches on the device: ``training_ratio``.
3. Frozen-feature extraction (what fills the feature cache, at the device's scoring batch): images/s.
4. The GPU's mean utilisation during (1), sampled with ``nvidia-smi`` every 200 ms (null without it),
   and the torch, CUDA and device names.

The last line is one JSON object.  On a GPU: ``python scripts/bench_gpu.py`` (the defaults fit in
about 8 minutes on one H200); on the CPU, ``--size 2000 --train-steps 4 --images 64`` checks it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from seabed_hmc.data.images import ImageDataset, collate_skip_bad
from seabed_hmc.data.manifest import read_manifest
from seabed_hmc.data.synthetic import make_synthetic_seafloor
from seabed_hmc.data.transforms import build_transform
from seabed_hmc.engine.device import (
    default_batch,
    loader_workers,
    normalises_on_device,
    resolve_device,
    to_device,
)
from seabed_hmc.engine.features import extract_features
from seabed_hmc.engine.tiles import (
    default_workers,
    inference_dtype,
    predict_tiles,
    tile_model,
    tile_transform,
    to_model_input,
)
from seabed_hmc.losses import build_loss
from seabed_hmc.models import EnsembleHead, build_encoder
from seabed_hmc.models.classifier import HierarchicalClassifier
from seabed_hmc.models.heads import ensemble_probabilities
from seabed_hmc_studies.benchmarks.bench_tiles import make_checkpoint, make_raster


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Utilisation:
    """Mean GPU utilisation (%) from ``nvidia-smi`` sampled every 200 ms while the block runs."""

    def __init__(self, device: torch.device):
        self.samples: list[float] = []
        self.process = None
        self.device = device

    def __enter__(self):
        if self.device.type != "cuda":
            return self
        try:
            self.process = subprocess.Popen(
                ["nvidia-smi", f"--id={self.device.index or 0}", "--query-gpu=utilization.gpu",
                 "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        except OSError:
            return self
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                pass

    def __exit__(self, *_):
        if self.process is not None:
            self.process.terminate()
            self.process.wait()

    @property
    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def tiles_model_only(checkpoint: Path, device: torch.device, batch: int, dtype, tiles: int) -> float:
    """Tiles/s of the model alone on a ready batch on the device, as predict-tiles runs it."""
    model, hierarchy, record = tile_model(checkpoint)
    model.to(device)
    size = int(record.normalisation["image_size"])
    _, norm = tile_transform(record)
    norm = tuple(t.to(device) for t in norm)
    ready = to_model_input(torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8).to(device), norm)
    ready = ready.contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = model(ready)
        return ensemble_probabilities(logits.float(), hierarchy)

    with torch.inference_mode():
        for _ in range(3):
            step()  # warm-up (cuDNN autotuning, allocator)
        synchronize(device)
        start, done = time.perf_counter(), 0
        while done < tiles:
            mean, spread = step()
            mean.cpu(), spread.cpu()
            done += batch
        synchronize(device)
    return done / (time.perf_counter() - start)


def training(table, device: torch.device, batch: int, steps: int, workers: int) -> dict:
    """Images/s of a trainable MobileNetV2 with 20 heads: full input pipeline vs ready device tensors."""
    encoder = build_encoder("mobilenetv2_100", weights=None, freeze=False)
    head = EnsembleHead(encoder.num_features, len(table.hierarchy), heads=20)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    model = HierarchicalClassifier(encoder, head, autocast_bf16=bf16).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    model.set_input_normalisation(encoder.mean, encoder.std)
    # as train runs it: uint8 images normalised by the model on a GPU (data.normalise_on_device: auto)
    on_device = normalises_on_device("auto", device)
    transform = build_transform(None, 224, encoder.mean, encoder.std, train=True, normalise=not on_device)
    dataset = ImageDataset(table.paths, table.targets, table.mask, transform)
    loader = DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate_skip_bad,
        persistent_workers=workers > 0, drop_last=True, pin_memory=device.type == "cuda",
    )  # fmt: skip
    loss_fn = build_loss("rare_node", table.hierarchy, table.targets, table.mask).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run(batches) -> int:
        seen = 0
        for images, targets, mask in batches:
            images = to_device(images, device).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(images), to_device(targets, device), to_device(mask, device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(targets)
        synchronize(device)
        return seen

    def from_loader():
        for index, item in enumerate(loader):
            if index >= steps:
                return
            yield item["image"], item["targets"], item["mask"]

    first = next(iter(loader))
    ready = [tuple(to_device(first[k], device) for k in ("image", "targets", "mask"))]
    run(ready * 3)  # warm-up

    def on_tensors() -> float:
        start = time.perf_counter()
        return run(ready * steps) / (time.perf_counter() - start)

    before = on_tensors()
    start = time.perf_counter()
    pipeline = run(from_loader()) / (time.perf_counter() - start)
    tensors = max(before, on_tensors())  # the faster baseline: drift cannot flatter the pipeline
    return {
        "train_uint8_input": on_device,
        "train_workers": workers,
        "train_pipeline_images_per_s": round(pipeline, 1),
        "train_tensors_images_per_s": round(tensors, 1),
        "training_ratio": round(pipeline / tensors, 3),
        "train_batch": batch,
        "train_bf16": bf16,
    }


def feature_extraction(table, device: torch.device, batch: int, workers: int) -> float:
    encoder = build_encoder("mobilenetv2_100", weights=None, freeze=True)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    model = HierarchicalClassifier(encoder, EnsembleHead(encoder.num_features, len(table.hierarchy), heads=1),
                                   autocast_bf16=bf16).to(device)  # fmt: skip
    model.set_input_normalisation(encoder.mean, encoder.std)
    normalise = not normalises_on_device("auto", device)
    transform = build_transform(None, 224, encoder.mean, encoder.std, train=False, normalise=normalise)
    dataset = ImageDataset(table.paths, table.targets, table.mask, transform)
    extract_features(model, dataset, batch_size=batch, workers=workers)  # warm-up, page cache
    synchronize(device)
    start = time.perf_counter()
    extract_features(model, dataset, batch_size=batch, workers=workers)
    synchronize(device)
    return len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=16_000, help="raster side in pixels (224 px tiles)")
    parser.add_argument("--images", type=int, default=1024, help="synthetic 224 px training images")
    parser.add_argument("--train-batch", type=int, default=None, help="default: 128 on a GPU, 32 on the CPU")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    workers = default_workers(device)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cores": os.cpu_count(),
        "readers": workers,
    }
    checkpoint = make_checkpoint(scratch / "model", images=20, size=64, overrides=("train.device=cpu",))
    raster = make_raster(scratch / "raster.tif", args.size)
    batch, dtype = default_batch(device), inference_dtype("auto", device)
    started = time.perf_counter()
    with Utilisation(device) as busy:
        summary = predict_tiles(checkpoint, raster, scratch / "maps", device=str(device), progress=False)
    seconds = time.perf_counter() - started
    end_to_end = summary["tiles"] / seconds
    model_only = tiles_model_only(checkpoint, device, batch, dtype, tiles=min(summary["tiles"], 20 * batch))
    result |= {
        "tiles": summary["tiles"],
        "tiles_batch": batch,
        "tiles_precision": str(dtype or torch.float32),
        "tiles_end_to_end_per_s": round(end_to_end, 1),
        "tiles_model_only_per_s": round(model_only, 1),
        "tiles_ratio": round(end_to_end / model_only, 3),
        "gpu_utilisation_percent": busy.mean,
    }
    manifest = make_synthetic_seafloor(scratch / "images", images=args.images, size=224, seed=1)
    table = read_manifest(manifest)
    train_batch = args.train_batch or (128 if device.type == "cuda" else 32)
    result |= training(table, device, train_batch, args.train_steps, loader_workers(None, device))
    features = feature_extraction(table, device, default_batch(device), loader_workers(None, device))
    result["features_images_per_s"] = round(features, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
