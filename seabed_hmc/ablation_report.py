"""Statistics, plots and ``report.md`` for an ablation grid's ``results.csv`` (one row per cell).

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
from seabed_hmc.reporting import (
    compare_to_control,
    markdown_table,
    mean_table,
    recall_by_depth,
    write_text_atomic,
)
from seabed_hmc.significance import holm_bonferroni, paired_wilcoxon

METRICS = {
    "au_prc": "AU(PRC)",
    "f1_all": "node F1",
    "recall_all": "node recall",
    "rare_node_recall": "rare-node recall",
    "hierarchical_f1": "hierarchical F1",
}
PLOTTED = ("au_prc", "f1_all", "rare_node_recall")
# the decision-dependent metrics, recomputed under each cell's fitted rule (AU(PRC) is threshold-free)
DECIDED = {f"decided_{k}": f"{v}, fitted rule" for k, v in METRICS.items() if k != "au_prc"}


def _level_name(mode: str) -> str:
    return "fraction" if mode == "fraction" else "examples per leaf"


def _level_text(level: float, mode: str) -> str:
    return f"{level:.0%}" if mode == "fraction" else f"{level:g}"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metric_plot(runs: pd.DataFrame, metric: str, path: Path, mode: str) -> None:
    """Metric versus level (log x), one line per configuration (mean; band = min..max over seeds), one
    panel per encoder."""
    plt = _plt()
    encoders = list(dict.fromkeys(runs["encoder"]))
    figure, axes = plt.subplots(
        1, len(encoders), figsize=(4.2 * len(encoders), 3.6), sharey=True, squeeze=False
    )
    for axis, encoder in zip(axes[0], encoders, strict=True):
        for name, group in runs[runs["encoder"] == encoder].groupby("configuration", sort=False):
            stats = group.groupby("level")[metric].agg(["mean", "min", "max"]).sort_index()
            axis.plot(stats.index, stats["mean"], marker="o", label=name)
            axis.fill_between(stats.index, stats["min"], stats["max"], alpha=0.15)
        axis.set_xscale("log")
        axis.set_title(encoder)
        axis.set_xlabel(_level_name(mode))
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel(METRICS.get(metric, metric))
    _legend(axes, fontsize=8)
    figure.suptitle(f"{METRICS.get(metric, metric)} (test; band: range over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _legend(axes, fontsize: int) -> None:
    """One legend, on the last panel of the first row that has lines (a partial grid may leave a
    panel empty, e.g. an encoder not yet run at the smallest level)."""
    for axis in [*axes[0][::-1], *(a for row in axes[1:] for a in row[::-1])]:
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=fontsize)
            return


def depth_plot(runs: pd.DataFrame, path: Path, mode: str) -> None:
    """Per-depth recall at the smallest and the largest level: rows = those levels, columns = encoders."""
    plt = _plt()
    encoders = list(dict.fromkeys(runs["encoder"]))
    levels = sorted({runs["level"].min(), runs["level"].max()})
    figure, axes = plt.subplots(
        len(levels), len(encoders), figsize=(4.2 * len(encoders), 3.3 * len(levels)), squeeze=False
    )
    for row, level in enumerate(levels):
        for column, encoder in enumerate(encoders):
            axis = axes[row][column]
            subset = runs[(runs["encoder"] == encoder) & (runs["level"] == level)]
            if subset.empty:
                axis.text(0.5, 0.5, "no cells yet", ha="center", va="center", transform=axis.transAxes)
            for name, group in subset.groupby("configuration", sort=False):
                mean = recall_by_depth(group).mean(axis=0)
                axis.plot(mean.index, mean.to_numpy(), marker="o", label=name)
            axis.set_title(f"{encoder}, {_level_name(mode)} {_level_text(level, mode)}", fontsize=9)
            axis.set_xlabel("depth")
            axis.set_ylim(-0.02, 1.02)
            axis.grid(alpha=0.3)
        axes[row][0].set_ylabel("macro recall at depth")
    _legend(axes, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def paired_gains(runs: pd.DataFrame, control: str, metric: str) -> pd.DataFrame:
    """Per (encoder, configuration, level): mean over seeds of (configuration − control), paired by seed."""
    base = runs[runs["configuration"] == control].set_index(["encoder", "level", "seed"])[metric]
    rows = []
    for (encoder, name, level), group in runs[runs["configuration"] != control].groupby(
        ["encoder", "configuration", "level"], sort=False
    ):
        other = group.set_index(["encoder", "level", "seed"])[metric]
        pairs = other.index.intersection(base.index)
        if len(pairs):
            difference = (other.loc[pairs] - base.loc[pairs]).to_numpy(float)
            rows.append(
                {
                    "encoder": encoder,
                    "configuration": name,
                    "level": level,
                    "gain": float(np.nanmean(difference)),
                    "pairs": len(pairs),
                }
            )
    return pd.DataFrame(rows, columns=["encoder", "configuration", "level", "gain", "pairs"])


def gain_trend(runs: pd.DataFrame, control: str, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Does a configuration's gain over control grow as the data shrink?  Per (encoder, configuration,
    metric): Spearman's rank correlation between the level and the per-seed paired gain over every
    (level, seed) pair (rho < 0: the gain is larger with less data, read as "less harm" when the
    mean gain is below zero at both ends), its two-sided p-value (``scipy.stats.spearmanr``), the
    Holm-adjusted p over the table's rows, and the mean gain at the smallest and the largest level."""
    from scipy.stats import spearmanr

    base = runs[runs["configuration"] == control].set_index(["encoder", "level", "seed"])
    rows = []
    for (encoder, name), group in runs[runs["configuration"] != control].groupby(
        ["encoder", "configuration"], sort=False
    ):
        other = group.set_index(["encoder", "level", "seed"])
        pairs = other.index.intersection(base.index)
        levels = pairs.get_level_values("level").to_numpy(float)
        for metric in metrics:
            gain = (other.loc[pairs, metric] - base.loc[pairs, metric]).to_numpy(float)
            if len(pairs) == 0:
                why = "no pairs with control yet"
            elif len(set(levels)) < 2:
                why = "one level only"
            elif len(pairs) < 3:
                why = "too few pairs"
            elif np.ptp(gain) <= 1e-9:  # float noise is no variation
                why = "no variation (the same gain everywhere)"
            else:
                why = ""
            rho, p = (np.nan, np.nan) if why else spearmanr(levels, gain)
            smallest, largest = (
                (float(gain[levels == levels.min()].mean()), float(gain[levels == levels.max()].mean()))
                if len(pairs)
                else (np.nan, np.nan)
            )
            rows.append(
                {
                    "encoder": encoder,
                    "configuration": name,
                    "metric": METRICS.get(metric, DECIDED.get(metric, metric)),
                    "pairs": len(pairs),
                    "levels": len(set(levels)),
                    "gain, smallest level": smallest,
                    "gain, largest level": largest,
                    "rho": float(rho),
                    "p": float(p),
                    "reading": why,
                }
            )
    columns = ["encoder", "configuration", "metric", "pairs", "levels", "gain, smallest level"]
    columns += ["gain, largest level", "rho", "p", "p (Holm)", "reading"]
    table = pd.DataFrame(rows, columns=columns)
    tested = table["p"].notna().to_numpy()
    if tested.any():
        table.loc[tested, "p (Holm)"] = holm_bonferroni(table.loc[tested, "p"].to_numpy(float))
    table["p (Holm)"] = table["p (Holm)"].astype(float)
    table.loc[tested, "reading"] = [
        _trend_words(row["rho"], row["gain, smallest level"], row["gain, largest level"])
        + (" (Holm p < 0.05)" if row["p (Holm)"] < 0.05 else " (not significant)")
        for _, row in table[tested].iterrows()
    ]
    return table


