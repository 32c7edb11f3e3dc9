"""Tables, significance tests and the recall-by-depth plot from the HMC benchmark runs.

    python scripts/hmc_report.py --runs docs/results/hmc_runs.csv --out docs/results/hmc.md

Writes the generated part of ``--out`` between the markers ``<!-- tables:start -->`` and
``<!-- tables:end -->`` (hand-written text outside them is kept) and the PNG plot beside it.  Every
number comes from the runs CSV; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from seabed_hmc.config import read_yaml
from seabed_hmc.reporting import (
    compare_pairs,
    compare_to_control,
    depth_plot,
    markdown_table,
    mean_table,
    write_between_markers,
)
from seabed_hmc_studies import ROOT

METRICS = {
    "au_prc": "AU(PRC)",
    "recall_all": "node recall",
    "f1_all": "node F1 (all)",
    "f1_supported": "node F1 (supported)",
    "rare_node_recall": "rare-node recall",
}


def tolerance(dataset: str) -> float:
    return 0.015 if dataset.endswith("_GO") else 0.01


def reproduction(runs: pd.DataFrame, published: dict[str, float]) -> str:
    control = runs[(runs.method == "control") & (runs.heads == 1)]
    rows = []
    for dataset, group in control.groupby("dataset", sort=False):
        mean, std = group.au_prc.mean(), group.au_prc.std(ddof=1)
        target = published.get(dataset)
        diff = mean - target if target is not None else float("nan")
        ok = "yes" if target is not None and abs(diff) <= tolerance(dataset) else "NO"
        rows.append(
            {
                "dataset": dataset,
                "published": f"{target:.3f}" if target is not None else "-",
                "ours (mean of seeds)": f"{mean:.4f}",
                "std": f"{std:.4f}" if len(group) > 1 else "-",
                "seeds": len(group),
                "difference": f"{diff:+.4f}",
                "tolerance": f"±{tolerance(dataset)}",
                "within": ok
                if len(group) >= 3
                else f"{ok} ({len(group)} seed{'s' if len(group) > 1 else ''})",
                "s/run": f"{group.seconds.mean():.0f}",
            }
        )
    return markdown_table(pd.DataFrame(rows))


def deepest_recall(row: pd.Series, levels: int = 2) -> float:
    """Mean recall over the deepest ``levels`` depths of the hierarchy (all evaluated nodes there)."""
    by_depth = {int(k): v for k, v in json.loads(row.recall_by_depth).items()}
    deepest = sorted(by_depth)[-levels:]
    return float(np.mean([by_depth[d] for d in deepest]))


METHOD_ORDER = [
    "control",
    "hros",
    "imbalance",
    "imbalance_neg",
    "focal_bbma",
    "rare_node_bbma",
    "rare_node_bbma_neg",
    "rare_node_gmu",
    "rare_node_gmu_neg",
    "flat",
]


def ordered(runs: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """Runs sorted by dataset (as listed in the config, unknown ones last), method, heads and seed."""
    dataset_rank = {name: i for i, name in enumerate(datasets)}
    method_rank = {name: i for i, name in enumerate(METHOD_ORDER)}
    keys = {
        "_dataset": runs.dataset.map(lambda d: dataset_rank.get(d, len(dataset_rank))),
        "_method": runs.method.map(lambda m: method_rank.get(m, len(method_rank))),
    }
    return runs.assign(**keys).sort_values([*keys, "heads", "seed"], kind="stable").drop(columns=list(keys))


def seconds_per_run(runs: pd.DataFrame, by: Sequence[str] = ("dataset", "method", "heads")) -> np.ndarray:
    """Mean wall seconds per group of ``by``, in the order of ``mean_table`` on the same keys."""
    return runs.groupby(list(by), sort=False).seconds.mean().round().astype(int).to_numpy()


def method_table(runs: pd.DataFrame) -> str:
    runs = runs.assign(deep_recall=runs.apply(deepest_recall, axis=1))
    table = mean_table(
        runs, ["dataset", "method", "heads"], {**METRICS, "deep_recall": "recall, 2 deepest levels"}
    )
    table["s/run"] = seconds_per_run(runs)
    return markdown_table(table)


def significance(runs: pd.DataFrame) -> str:
    """Each method against control, paired on (dataset, seed), two-sided, Holm-corrected per metric."""
    if set(runs.method) <= {"control"}:
        return "(no method other than control has runs yet)"
    return markdown_table(compare_to_control(runs, METRICS, ["dataset", "seed"]))


def ensemble_sizes(runs: pd.DataFrame) -> str:
    """Ensemble methods run with a size other than the default 5: one row per (dataset, method,
    weight-decay setting, size), the default-size runs of the same dataset and method included."""
    multi = runs[(runs.heads > 1) & runs.overrides.isin(["", "decay_per_head=False"])]
    multi = multi.assign(decay=multi.overrides.map({"": "yes", "decay_per_head=False": "no"}))
    groups = [multi.dataset, multi.method, multi.decay]
    multi = multi[multi.heads.ne(5).groupby(groups).transform("any")]
    if multi.empty:
        return "(no ensemble method has runs with a size other than 5 yet)"
    ranks = {  # keep the incoming dataset and method order; per-head decay first, then by size
        "_dataset": multi.dataset.map(first_seen(multi.dataset)),
        "_method": multi.method.map(first_seen(multi.method)),
        "_decay": multi.decay.eq("no"),
    }
    multi = multi.assign(**ranks).sort_values([*ranks, "heads"], kind="stable").drop(columns=list(ranks))
    by = ["dataset", "method", "decay", "heads"]
    table = mean_table(multi, by, METRICS).rename(columns={"decay": "decay per head"})
    table["s/run"] = seconds_per_run(multi, by)
    return markdown_table(table)


def first_seen(column: pd.Series) -> dict:
    """Rank of each value by its first appearance (keeps an earlier ordering under a later sort)."""
    return {value: rank for rank, value in enumerate(dict.fromkeys(column))}


def weight_targets(runs: pd.DataFrame) -> str:
    """The negative weight target against the positive one, per method, paired on (dataset, seed)."""
    comparisons = [
        (f"{base}_neg", base)
        for base in ("imbalance", "rare_node_bbma", "rare_node_gmu")
        if {base, f"{base}_neg"} <= set(runs.method)
    ]
    if not comparisons:
        return "(no method has runs with both weight targets yet)"
    return markdown_table(compare_pairs(runs, METRICS, ["dataset", "seed"], comparisons))


def overridden(runs: pd.DataFrame) -> str:
    """Runs made with ``--set`` overrides, each beside the default-setting runs of the same dataset,
    method and ensemble size (seeds in both), one row per (dataset, method, heads, overrides)."""
    changed = runs[runs.overrides != ""]
    if changed.empty:
        return "(no runs with overridden settings yet)"
    keys = ["dataset", "method", "heads"]
    wanted = set(changed[keys].itertuples(index=False, name=None))
    same = runs[[key in wanted for key in runs[keys].itertuples(index=False, name=None)]]
    same = same.assign(overrides=same.overrides.replace("", "(config)"))
    by = [*keys, "overrides"]
    table = mean_table(same, by, METRICS)
    table["s/run"] = seconds_per_run(same, by)
    return markdown_table(table)


def focal_over_weights(runs: pd.DataFrame) -> str:
    """Each ``rare_node`` method against the node weights alone (``imbalance``) with the same weight
    target: what the focal factor and the ensemble add, paired on (dataset, seed)."""
    comparisons = [
        (method, "imbalance_neg" if method.endswith("_neg") else "imbalance")
        for method in sorted(set(runs.method))
        if method.startswith("rare_node")
        and ("imbalance_neg" if method.endswith("_neg") else "imbalance") in set(runs.method)
    ]
    if not comparisons:
        return "(no rare_node method has runs beside imbalance with the same weight target yet)"
    return markdown_table(compare_pairs(runs, METRICS, ["dataset", "seed"], comparisons))


def uncertainty_modes(runs: pd.DataFrame) -> str:
    """rare_node with the GMU uncertainty against rare_node with BBMA, same weight target, paired on
    (dataset, seed): which ensemble uncertainty makes the better focal factor."""
    comparisons = [
        (f"rare_node_gmu{suffix}", f"rare_node_bbma{suffix}")
        for suffix in ("_neg", "")
        if {f"rare_node_gmu{suffix}", f"rare_node_bbma{suffix}"} <= set(runs.method)
    ]
    if not comparisons:
        return "(no weight target has both rare_node uncertainty modes run yet)"
    return markdown_table(compare_pairs(runs, METRICS, ["dataset", "seed"], comparisons))


def rare_node_precision(runs: pd.DataFrame) -> str:
    """The threshold-free rare-node score (macro AP over the rarest third of the nodes), on the runs
    that have it (rows made before the metric existed have none until ``--rerun`` fills them)."""
    if "rare_node_ap" not in runs or runs.rare_node_ap.isna().all():
        return "(no run has the rare-node AP yet: `scripts/hmc_benchmark.py --rerun` fills older rows)"
    scored = runs[runs.rare_node_ap.notna()]
    metrics = {"au_prc": "AU(PRC)", "rare_node_recall": "rare-node recall", "rare_node_ap": "rare-node AP"}
    table = mean_table(scored, ["dataset", "method", "heads"], metrics)
    parts = [markdown_table(table)]
    paired = scored[scored.method.eq("control").groupby([scored.dataset, scored.seed]).transform("any")]
    if set(paired.method) - {"control"}:
        parts.append("Against control on the same (dataset, seed):")
        parts.append(markdown_table(compare_to_control(paired, metrics, ["dataset", "seed"])))
    return "\n\n".join(parts)


def legacy_decay(runs: pd.DataFrame) -> pd.DataFrame:
    """Single-head runs with the config's settings and 5-head runs with ``decay_per_head=False``."""
    single = (runs.heads == 1) & (runs.overrides == "")
    return runs[single | ((runs.heads == 5) & (runs.overrides == "decay_per_head=False"))]


