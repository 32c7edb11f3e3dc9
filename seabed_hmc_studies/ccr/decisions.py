"""Decision rules re-scored from finished runs: fixed 0.5 against rules fit on validation.

For every run folder given (``seabed-hmc train --out RUN``, or a folder holding only its
``scores.npz``), reads ``RUN/scores.npz`` (written by ``train``; for older runs it is made from
``RUN/best.pt`` with the library's evaluation path), fits each
policy (``fixed``, ``f1`` with 5, 10 and 20 as the fewest positives to fit a node on and with Platt
calibration, ``precision`` 0.8, ``depth``) under each coherence rule (``closure``,
``gated``) on the validation split and scores the test split with
:func:`seabed_hmc.metrics.decision_metrics`.  A run folder's name is ``CONFIG_sSEED``.

Writes ``OUT.csv`` (one row per run, policy and rule) and ``OUT.md`` (means and standard deviations
over seeds; paired Wilcoxon tests over seeds and nodes for the comparisons the issue asks about), and
prints the markdown.

    python scripts/decision_study.py docs/results/decisions_ccr/*_s? --out docs/results/decisions_ccr
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd

from seabed_hmc.atomic import write_text_atomic
from seabed_hmc.config import DecisionConfig
from seabed_hmc.decisions import fit_configured
from seabed_hmc.engine.data_and_model import prepare_data
from seabed_hmc.engine.evaluation import SCORES_FILE, load_scores, save_scores
from seabed_hmc.engine.inference import load_for_inference, score_rows
from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.metrics import decision_metrics, node_scores, rare_nodes
from seabed_hmc.significance import paired_wilcoxon

POLICIES = {
    "fixed": DecisionConfig(policy="fixed"),
    "f1": DecisionConfig(policy="f1"),
    "f1, min 10": DecisionConfig(policy="f1", min_positives=10),
    "f1, min 20": DecisionConfig(policy="f1", min_positives=20),
    "f1, platt": DecisionConfig(policy="f1", calibration="platt"),
    "precision 0.8": DecisionConfig(policy="precision", precision=0.8),
    "depth": DecisionConfig(policy="depth"),
}
SHOWN = [
    "f1_all",
    "rare_node_precision",
    "rare_node_recall",
    "rare_node_f1",
    "deepest_recall",
    "hierarchical_f1",
    "taxonomic_distance",
]


def scores_of(run: Path) -> tuple[dict, Hierarchy]:
    """The run's stored scores and hierarchy; a run from before ``scores.npz`` stored the hierarchy
    gets its file made from ``best.pt`` with the library's evaluation path."""
    scores = load_scores(run / SCORES_FILE) if (run / SCORES_FILE).exists() else None
    if scores is None or "hierarchy" not in scores:
        model, hierarchy, record, config, cache = load_for_inference(run / "best.pt")
        data = prepare_data(config.data, config.train.seed)
        scored = {}
        for split in ("val", "test"):
            rows = data.splits[split]
            scored[split], _ = score_rows(model, config, record, cache, hierarchy, data.table, rows, split)
        save_scores(run / SCORES_FILE, scored, record.train_counts, hierarchy)
        scores = load_scores(run / SCORES_FILE)
    return scores, scores["hierarchy"]


def study(runs: list[Path]) -> tuple[pd.DataFrame, dict]:
    rows, per_node = [], {}
    for run in runs:
        match = re.fullmatch(r"(.+)_s(\d+)", run.name)
        if not match:
            raise SystemExit(f"{run}: name run folders CONFIG_sSEED (e.g. control_s0)")
        config, seed = match.group(1), int(match.group(2))
        scores, hierarchy = scores_of(run)
        val, test = scores["val"], scores["test"]
        counts = scores["train_counts"]
        deepest = hierarchy.evaluated & (hierarchy.depth == hierarchy.depth[hierarchy.evaluated].max())
        for policy, settings in POLICIES.items():
            for rule in ("closure", "gated"):
                settings.rule = rule
                decision = fit_configured(settings, *val, hierarchy, f"val: {len(val[0])}")
                predicted = decision.predict(test[0], hierarchy)
                metrics = decision_metrics(predicted, test[1], test[2], hierarchy, counts)
                nodes = node_scores(predicted, test[1], test[2], hierarchy)
                metrics["deepest_recall"] = float(nodes.recall[deepest & (nodes.support > 0)].mean())
                rows.append({"config": config, "seed": seed, "policy": policy, "rule": rule, **metrics})
                per_node[config, seed, policy, rule] = nodes
    return pd.DataFrame(rows), per_node