def _trend_words(rho: float, smallest: float, largest: float) -> str:
    """The direction of a trend in words; a gain below zero at both ends is read as harm."""
    if abs(rho) < 1e-12:
        return "no trend"
    if max(smallest, largest) <= 0:
        return "less harm as data shrink" if rho < 0 else "more harm as data shrink"
    return "grows as data shrink" if rho < 0 else "shrinks as data shrink"


def _formatted_trend(table: pd.DataFrame) -> pd.DataFrame:
    number = {"rho": "{:+.3f}", "p": "{:.3g}", "p (Holm)": "{:.3g}"}
    number |= {"gain, smallest level": "{:+.3f}", "gain, largest level": "{:+.3f}"}
    return table.assign(
        **{key: [("-" if np.isnan(v) else f.format(v)) for v in table[key]] for key, f in number.items()}
    )


def gain_plot(gains: dict[str, pd.DataFrame], path: Path, mode: str) -> None:
    """Gain over control versus level, one panel per metric, one line per (encoder, configuration)."""
    plt = _plt()
    figure, axes = plt.subplots(1, len(gains), figsize=(4.8 * len(gains), 3.8), squeeze=False)
    # colour = configuration, line style and marker = encoder: distinct for up to 10 x 4 lines
    tables = list(gains.values())
    names = list(dict.fromkeys(n for t in tables for n in t["configuration"]))
    encoders = list(dict.fromkeys(e for t in tables for e in t["encoder"]))
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
    styles = {e: (["-", "--", ":", "-."][i % 4], "os^D"[i % 4]) for i, e in enumerate(encoders)}
    for axis, (metric, table) in zip(axes[0], gains.items(), strict=True):
        for (encoder, name), group in table.groupby(["encoder", "configuration"], sort=False):
            group = group.sort_values("level")
            style, marker = styles[encoder]
            axis.plot(
                group["level"],
                group["gain"],
                linestyle=style,
                marker=marker,
                color=colours[name],
                label=f"{encoder} / {name}",
            )
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel(_level_name(mode))
        axis.set_ylabel(f"{METRICS.get(metric, metric)}: method − control")
        axis.grid(alpha=0.3)
    _legend(axes, fontsize=7)
    figure.suptitle("gain over control (mean of paired differences over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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
                f"{f1_level.get(smallest, np.nan):+.3f} vs control at {_level_text(smallest, mode)} "
                "(the only level finished so far)."
            )
            continue
        trend = "larger" if small > large else ("the same" if small == large else "smaller")
        lines.append(
            f"- **{encoder} / {name}**: rare-node recall {small:+.3f} vs control at "
            f"{_level_text(smallest, mode)} and {large:+.3f} at {_level_text(largest, mode)} "
            f"(the gain is {trend} with less data); node F1 {f1_level.get(smallest, np.nan):+.3f} and "
            f"{f1_level.get(largest, np.nan):+.3f}."
        )
    mean_gain = gains.groupby(["configuration", "encoder"], sort=False)["gain"].mean()
    for name in dict.fromkeys(gains["configuration"]):
        per_encoder = mean_gain[name]
        ordered = ", ".join(f"{encoder} {value:+.3f}" for encoder, value in per_encoder.items())
        lines.append(f"- {name}: mean rare-node recall gain over all levels, per encoder: {ordered}.")
    return lines