def decay_comparison(runs: pd.DataFrame) -> str:
    """Each ensemble method with the per-head weight decay (the config's) against the same method with
    ``decay_per_head=False``, paired on (dataset, seed, heads)."""
    ensembles = runs[runs.heads > 1]
    per_head = ensembles[ensembles.overrides == ""]
    whole = ensembles[ensembles.overrides == "decay_per_head=False"]
    whole = whole.assign(method=whole.method + " (decay not per head)")
    both = sorted(set(per_head.method) & {m.removesuffix(" (decay not per head)") for m in whole.method})
    if not both:
        return "(no ensemble method has runs with both weight-decay settings yet)"
    comparisons = [(m, f"{m} (decay not per head)") for m in both]
    pairs = pd.concat([per_head, whole])
    return markdown_table(compare_pairs(pairs, METRICS, ["dataset", "seed", "heads"], comparisons))


def plot_depths(runs: pd.DataFrame, path: Path) -> str:
    funcat = runs[runs.dataset.str.endswith("_FUN")]
    methods = [
        m
        for m in (
            "control",
            "imbalance_neg",
            "rare_node_bbma_neg",
            "rare_node_gmu_neg",
            "rare_node_bbma",
            "hros",
        )
        if m in set(funcat.method)
    ]
    if not methods:
        return "(no FunCat runs yet)"
    groups = {
        f"{m} ({funcat[funcat.method == m].dataset.nunique()} sets)": funcat[funcat.method == m]
        for m in methods
    }
    depth_plot(
        groups, path, "Recall by depth, mean over FunCat sets and seeds", "depth in the FunCat hierarchy"
    )
    return f"![recall by depth]({path.name})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "docs" / "results" / "hmc_runs.csv")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "hmc_benchmarks.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "hmc.md")
    args = parser.parse_args()
    runs = pd.read_csv(args.runs, dtype={"overrides": str})
    runs["overrides"] = runs.overrides.fillna("") if "overrides" in runs else ""
    config = read_yaml(args.config.read_text())
    published = config["published_au_prc"]
    runs = ordered(runs, list(config.get("datasets", published)))
    everything, runs = runs, runs[runs.overrides == ""]  # the tables below use the config's settings
    default_heads = runs[runs.method.str.startswith(("rare_node", "focal"))]
    main_runs = runs[(runs.heads == 1) | runs.index.isin(default_heads[default_heads.heads == 5].index)]
    sections = [
        f"_Generated by `python scripts/hmc_report.py` from `{args.runs.name}` ({len(everything)} runs; "
        f"the tables use the config's settings unless they say otherwise)._",
        "### Reproduction: control (C-HMCNN) vs the published AU(PRC)",
        reproduction(runs, published),
        "### All methods (mean ± std over seeds; rare_node and focal with 5 heads)",
        method_table(main_runs),
        "### Each method against control (paired over datasets x seeds)",
        "Mean difference (method - control), ratio of means, two-sided Wilcoxon signed-rank p, and the "
        "Holm-adjusted p over the methods compared on that metric.",
        significance(main_runs),
        "### Which weight target: negative against positive (paired over datasets x seeds)",
        "Mean difference (negative target - positive target), ratio of means, two-sided Wilcoxon "
        "signed-rank p, and the Holm-adjusted p over the three methods.",
        "With the config's settings:",
        weight_targets(main_runs),
        "With `decay_per_head=False` for the 5-head ensembles (every head decayed like a whole control "
        "model; the setting of all ensemble runs made before `decay_per_head` existed):",
        weight_targets(legacy_decay(everything)),
        "### rare_node against the node weights alone (imbalance, same weight target; paired over datasets "
        "x seeds)",
        "Mean difference (rare_node - imbalance), ratio of means, two-sided Wilcoxon signed-rank p, Holm "
        "over the methods: what the focal factor and the 5-head ensemble add to the node weights.",
        focal_over_weights(main_runs),
        "### Uncertainty mode: rare_node with GMU against rare_node with BBMA (same weight target; paired "
        "over datasets x seeds)",
        "Mean difference (gmu - bbma), ratio of means, two-sided Wilcoxon signed-rank p, Holm over the "
        "weight targets.",
        uncertainty_modes(main_runs),
        "### Rare-node average precision (threshold-free; runs that have it)",
        "Macro average precision over the rarest third of the nodes (by training frequency) that have a "
        "test positive: unlike rare-node recall at 0.5 it ranks methods that find no rare node outright.",
        rare_node_precision(main_runs),
        "### Weight decay per head against the whole decay on every head (paired over datasets x seeds x "
        "ensemble sizes)",
        "Mean difference (`decay_per_head`, the config's setting, minus `decay_per_head=False`), ratio of "
        "means, two-sided Wilcoxon signed-rank p, Holm over the methods.",
        decay_comparison(everything),
        "### Ensemble sizes other than 5 (with the 5-head runs of the same dataset and method)",
        ensemble_sizes(everything),
        "### Recall by depth (FunCat)",
        plot_depths(main_runs, args.out.with_name("hmc_recall_by_depth.png")),
        "### Runs with overridden settings (`--set`), beside the config's",
        overridden(everything),
    ]
    write_between_markers(args.out, "\n\n".join(sections), "HMC benchmarks")
    print(f"wrote {args.out} and {args.out.with_name('hmc_recall_by_depth.png')}")


if __name__ == "__main__":
    main()
