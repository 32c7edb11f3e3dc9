"""Percent cover from point labels, and how far a model's cover is from the annotators'.

Cover is what point-count surveys report: the share of points on each node.  A point labelled
``Biota > Macroalgae > Kelp`` counts for Kelp, Macroalgae and Biota alike (its labels are closed under
ancestors), so a parent's cover is the share of points on it or anywhere below it, and the cover of a
level sums to 100% only where every point reaches that level.  A point a model abstains on counts for
no node.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from seabed_hmc.atomic import atomic_path
from seabed_hmc.hierarchy import Hierarchy

ABSTAIN = "abstain"  # predict's word for "no node passed" (seabed_hmc.decisions.ABSTAIN)


def node_cover(labels: Sequence[str], hierarchy: Hierarchy) -> np.ndarray:
    """Per node, the share of the points (0..1) whose labels, closed under ancestors, include it.

    ``labels``: one entry per point, a node path or several joined by ``"|"``; ``""`` or ``"abstain"``
    is a point on no node."""
    entries = ["" if not isinstance(e, str) or e.strip() == ABSTAIN else e for e in labels]
    if not entries:
        raise ValueError("no points to compute cover from")
    targets, _ = hierarchy.encode(entries)
    return targets.numpy().mean(axis=0)


def cover_error(annotated: Sequence[str], predicted: Sequence[str], hierarchy: Hierarchy) -> pd.DataFrame:
    """Per evaluated node: the annotated and the predicted cover in percent, and the absolute error in
    percentage points, over the same points (``annotated[i]`` and ``predicted[i]`` are one point)."""
    if len(annotated) != len(predicted):
        raise ValueError(f"{len(annotated)} annotated points but {len(predicted)} predicted ones")
    truth, guess = node_cover(annotated, hierarchy), node_cover(predicted, hierarchy)
    nodes = np.flatnonzero(hierarchy.evaluated)
    return pd.DataFrame(
        {
            "node": [hierarchy.nodes[i] for i in nodes],
            "depth": hierarchy.depth[nodes],
            "annotated_percent": 100 * truth[nodes],
            "predicted_percent": 100 * guess[nodes],
            "error_points": 100 * np.abs(truth[nodes] - guess[nodes]),
        }
    )


def cover_by_group(
    groups: Sequence[str],
    predicted: Sequence[str],
    probabilities: np.ndarray,
    spread: np.ndarray,
    nodes: Sequence[str],
    hierarchy: Hierarchy,
    annotated: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Percent cover per group (image, site, transect) and node, one row each.

    ``cover_percent``: the share of the group's points whose decision includes the node (what a point
    count reports).  ``expected_percent``: the mean probability of the node over the points, with
    ``low_percent``..``high_percent`` = it minus and plus the mean ensemble spread, a bound on one
    standard deviation of the heads' own expected cover (the standard deviation of a mean is at most
    the mean of the standard deviations), clipped to 0..100.  With ``annotated`` labels:
    ``annotated_percent`` and ``error_points``, the absolute difference from ``cover_percent``.
    ``probabilities``/``spread`` are (points, len(nodes)), ``nodes`` evaluated nodes of ``hierarchy``.
    """
    groups = pd.Series(list(groups), dtype=str)
    column = [hierarchy.index(node) for node in nodes]
    frames = []
    for name, rows in groups.groupby(groups, sort=True).groups.items():
        rows = np.asarray(rows)
        decided = node_cover([predicted[i] for i in rows], hierarchy)[column]
        expected, half = probabilities[rows].mean(axis=0), spread[rows].mean(axis=0)
        part = pd.DataFrame(
            {
                "group": name,
                "node": list(nodes),
                "depth": hierarchy.depth[column],
                "points": len(rows),
                "cover_percent": 100 * decided,
                "expected_percent": 100 * expected,
                "low_percent": 100 * np.clip(expected - half, 0, 1),
                "high_percent": 100 * np.clip(expected + half, 0, 1),
            }
        )
        if annotated is not None:
            part["annotated_percent"] = 100 * node_cover([annotated[i] for i in rows], hierarchy)[column]
            part["error_points"] = (part["cover_percent"] - part["annotated_percent"]).abs()
        frames.append(part)
    return pd.concat(frames, ignore_index=True).round(3)


def plot_cover(table: pd.DataFrame, path, depth: int, title: str, max_groups: int = 60) -> None:
    """A stacked bar per group of the expected cover of the nodes at ``depth``, each segment with its
    interval as a whisker; the first ``max_groups`` groups (the title says when there are more)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    level = table[table["depth"] == depth]
    names = list(dict.fromkeys(level["group"]))
    shown = names[:max_groups]
    level = level[level["group"].isin(shown)]
    nodes = list(dict.fromkeys(level["node"]))
    figure, axes = plt.subplots(figsize=(max(6, 0.35 * len(shown) + 3), 5))
    bottom = np.zeros(len(shown))
    colours = plt.get_cmap("tab20")
    for index, node in enumerate(nodes):
        rows = level[level["node"] == node].set_index("group").reindex(shown).fillna(0)
        height = rows["expected_percent"].to_numpy()
        axes.bar(
            range(len(shown)), height, bottom=bottom, color=colours(index % 20), label=node.split(" > ")[-1]
        )
        low, high = height - rows["low_percent"].to_numpy(), rows["high_percent"].to_numpy() - height
        axes.errorbar(
            np.arange(len(shown)), bottom + height / 2, yerr=[low, high], fmt="none", ecolor="black", lw=0.6
        )
        bottom += height
    axes.set_xticks(range(len(shown)), shown, rotation=90, fontsize=7)
    axes.set_ylabel("expected cover (%), whiskers: +/- ensemble spread")
    more = f" (first {len(shown)} of {len(names)})" if len(names) > len(shown) else ""
    axes.set_title(f"{title}, level {depth + 1}{more}", fontsize=9)
    axes.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=120)
    plt.close(figure)
