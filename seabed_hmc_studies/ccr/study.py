"""The CCR benthic study (issue 4): every method against control on the full training split, for three
frozen encoders, read from the limited-data grid's full-data cells (configs/ablation_ccr.yaml).

    seabed-hmc ablate --config configs/ablation_ccr.yaml --out docs/results/limited_data \
        --only level=1 --only seed=0,1,2
    python scripts/ccr_study.py        # docs/results/ccr_benthic.md tables and ccr_recall_by_depth.png

Each cell trains with ``configs/ccr_benthic.yaml`` plus the grid's overrides: ImageNet MobileNetV2
frozen (``pretrained``), the same noise-mixed with a random initialisation at alpha 0.5 and frozen
(``noise_0.5``), a frozen random MobileNetV2 (``random``); ``control``, ``imbalance`` and ``rare_node``
(20 heads) with ``bbma`` and ``gmu``.  The metrics are the best-on-validation epoch's test metrics.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from seabed_hmc.reporting import (
    compare_to_control,
    depth_plot,
    markdown_table,
    mean_table,
    recall_by_depth,
    write_between_markers,
)
from seabed_hmc.significance import holm_bonferroni, paired_wilcoxon
from seabed_hmc_studies import ROOT

ISSUE_ENCODERS = ["pretrained", "noise_0.5", "random"]
METRICS = {
    "au_prc": "AU(PRC)",
    "f1_all": "node F1 (all)",
    "f1_supported": "node F1 (supported)",
    "recall_all": "node recall",
    "rare_node_recall": "rare-node recall",
    "hierarchical_f1": "hierarchical F1",
}


def node_scores(cells: Path, encoder: str, method: str, seeds) -> pd.DataFrame | None:
    """Per-node test scores of a cell, averaged over the seeds whose nodes.csv exists (node order)."""
    tables = []
    for seed in seeds:
        path = cells / encoder / method / "1" / f"seed{seed}" / "nodes.csv"
        if path.exists():
            tables.append(pd.read_csv(path).assign(seed=seed))
    if not tables:
        return None
    frame = pd.concat(tables)
    return frame.groupby("node", sort=False).agg(
        evaluated=("evaluated", "first"),
        train_positives=("train_positives", "first"),
        support=("support", "first"),
        f1=("f1", "mean"),
        recall=("recall", "mean"),
        seeds=("seed", "nunique"),
    )


def per_node_comparison(runs: pd.DataFrame, cells: Path) -> pd.DataFrame | None:
    """Each method against control over the NODES (per-node test F1 and, on the rare nodes, recall,
    averaged over the seeds both have): a paired Wilcoxon across nodes, with Holm over the table.

    Nodes are not independent samples (a parent's score depends on its children's), so these p-values
    say how consistently a method moves the per-node scores, not more.  Rare nodes as in the metrics:
    the third of the evaluated nodes with the fewest training positives (ties by node order)."""
    rows = []
    for (encoder, method), group in runs.groupby(["encoder", "method"], sort=False):
        if method == "control":
            continue
        seeds = sorted(
            set(group["seed"]) & set(runs[(runs.encoder == encoder) & (runs.method == "control")].seed)
        )
        mine, base = node_scores(cells, encoder, method, seeds), node_scores(cells, encoder, "control", seeds)
        if mine is None or base is None:
            continue
        both = base.merge(mine[["f1", "recall"]], left_index=True, right_index=True, suffixes=("", "_method"))
        evaluated = both[both["evaluated"].astype(bool)]
        supported = evaluated[evaluated["support"] > 0]
        order = np.argsort(evaluated["train_positives"].to_numpy(), kind="stable")
        rare = evaluated.iloc[order[: math.ceil(round(len(evaluated) / 3, 9))]]
        rare = rare[rare["support"] > 0]
        f1 = paired_wilcoxon(supported["f1_method"].to_numpy(float), supported["f1"].to_numpy(float))
        recall = paired_wilcoxon(rare["recall_method"].to_numpy(float), rare["recall"].to_numpy(float))
        rows.append(
            {
                "encoder": encoder,
                "method": method,
                "seeds": len(seeds),
                "nodes": len(supported),
                "node F1: mean change": f"{f1.mean_difference:+.4f}",
                "up / down": f"{int((supported.f1_method > supported.f1).sum())} / "
                f"{int((supported.f1_method < supported.f1).sum())}",
                "p (F1)": f1.p_value,
                "rare nodes": len(rare),
                "rare recall: mean change": f"{recall.mean_difference:+.4f}",
                "up / down ": f"{int((rare.recall_method > rare.recall).sum())} / "
                f"{int((rare.recall_method < rare.recall).sum())}",
                "p (rare recall)": recall.p_value,
            }
        )
    if not rows:
        return None
    table = pd.DataFrame(rows)
    for column in ("p (F1)", "p (rare recall)"):
        holm = holm_bonferroni(table[column].to_numpy(float))
        table[column] = [f"{p:.3g} (Holm {h:.3g})" for p, h in zip(table[column], holm, strict=True)]
    return table


def report(args: argparse.Namespace) -> None:
    grid = pd.read_csv(args.results)
    runs = grid[(grid["level"] == 1.0) & grid["configuration"].isin(args.methods)]
    runs = runs.rename(columns={"configuration": "method"})
    source = args.results.resolve()
    source = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    sections = [
        f"_Generated by `python scripts/ccr_study.py` from the full-data cells of `{source}` "
        f"({len(runs)} runs; seeds {sorted(runs['seed'].unique().tolist())})._"
    ]
    sections += ["### Test metrics (best validation epoch), mean ± std over seeds"]
    sections += [markdown_table(mean_table(runs, ["encoder", "method"], METRICS))]
    for encoder, group in runs.groupby("encoder", sort=False):
        sections += [f"### {encoder}: each method against control, paired over seeds"]
        sections += [markdown_table(compare_to_control(group, METRICS, ["seed"]))]
    issue = runs[runs["encoder"].isin(ISSUE_ENCODERS)]
    sections += [
        f"### The issue's three encoders pooled ({', '.join(ISSUE_ENCODERS)}): each method against "
        "control, paired over encoders x seeds"
    ]
    sections += [markdown_table(compare_to_control(issue, METRICS, ["encoder", "seed"]))]
    nodes = per_node_comparison(runs, args.results.parent / "cells")
    if nodes is not None:
        sections += [
            "### Per node: each method against control, paired over the nodes",
            "Per-node test F1 (nodes with test positives) and rare-node recall, each averaged over the "
            "seeds; Wilcoxon signed-rank across nodes, Holm over the table's rows. Nodes are not "
            "independent (a parent's score follows its children's): read p as the consistency of the "
            "change across nodes. From the cells' `nodes.csv` (kept in the grid's `cells/` folder, not "
            "in git).",
            markdown_table(nodes),
        ]
    plot = args.report_md.with_name("ccr_recall_by_depth.png")
    depth_plot(
        {f"{e} / {m}": g for (e, m), g in runs.groupby(["encoder", "method"], sort=False)},
        plot,
        "CCR benthic: recall by depth (test)",
        "depth in the habitat hierarchy",
    )
    rows = []
    for (encoder, method), group in runs.groupby(["encoder", "method"], sort=False):
        depths = recall_by_depth(group)
        rows.append(
            {"encoder": encoder, "method": method, "runs": len(group)}
            | {f"depth {d}": f"{depths[d].mean():.3f}" for d in depths.columns}
        )
    sections += ["### Recall by depth (test, mean over seeds; depth 0 = the top level)"]
    sections += [markdown_table(pd.DataFrame(rows)), f"![recall by depth]({plot.name})"]
    write_between_markers(args.report_md, "\n\n".join(sections), "CCR benthic study")
    print(f"wrote {args.report_md} and {plot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--results", type=Path, default=ROOT / "docs" / "results" / "limited_data" / "results.csv"
    )
    parser.add_argument(
        "--methods", nargs="+", default=["control", "imbalance", "rare_node_bbma", "rare_node_gmu"]
    )
    parser.add_argument("--report-md", type=Path, default=ROOT / "docs" / "results" / "ccr_benthic.md")
    report(parser.parse_args())


if __name__ == "__main__":
    main()
