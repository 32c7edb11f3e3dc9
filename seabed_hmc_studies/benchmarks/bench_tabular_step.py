"""Benchmark: one tabular training step (batch 4, the HMC protocol) with and without allocator tuning.

Each configuration runs in a fresh process (the allocator setting is process-wide).  Prints ms per
step, minor page faults per step and peak memory, median over repeats, for the FunCat cellcycle
hierarchy (or a synthetic 500-node tree without ../shared/data), one head (control) and five
(rare_node).  ``--arff`` takes another hierarchy, e.g. a GO DAG with ``--heads 20``.  Modes: ``plain``
(glibc defaults), ``tuned`` (what the tabular runs use), ``heap`` (also no mmap for large blocks).

    python scripts/bench_tabular_step.py [--steps 200] [--arff FILE] [--heads 1 5] [--modes plain tuned]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from seabed_hmc.engine.allocator import keep_freed_memory, serve_large_blocks_from_heap
from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.losses import build_loss
from seabed_hmc.models import EnsembleHead
from seabed_hmc_studies import SHARED_DATA

CELLCYCLE = SHARED_DATA / "hmc_benchmarks/HMC_data/datasets_FUN/cellcycle_FUN/cellcycle_FUN.train.arff"


def hierarchy(arff: Path = CELLCYCLE) -> Hierarchy:
    if arff.exists():
        return Hierarchy.from_arff(arff)
    return Hierarchy([f"n{i}" for i in range(500)], [[]] + [[str(f"n{(i - 1) // 4}")] for i in range(1, 500)])


def measure(heads: int, mode: str, steps: int, arff: Path, features: int = 77, hidden: int = 500) -> dict:
    torch.set_num_threads(1)
    if mode in ("tuned", "heap"):
        keep_freed_memory()
    if mode == "heap":  # also no fresh mappings for blocks above glibc's 32 MB mmap ceiling
        serve_large_blocks_from_heap()
    h = hierarchy(arff)
    torch.manual_seed(0)
    head = EnsembleHead(features, len(h), heads=heads, hidden=hidden)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-4, weight_decay=1e-5, fused=True)
    targets, _ = h.encode([[h.nodes[i % len(h)]] for i in (5, 50, 100, 200)])
    loss_fn = build_loss("rare_node" if heads > 1 else "control", h, targets)
    inputs = torch.randn(4, features)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(head(inputs), targets).backward()
        optimizer.step()

    for _ in range(20):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "heads": heads,
        "mode": mode,
        "ms_per_step": seconds * 1000,
        "faults_per_step": faults,
        "peak_gb": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arff", type=Path, default=CELLCYCLE, help="an HMC ARFF whose hierarchy to use")
    parser.add_argument("--heads", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--modes", nargs="+", default=["plain", "tuned"], choices=["plain", "tuned", "heap"])
    parser.add_argument("--features", type=int, default=77, help="input width (cellcycle_FUN: 77)")
    parser.add_argument(
        "--hidden", type=int, default=500, help="hidden width (the config's per-dataset value)"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(
                measure(int(args.child[0]), args.child[1], args.steps, args.arff, args.features, args.hidden)
            )
        )
        return
    nodes = len(hierarchy(args.arff))
    print(
        f"# {' '.join(sys.argv)}  (1 thread per process, batch 4, "
        f"{args.features} features, hidden {args.hidden}, N={nodes})"
    )
    summary = {}
    for heads in args.heads:
        times = {}
        for mode in args.modes:
            runs = []
            for _ in range(args.repeats):
                child = [
                    sys.executable,
                    "-m",
                    "seabed_hmc_studies.benchmarks.bench_tabular_step",
                    "--steps",
                    str(args.steps),
                    "--arff",
                    str(args.arff),
                ]
                child += ["--features", str(args.features), "--hidden", str(args.hidden)]
                child += ["--child", str(heads), mode]
                runs.append(
                    json.loads(subprocess.run(child, capture_output=True, text=True, check=True).stdout)
                )
            runs.sort(key=lambda r: r["ms_per_step"])
            best = runs[len(runs) // 2]
            times[mode] = best["ms_per_step"]
            print(
                f"heads={heads} {mode:5s}  {best['ms_per_step']:6.2f} ms/step  "
                f"{best['faults_per_step']:7.1f} faults/step  peak RSS {best['peak_gb']:.2f} GB"
            )
        if "plain" in times and "tuned" in times:
            summary[f"speedup_heads{heads}"] = round(times["plain"] / times["tuned"], 3)
        if "tuned" in times and "heap" in times:
            summary[f"heap_speedup_heads{heads}"] = round(times["tuned"] / times["heap"], 3)
        summary[f"ms_per_step_heads{heads}"] = round(min(times.values()), 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