def statistics_table(runs: pd.DataFrame, control: str) -> pd.DataFrame:
    """Each configuration against control per (encoder, level), paired over seeds (Holm within cell)."""
    tables = []
    for (encoder, level), group in runs.groupby(["encoder", "level"], sort=False):
        table = compare_to_control(group, METRICS, ["seed"], "configuration", control)
        table.insert(0, "level", level)
        table.insert(0, "encoder", encoder)
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def rare_recall_ratio(runs: pd.DataFrame, control: str) -> pd.DataFrame:
    """Ratio of mean rare-node recall (configuration / control) per encoder and level."""
    means = runs.groupby(["encoder", "level", "configuration"], sort=False)["rare_node_recall"].mean()
    rows = []
    for (encoder, level), group in means.groupby(level=[0, 1], sort=False):
        base = group.get((encoder, level, control), np.nan)
        row = {"encoder": encoder, "level": level}
        for (_, _, name), value in group.items():
            if name != control:
                row[name] = "n/a (control 0)" if base == 0 else f"x{value / base:.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


def fixed_and_fitted_gains(runs: pd.DataFrame, control: str) -> pd.DataFrame:
    """Per (encoder, configuration, level): the mean paired gain over control of node F1 and
    rare-node recall, under the fixed 0.5 rule and under each cell's fitted rule, side by side."""
    columns = {}
    for metric in ("f1_all", "rare_node_recall"):
        for prefix, rule in (("", "0.5"), ("decided_", "fitted")):
            gains = paired_gains(runs, control, prefix + metric)
            columns[f"{METRICS[metric]} gain, {rule}"] = gains.set_index(
                ["encoder", "configuration", "level"]
            )["gain"]
    table = pd.DataFrame(columns).reset_index()
    return table.assign(**{key: [f"{v:+.3f}" for v in table[key]] for key in columns})


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
        f"Holm-adjusted among themselves; rho < 0: a larger gain with a smaller {_level_name(mode)})",
        markdown_table(_formatted_trend(trend)),
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
        f"{_level_name(mode)} and the gain over {control} (paired by seed, every level and seed); "
        "rho < 0 means a larger gain with less data (for gains below zero: less harm). "
        "Holm-adjusted over the rows of this table.",
        markdown_table(_formatted_trend(gain_trend(runs, control, ("rare_node_recall", "f1_all")))),
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
            f"{_level_text(level['level'], record['mode'])}: {level['size']} rows"
            + (
                f" ({len(level['nodes_below_minimum'])} nodes below the minimum)"
                if level["nodes_below_minimum"]
                else ""
            )
            for level in record["levels"]
        )
        lines.append(f"- seed {record['seed']} (`subsets/{path.name}`): {sizes}")
    return "\n".join(lines) or "(no subset files)"
