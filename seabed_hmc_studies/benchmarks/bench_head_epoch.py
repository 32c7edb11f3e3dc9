"""Benchmark: one training epoch of heads on cached features, 20 heads against 1, on the same features.

What ``train`` does per epoch with a frozen encoder and the feature cache, piece by piece, with the
library's own functions: the optimizer steps over the training split (``train_epoch``: forward, the
loss, backward, fused AdamW), the validation pass (``score_split``) and the checkpoints
(``Checkpoints``: every epoch counted as a new best, the most copying), once writing them every epoch
(``train.checkpoint_minutes: 0``, the earlier behaviour) and once at the default (at most once a minute;
within these few epochs no write falls due, so the epochs keep the best weights in memory). Features are
synthetic, shaped like the issue's case: 1,734 training and 340 validation images of MobileNetV2
features (F = 1280, the head's hidden width F as in METHOD.md), a 3-level tree of 48 nodes, batch 64
(``configs/ccr_benthic.yaml``). ``control`` has one head, ``rare_node`` 20 (bbma). Each setting runs
``--epochs`` epochs after one warm-up; the median is reported. The last line is one JSON object with the
20-head/1-head ratios.

    python scripts/bench_head_epoch.py [--epochs 3] [--threads 2] [--hidden 1280] [--batch-size 64]
                                       [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from seabed_hmc.config import RunConfig
from seabed_hmc.engine.allocator import serve_large_blocks_from_heap
from seabed_hmc.engine.checkpoint import Checkpoints
from seabed_hmc.engine.evaluation import Inputs, score_split
from seabed_hmc.engine.train import train_epoch
from seabed_hmc.hierarchy.loaders import from_paths
from seabed_hmc.losses import build_loss, node_frequencies
from seabed_hmc.models import EnsembleHead


def problem(train: int, val: int, features: int, seed: int = 0):
    """A 48-node tree, skewed label frequencies, and features that carry the labels."""
    paths = [f"A{i} > B{j} > C{k}" for i in range(3) for j in range(3) for k in range(4)]
    hierarchy = from_paths(paths)
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(paths) + 1)
    labels = rng.choice(len(paths), train + val, p=weights / weights.sum())
    targets, mask = hierarchy.encode([paths[i] for i in labels])
    centres = torch.from_numpy(rng.normal(size=(len(paths), features)).astype(np.float32))
    noise = torch.from_numpy(rng.normal(size=(train + val, features)).astype(np.float32))
    values = (centres[labels] + noise).relu()
    split = {
        "train": Inputs(targets[:train], mask[:train], features=values[None, :train]),
        "val": Inputs(targets[train:], mask[train:], features=values[None, train:]),
    }
    return hierarchy, split


def synchronised(device: str) -> float:
    """The time once the device has finished its queued work."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def epoch_parts(heads: int, minutes: float, args, hierarchy, split) -> dict:
    torch.manual_seed(0)
    config = RunConfig()
    config.train.batch_size, config.train.progress = args.batch_size, False
    features = split["train"].features.shape[-1]
    head = EnsembleHead(features, len(hierarchy), heads=heads, hidden=args.hidden).to(args.device)
    model = SimpleNamespace(head=head, train=head.train, eval=head.eval, parameters=head.parameters)
    name = "control" if heads == 1 else "rare_node"
    train = split["train"]
    loss = build_loss(name, hierarchy, train.targets, train.mask, uncertainty=None if heads == 1 else "bbma")
    loss = loss.to(args.device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)
    counts, _ = node_frequencies(hierarchy, train.targets, train.mask)
    times = {"steps": [], "validation": [], "checkpoint": []}
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = Checkpoints(Path(folder), minutes)
        for epoch in range(args.epochs + 1):
            started = time.perf_counter()
            train_epoch(model, loss, optimizer, train, config, epoch, [])
            stepped = synchronised(args.device)
            score_split(model, split["val"], config, hierarchy, counts)
            validated = synchronised(args.device)
            # as train() does, counting every epoch as a new best (the most copying)
            checkpoints.note_best(epoch, head, {}, 0.0, copy=not checkpoints.due())
            if checkpoints.due():
                state = {"model": head.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}
                checkpoints.write(state, {})
            saved = synchronised(args.device)
            if epoch:  # the first epoch warms up the allocator and the kernels
                times["steps"].append(stepped - started)
                times["validation"].append(validated - stepped)
                times["checkpoint"].append(saved - validated)
    parts = {key: statistics.median(values) for key, values in times.items()}
    parts["epoch"] = sum(parts.values())
    parts["parameters"] = sum(p.numel() for p in head.parameters())
    return parts


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train", type=int, default=1734)
    parser.add_argument("--val", type=int, default=340)
    parser.add_argument("--features", type=int, default=1280)
    parser.add_argument("--hidden", type=int, default=None, help="head width (default: the features, F)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the tensors and heads live there)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    serve_large_blocks_from_heap()  # as train() does for heads on cached features
    hierarchy, split = problem(args.train, args.val, args.features)
    results = {}
    for minutes in (0.0, RunConfig().train.checkpoint_minutes):
        for heads in (1, 20):
            parts = results[heads, minutes] = epoch_parts(heads, minutes, args, hierarchy, split)
            print(
                f"{heads:2d} head(s), {parts['parameters'] / 1e6:.1f}M parameters, checkpoints every "
                f"{minutes:g} min: epoch {parts['epoch']:.2f} s (steps {parts['steps']:.2f}, validation "
                f"{parts['validation']:.2f}, checkpoint {parts['checkpoint']:.2f})"
            )
    one, twenty = results[1, minutes], results[20, minutes]
    every_one, every_twenty = results[1, 0.0], results[20, 0.0]
    print(
        json.dumps(
            {
                "epoch_ratio_20_to_1": round(twenty["epoch"] / one["epoch"], 2),
                "steps_ratio_20_to_1": round(twenty["steps"] / one["steps"], 2),
                "epoch_ratio_writing_every_epoch": round(every_twenty["epoch"] / every_one["epoch"], 2),
                "epoch_seconds_1": round(one["epoch"], 3),
                "epoch_seconds_20": round(twenty["epoch"], 3),
                "checkpoint_minutes": minutes,
                "hidden": args.hidden or args.features,
                "batch_size": args.batch_size,
                "threads": args.threads,
                "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            }
        )
    )


if __name__ == "__main__":
    main()
