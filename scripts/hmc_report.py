"""Tables, significance tests and the recall-by-depth plot from the HMC benchmark runs.

    python scripts/hmc_report.py --runs docs/results/hmc_runs.csv --out docs/results/hmc.md

Writes the generated part of ``--out`` between the markers ``<!-- tables:start -->`` and
``<!-- tables:end -->`` (hand-written text outside them is kept) and the PNG plot beside it.  Every
number comes from the runs CSV; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from seabed_hmc.metrics import holm_bonferroni, paired_wilcoxon  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- tables:start -->", "<!-- tables:end -->"
METRICS = {
    "au_prc": "AU(PRC)",
    "recall_all": "node recall",
    "f1_all": "node F1 (all)",
    "f1_supported": "node F1 (supported)",
    "rare_node_recall": "rare-node recall",
}


def tolerance(dataset: str) -> float:
    return 0.015 if dataset.endswith("_GO") else 0.01


def markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def reproduction(runs: pd.DataFrame, published: dict[str, float]) -> str:
    control = runs[(runs.method == "control") & (runs.heads == 1)]
    rows = []
    for dataset, group in control.groupby("dataset", sort=False):
        mean, std = group.au_prc.mean(), group.au_prc.std(ddof=1) if len(group) > 1 else float("nan")
        target = published.get(dataset)
        diff = mean - target if target is not None else float("nan")
        ok = "yes" if target is not None and abs(diff) <= tolerance(dataset) else "NO"
        rows.append(
            {
                "dataset": dataset,
                "published": f"{target:.3f}" if target is not None else "-",
                "ours (mean of seeds)": f"{mean:.4f}",
                "std": f"{std:.4f}",
                "seeds": len(group),
                "difference": f"{diff:+.4f}",
                "tolerance": f"±{tolerance(dataset)}",
                "within": ok
                if len(group) >= 3
                else f"{ok} ({len(group)} seed{'s' if len(group) > 1 else ''})",
                "s/run": f"{group.seconds.mean():.0f}",
            }
        )
    return markdown(pd.DataFrame(rows))


def deepest_recall(row: pd.Series, levels: int = 2) -> float:
    """Mean recall over the deepest ``levels`` depths of the hierarchy (all evaluated nodes there)."""
    by_depth = {int(k): v for k, v in json.loads(row.recall_by_depth).items()}
    deepest = sorted(by_depth)[-levels:]
    return float(np.mean([by_depth[d] for d in deepest]))


def method_table(runs: pd.DataFrame) -> str:
    runs = runs.assign(deep_recall=runs.apply(deepest_recall, axis=1))
    columns = {**METRICS, "deep_recall": "recall, 2 deepest levels", "seconds": "s/run"}
    rows = []
    for (dataset, method, heads), group in runs.groupby(["dataset", "method", "heads"], sort=False):
        row = {"dataset": dataset, "method": method, "heads": heads, "seeds": len(group)}
        for key, label in columns.items():
            row[label] = f"{group[key].mean():.0f}" if key == "seconds" else f"{group[key].mean():.4f}"
        rows.append(row)
    return markdown(pd.DataFrame(rows))


def significance(runs: pd.DataFrame) -> str:
    """Each method against control, paired on (dataset, seed), two-sided, Holm-corrected per metric."""
    control = runs[runs.method == "control"].set_index(["dataset", "seed"])
    rows, p_values = [], {key: [] for key in METRICS}
    methods = [m for m in runs.method.unique() if m != "control"]
    for method in methods:
        other = runs[runs.method == method].set_index(["dataset", "seed"])
        pairs = other.index.intersection(control.index)
        row = {"method": method, "pairs": len(pairs)}
        for key, label in METRICS.items():
            test = paired_wilcoxon(other.loc[pairs, key].to_numpy(), control.loc[pairs, key].to_numpy())
            p_values[key].append(test.p_value)
            ratio = other.loc[pairs, key].mean() / max(control.loc[pairs, key].mean(), 1e-12)
            row[label] = f"{test.mean_difference:+.4f} (x{ratio:.2f}), p={test.p_value:.3g}"
        rows.append(row)
    for key, label in METRICS.items():
        adjusted = holm_bonferroni(np.array(p_values[key], dtype=float)) if p_values[key] else []
        for row, p in zip(rows, adjusted, strict=True):
            row[label] += f", Holm {p:.3g}"
    return markdown(pd.DataFrame(rows)) if rows else "(no method other than control has runs yet)"


def depth_plot(runs: pd.DataFrame, path: Path) -> str:
    funcat = runs[runs.dataset.str.endswith("_FUN")]
    methods = [
        m for m in ("control", "rare_node_bbma", "rare_node_gmu", "imbalance") if m in set(funcat.method)
    ]
    if not methods:
        return "(no FunCat runs yet)"
    figure, axis = plt.subplots(figsize=(6, 4))
    for method in methods:
        rows = funcat[funcat.method == method]
        table = pd.DataFrame([{int(k): v for k, v in json.loads(r).items()} for r in rows.recall_by_depth])
        mean = table.mean(axis=0).sort_index()
        axis.plot(mean.index, mean.to_numpy(), marker="o", label=f"{method} ({rows.dataset.nunique()} sets)")
    axis.set_xlabel("depth in the FunCat hierarchy (1 = top level)")
    axis.set_ylabel("macro recall over nodes at that depth")
    axis.set_title("Recall by depth, mean over FunCat sets and seeds")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return f"![recall by depth]({path.name})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "docs" / "results" / "hmc_runs.csv")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "hmc_benchmarks.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "hmc.md")
    args = parser.parse_args()
    runs = pd.read_csv(args.runs)
    published = yaml.safe_load(args.config.read_text())["published_au_prc"]
    default_heads = runs[runs.method.str.startswith(("rare_node", "focal"))]
    main_runs = runs[(runs.heads == 1) | runs.index.isin(default_heads[default_heads.heads == 5].index)]
    sections = [
        START,
        f"_Generated by `python scripts/hmc_report.py` from `{args.runs.name}` ({len(runs)} runs)._",
        "### Reproduction: control (C-HMCNN) vs the published AU(PRC)",
        reproduction(runs, published),
        "### All methods (mean over seeds; rare_node and focal with 5 heads)",
        method_table(main_runs),
        "### Each method against control (paired over datasets x seeds)",
        "Mean difference (method - control), ratio of means, two-sided Wilcoxon signed-rank p, and the "
        "Holm-adjusted p over the methods compared on that metric.",
        significance(main_runs),
        "### Recall by depth (FunCat)",
        depth_plot(main_runs, args.out.with_name("hmc_recall_by_depth.png")),
        END,
    ]
    generated = "\n\n".join(sections)
    text = args.out.read_text() if args.out.exists() else f"# HMC benchmarks\n\n{START}\n{END}\n"
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    args.out.write_text(before + generated + after)
    print(f"wrote {args.out} and {args.out.with_name('hmc_recall_by_depth.png')}")


if __name__ == "__main__":
    main()
