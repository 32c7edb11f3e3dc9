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
