"""Re-score an ablation grid's cells under a decision rule, from their stored ``scores.npz`` alone.

Every cell of ``seabed-hmc ablate`` keeps its validation and test probabilities
(``OUT/cells/ENCODER/CONFIGURATION/LEVEL/seedS/scores.npz``).  This fits the decision rule given by
``--set decision.KEY=VALUE`` (the run config's ``decision`` section; default: the library's default
rule) on each cell's validation split, scores its test split with the library's decision metrics, and
writes ``OUT/rescored.csv`` (the grid's key columns and ``decided_*`` metrics).  With no ``--set``, it
also prints how far the re-scored metrics are from the ``decided_*`` columns in ``OUT/results.csv``
(they differ only where a quantised probability falls on the other side of a threshold):

    python scripts/grid_rescore.py docs/results/limited_data_decisions
    python scripts/grid_rescore.py docs/results/limited_data_decisions --set decision.policy=precision
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from seabed_hmc.atomic import write_text_atomic
from seabed_hmc.config import ConfigError, load_config
from seabed_hmc.decisions import fit_configured
from seabed_hmc.engine.evaluation import SCORES_FILE, load_scores
from seabed_hmc.limited_data.grid import cell_folder
from seabed_hmc.metrics import decision_metrics

KEYS = ["encoder", "configuration", "level", "seed"]
COMPARED = ("f1_all", "recall_all", "rare_node_recall", "rare_node_precision", "hierarchical_f1")


def rescore(grid: Path, overrides: list[str]) -> pd.DataFrame:
    settings = load_config(None, [f"decision.{o.removeprefix('decision.')}" for o in overrides]).decision
    results = pd.read_csv(grid / "results.csv")
    rows = []
    for _, row in results.iterrows():
        path = cell_folder(grid, *(row[k] for k in KEYS)) / SCORES_FILE
        if not path.exists():
            print(f"{path}: no stored scores (a cell from before they were kept); skipped")
            continue
        scores = load_scores(path)
        hierarchy = scores["hierarchy"]
        (val, test), counts = (scores["val"], scores["test"]), scores["train_counts"]
        decision = fit_configured(settings, *val, hierarchy, f"val: {len(val[0])}")
        metrics = decision_metrics(decision.predict(test[0], hierarchy), test[1], test[2], hierarchy, counts)
        rows.append({**{k: row[k] for k in KEYS}, **{f"decided_{k}": v for k, v in metrics.items()}})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", type=Path, help="the grid's --out folder (holds results.csv and cells/)")
    parser.add_argument("--set", action="append", default=[], metavar="decision.KEY=VALUE")
    args = parser.parse_args()
    if not (args.grid / "results.csv").exists():
        raise SystemExit(
            f"{args.grid / 'results.csv'}: not found; give the folder `seabed-hmc ablate --out` wrote"
        )
    try:
        table = rescore(args.grid, args.set)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    write_text_atomic(args.grid / "rescored.csv", table.to_csv(index=False))
    print(f"{len(table)} cells re-scored into {args.grid / 'rescored.csv'}")
    if not args.set and len(table):
        stored = pd.read_csv(args.grid / "results.csv").merge(table, on=KEYS, suffixes=("", "_rescored"))
        for metric in COMPARED:
            column = f"decided_{metric}"
            if column in stored:
                gap = (stored[f"{column}_rescored"] - stored[column]).abs()
                equal = int((gap < 1e-9).sum())
                print(f"{column}: largest difference from results.csv {gap.max():.4g} ({equal} equal)")


if __name__ == "__main__":
    main()
