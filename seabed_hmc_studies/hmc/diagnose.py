"""Diagnose a method on one HMC set: short runs of several presets, then the AU(PRC), the mean predicted
probability over evaluated test entries against their prevalence, and the spread across samples.

    python scripts/hmc_diagnose.py --dataset eisen_FUN --epochs 10 --presets control rare_node focal
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from seabed_hmc.losses import build_loss
from seabed_hmc.metrics import micro_average_precision
from seabed_hmc_studies import SHARED_DATA
from seabed_hmc_studies.hmc.datasets import load_hmc_dataset, prepare_hmc_splits
from seabed_hmc_studies.hmc.tabular import TabularSettings, predict_tabular, train_tabular

DATA = SHARED_DATA / "hmc_benchmarks" / "HMC_data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--dataset", default="eisen_FUN")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--presets", nargs="+", default=["control", "rare_node", "focal"])
    parser.add_argument("--weight-target", default="positive", choices=["positive", "negative"])
    parser.add_argument("--heads", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_hmc_dataset(args.data, args.dataset)
    x_train, y_train, m_train, x_test, y_test, m_test = prepare_hmc_splits(dataset)
    hierarchy = dataset.hierarchy
    evaluated = np.asarray(hierarchy.evaluated, bool)
    known = m_test.numpy()[:, evaluated] > 0
    prevalence = y_test.numpy()[:, evaluated][known].mean()
    print(f"# {args.dataset}, {args.epochs} epochs, lr 1e-4, batch 4; test prevalence {prevalence:.4f}")
    for preset in args.presets:
        options = {"uncertainty": "bbma", "weight_target": args.weight_target, "omega": 0.25}
        options |= {"frequency": "exact", "focal_min": 0.25, "k": 2.0}
        loss = build_loss(preset, hierarchy, y_train, m_train, **options)
        heads = 1 if preset == "control" else args.heads
        settings = TabularSettings(hidden=args.hidden, epochs=args.epochs, learning_rate=1e-4, heads=heads)
        start = time.perf_counter()
        model = train_tabular(x_train, y_train, m_train, loss, settings, seed=0)
        probabilities = predict_tabular(model, x_test, hierarchy)[0].numpy()
        scores = probabilities[:, evaluated]
        au_prc = micro_average_precision(probabilities, y_test, m_test, hierarchy)
        print(
            f"{preset:10s} heads {heads}: AU(PRC) {au_prc:.4f}"
            f"  mean p {scores[known].mean():.4f}  std over samples {scores.std(axis=0).mean():.4f}"
            f"  ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
