"""The plots of a limited-data grid's report: a metric against the amount of data, recall by depth, and
the gain over control (matplotlib, written as PNG without a display)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from seabed_hmc.limited_data.statistics import METRICS, level_name, level_text
from seabed_hmc.reporting import recall_by_depth


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
        axis.set_xlabel(level_name(mode))
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
            axis.set_title(f"{encoder}, {level_name(mode)} {level_text(level, mode)}", fontsize=9)
            axis.set_xlabel("depth")
            axis.set_ylim(-0.02, 1.02)
            axis.grid(alpha=0.3)
        axes[row][0].set_ylabel("macro recall at depth")
    _legend(axes, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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
        axis.set_xlabel(level_name(mode))
        axis.set_ylabel(f"{METRICS.get(metric, metric)}: method − control")
        axis.grid(alpha=0.3)
    _legend(axes, fontsize=7)
    figure.suptitle("gain over control (mean of paired differences over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
