"""The statistics of a limited-data grid, from its ``results.csv``: paired gains over the control
configuration, Wilcoxon tests with Holm's adjustment, the trend of the gain with the amount of data
(Spearman), rare-node recall ratios, and the same under each cell's fitted decision rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seabed_hmc.reporting import compare_to_control
from seabed_hmc.significance import holm_bonferroni

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


def level_name(mode: str) -> str:
    return "fraction" if mode == "fraction" else "examples per leaf"


def level_text(level: float, mode: str) -> str:
    return f"{level:.0%}" if mode == "fraction" else f"{level:g}"


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


def formatted_trend(table: pd.DataFrame) -> pd.DataFrame:
    number = {"rho": "{:+.3f}", "p": "{:.3g}", "p (Holm)": "{:.3g}"}
    number |= {"gain, smallest level": "{:+.3f}", "gain, largest level": "{:+.3f}"}
    return table.assign(
        **{key: [("-" if np.isnan(v) else f.format(v)) for v in table[key]] for key, f in number.items()}
    )


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