def paired(per_node: dict, a: tuple, b: tuple, metric: str, nodes: np.ndarray) -> str:
    """Wilcoxon over (seed, node) pairs of a node metric, configurations a and b (config, policy, rule)."""
    seeds = sorted(
        {key[1] for key in per_node if key[0] == a[0]} & {key[1] for key in per_node if key[0] == b[0]}
    )
    first, second = [], []
    for seed in seeds:
        x, y = per_node[a[0], seed, a[1], a[2]], per_node[b[0], seed, b[1], b[2]]
        keep = nodes & (x.support > 0)
        first += getattr(x, metric)[keep].tolist()
        second += getattr(y, metric)[keep].tolist()
    result = paired_wilcoxon(first, second)
    return f"{result.mean_difference:+.3f} (n = {result.n}, p = {result.p_value:.3g})"


def report(table: pd.DataFrame, per_node: dict, hierarchy_nodes: np.ndarray, rare: np.ndarray) -> str:
    lines = ["| config | policy | rule | " + " | ".join(SHOWN) + " |", "|---" * (len(SHOWN) + 3) + "|"]
    grouped = table.groupby(["config", "policy", "rule"], sort=False)
    for (config, policy, rule), group in grouped:
        cells = [
            f"{group[m].mean():.3f} ± {group[m].std(ddof=1) if len(group) > 1 else 0:.3f}" for m in SHOWN
        ]
        lines.append(f"| {config} | {policy} | {rule} | " + " | ".join(cells) + " |")
    lines += ["", "Paired Wilcoxon over (seed, node) pairs with test support (difference a - b):", ""]
    comparisons = [
        (("control", "f1", "closure"), ("control", "fixed", "closure"), "f1", hierarchy_nodes, "all nodes"),
        (("control", "f1", "closure"), ("rare_node", "fixed", "closure"), "f1", hierarchy_nodes, "all nodes"),
        (("rare_node", "f1", "closure"), ("control", "f1", "closure"), "f1", hierarchy_nodes, "all nodes"),
        (("rare_node", "f1", "closure"), ("control", "f1", "closure"), "recall", rare, "rare nodes"),
        (("rare_node", "f1", "closure"), ("imbalance", "f1", "closure"), "f1", hierarchy_nodes, "all nodes"),
        (("rare_node", "f1", "closure"), ("rare_node", "f1", "gated"), "f1", hierarchy_nodes, "all nodes"),
        (("control", "f1", "closure"), ("control", "f1", "gated"), "f1", hierarchy_nodes, "all nodes"),
        (
            ("rare_node_negative", "f1", "closure"),
            ("rare_node", "f1", "closure"),
            "f1",
            hierarchy_nodes,
            "all nodes",
        ),
        (
            ("rare_node_negative", "f1", "closure"),
            ("rare_node", "f1", "closure"),
            "recall",
            rare,
            "rare nodes",
        ),
        (
            ("rare_node_negative", "f1", "closure"),
            ("control", "f1", "closure"),
            "f1",
            hierarchy_nodes,
            "all nodes",
        ),
    ]
    configs = set(table.config)
    for a, b, metric, nodes, where in comparisons:
        if a[0] in configs and b[0] in configs:
            difference = paired(per_node, a, b, metric, nodes)
            lines.append(f"- {' '.join(a)} vs {' '.join(b)}, node {metric} ({where}): {difference}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="path stem for the .csv and .md")
    args = parser.parse_args()
    table, per_node = study(sorted(args.runs))
    _, hierarchy = scores_of(sorted(args.runs)[0])
    scores = load_scores(sorted(args.runs)[0] / SCORES_FILE)
    evaluated = np.asarray(hierarchy.evaluated)
    rare = np.zeros(len(hierarchy), dtype=bool)
    rare[rare_nodes(hierarchy, scores["train_counts"])] = True
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    text = report(table, per_node, evaluated, rare)
    write_text_atomic(args.out.with_suffix(".md"), text + "\n")
    print(text)


if __name__ == "__main__":
    main()
