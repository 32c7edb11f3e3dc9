"""``report.md`` for a limited-data grid's ``results.csv`` (one row per cell), with its plots.

Everything here is computed from the results table, so a report can be regenerated at any time
(``seabed-hmc ablate --report-only``), also from a partially finished grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from seabed_hmc.config import read_yaml
from seabed_hmc.limited_data.plots import depth_plot, gain_plot, metric_plot
from seabed_hmc.limited_data.statistics import (
    DECIDED,
    METRICS,
    PLOTTED,
    fixed_and_fitted_gains,
    formatted_trend,
    gain_trend,
    level_name,
    level_text,
    paired_gains,
    rare_recall_ratio,
    statistics_table,
)
from seabed_hmc.reporting import (
    compare_to_control,
    markdown_table,
    mean_table,
    write_text_atomic,
)
from seabed_hmc.significance import paired_wilcoxon


def summary_sentences(runs: pd.DataFrame, control: str, mode: str) -> list[str]:
    """Plain statements read off the paired gains: does the gain grow as data shrinks, and with weaker
    encoders (encoders listed in the order of the config)?"""
    lines = []
    gains = paired_gains(runs, control, "rare_node_recall")
    f1 = paired_gains(runs, control, "f1_all")
    if gains.empty:
        return ["No configuration has paired cells with control yet."]
    smallest, largest = runs["level"].min(), runs["level"].max()
    for (encoder, name), group in gains.groupby(["encoder", "configuration"], sort=False):
        by_level = group.set_index("level")["gain"]
        f1_level = f1[(f1["encoder"] == encoder) & (f1["configuration"] == name)].set_index("level")["gain"]
        if smallest not in by_level or largest not in by_level:
            continue
        small, large = by_level[smallest], by_level[largest]
        if smallest == largest:
            lines.append(
                f"- **{encoder} / {name}**: rare-node recall {small:+.3f} and node F1 "
                f"{f1_level.get(smallest, np.nan):+.3f} vs control at {level_text(smallest, mode)} "
                "(the only level finished so far)."
            )
            continue
        trend = "larger" if small > large else ("the same" if small == large else "smaller")
        lines.append(
            f"- **{encoder} / {name}**: rare-node recall {small:+.3f} vs control at "
            f"{level_text(smallest, mode)} and {large:+.3f} at {level_text(largest, mode)} "
            f"(the gain is {trend} with less data); node F1 {f1_level.get(smallest, np.nan):+.3f} and "
            f"{f1_level.get(largest, np.nan):+.3f}."
        )
    mean_gain = gains.groupby(["configuration", "encoder"], sort=False)["gain"].mean()
    for name in dict.fromkeys(gains["configuration"]):
        per_encoder = mean_gain[name]
        ordered = ", ".join(f"{encoder} {value:+.3f}" for encoder, value in per_encoder.items())
        lines.append(f"- {name}: mean rare-node recall gain over all levels, per encoder: {ordered}.")
    return lines


def decided_section(runs: pd.DataFrame, control: str, mode: str) -> list[str]:
    """The report's section on the comparison under each cell's fitted decision rule."""
    title = f"## Against {control} under the decision rule fit on each cell's validation split"
    decided = [key for key in DECIDED if key in runs]
    if not decided or runs[decided].isna().any().any():
        return [title, "(some cells are from before decision rules: no fitted-rule comparison)"]
    pooled = []
    for encoder, group in runs.groupby("encoder", sort=False):
        table = compare_to_control(
            group, {k: DECIDED[k] for k in decided}, ["level", "seed"], "configuration", control
        )
        table.insert(0, "encoder", encoder)
        pooled.append(table)
    trend = gain_trend(runs, control, ("decided_rare_node_recall", "decided_f1_all"))
    return [
        title,
        "The same pairs, the decision-dependent metrics recomputed under each run's fitted rule "
        "(threshold-free AU(PRC) does not change). Pooled over levels and seeds, per encoder:",
        markdown_table(pd.concat(pooled, ignore_index=True)),
        f"Mean paired gain over {control} per level, under the fixed 0.5 rule and under the fitted rule:",
        markdown_table(fixed_and_fitted_gains(runs, control)),
        "Does the gain grow as the data shrink, under the fitted rule? (as in the section above, the rows "
        f"Holm-adjusted among themselves; rho < 0: a larger gain with a smaller {level_name(mode)})",
        markdown_table(formatted_trend(trend)),
    ]


def write_report(out: str | Path, control: str = "control", config_text: str | None = None) -> Path:
    """Write ``report.md`` and the PNG plots into ``out`` from ``out/results.csv``."""
    out = Path(out)
    runs = pd.read_csv(out / "results.csv")
    mode = str(runs["mode"].iloc[0])
    config_text = config_text or (
        (out / "ablation.yaml").read_text() if (out / "ablation.yaml").exists() else ""
    )
    for metric in PLOTTED:
        metric_plot(runs, metric, out / f"{metric}_vs_{'fraction' if mode == 'fraction' else 'k'}.png", mode)
    depth_plot(runs, out / "recall_by_depth.png", mode)
    gain_plot(
        {m: paired_gains(runs, control, m) for m in ("rare_node_recall", "f1_all")},
        out / "gain_vs_control.png",
        mode,
    )
    stats = statistics_table(runs, control)
    seeds = runs["seed"].nunique()
    tests = len(stats) * len(METRICS)
    pooled = []
    for encoder, group in runs.groupby("encoder", sort=False):
        table = compare_to_control(group, METRICS, ["level", "seed"], "configuration", control)
        table.insert(0, "encoder", encoder)
        pooled.append(table)
    minimum_p = paired_wilcoxon(np.arange(1, seeds + 1), np.zeros(seeds)).p_value if seeds > 1 else np.nan
    failed = out / "failed.csv"
    expected = _expected_cells(config_text)
    sections = [
        "# Limited-data ablation report",
        f"{len(runs)}{f' of {expected}' if expected else ''} finished cells "
        f"({runs['encoder'].nunique()} encoders x "
        f"{runs['configuration'].nunique()} configurations x {runs['level'].nunique()} levels x "
        f"{seeds} seeds); compute time of the cells {runs['seconds'].sum() / 60:.1f} min "
        "(the sum of the per-cell times, feature extraction included)."
        + (f" Failed cells are listed in `{failed.name}`." if failed.exists() else ""),
        "Metrics are on the test split, for the epoch with the best validation score; validation uses "
        "the full validation split at every level. Rare nodes are the lowest third of the FULL training "
        "split's node frequencies, so the same nodes are counted at every level.",
        "## Summary",
        *summary_sentences(runs, control, mode),
        "## Mean ± std over seeds",
        markdown_table(mean_table(runs, ["encoder", "level", "configuration"], METRICS)),
        f"## Against {control}, paired over seeds",
        "Each cell: mean difference (ratio of means), two-sided Wilcoxon signed-rank p-value, and the "
        f"Holm-adjusted p-value over the configurations of that encoder and level. With {seeds} seeds "
        f"the smallest possible two-sided p-value is {minimum_p:.3g}; {tests} tests are reported here, "
        "so read single small p-values with that multiplicity in mind.",
        markdown_table(stats) if not stats.empty else "(no pairs yet)",
        f"## Against {control}, pooled over levels and seeds, per encoder",
        markdown_table(pd.concat(pooled, ignore_index=True)) if pooled else "(no pairs yet)",
        f"## Rare-node recall ratio to {control}",
        markdown_table(rare_recall_ratio(runs, control)),
        "## Does the gain grow as the data shrink?",
        "Per encoder and configuration: Spearman's rank correlation between the "
        f"{level_name(mode)} and the gain over {control} (paired by seed, every level and seed); "
        "rho < 0 means a larger gain with less data (for gains below zero: less harm). "
        "Holm-adjusted over the rows of this table.",
        markdown_table(formatted_trend(gain_trend(runs, control, ("rare_node_recall", "f1_all")))),
        *decided_section(runs, control, mode),
        "## Plots",
        *[f"![{m}]({m}_vs_{'fraction' if mode == 'fraction' else 'k'}.png)" for m in PLOTTED],
        "![recall by depth](recall_by_depth.png)",
        "![gain over control](gain_vs_control.png)",
        "## Subsets",
        _subset_text(out),
        "## Grid configuration",
        "```yaml\n" + config_text.strip() + "\n```",
    ]
    path = out / "report.md"
    write_text_atomic(path, "\n\n".join(sections) + "\n")
    return path


def _expected_cells(config_text: str) -> int | None:
    """Cells in the whole grid (from the grid config written beside the results), if known."""
    try:
        grid = read_yaml(config_text) or {}
        levels = grid["subsets"].get("fractions") or grid["subsets"].get("per_leaf")
        return len(levels) * len(grid["configurations"]) * len(grid["encoders"]) * len(grid["seeds"])
    except (yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None


def _subset_text(out: Path) -> str:
    lines = []
    for path in sorted((out / "subsets").glob("seed*.json")):
        record = json.loads(path.read_text())
        sizes = ", ".join(
            f"{level_text(level['level'], record['mode'])}: {level['size']} rows"
            + (
                f" ({len(level['nodes_below_minimum'])} nodes below the minimum)"
                if level["nodes_below_minimum"]
                else ""
            )
            for level in record["levels"]
        )
        lines.append(f"- seed {record['seed']} (`subsets/{path.name}`): {sizes}")
    return "\n".join(lines) or "(no subset files)"
