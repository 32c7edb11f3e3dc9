"""Nested, hierarchy-aware training subsets for limited-data studies (METHOD.md section 10).

For one seed, the subsets at increasing sizes are nested: each smaller subset lies inside every larger
one, so a curve over fractions measures the data, not a reshuffle.  They are hierarchy-aware: before
filling a subset up to its size in a seeded random order, every evaluated node with training positives
receives at least ``min_positives`` of them (rarest nodes first, positives taken in the same seeded
order), where the training set has that many.  Nodes that cannot reach the minimum are reported, never
silently dropped, and a subset that needs more rows than its nominal size to cover every node is allowed
to grow (its actual size is reported).

Two modes: fractions of the training set (``fraction_subsets``) and an absolute number of examples per
leaf node (``per_leaf_subsets``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from seabed_hmc.hierarchy import Hierarchy


@dataclass
class Subsets:
    """Nested subsets of the training rows, keyed by their level (a fraction or a per-leaf count).

    Attributes:
        indices: level -> sorted row positions within the training split.
        target_sizes: level -> the nominal size (for per-leaf levels: the rows chosen).
        short_nodes: level -> names of nodes with fewer than the minimum positives in that subset
            although they have training positives (the training set itself has too few, or, in per-leaf
            mode, too few to reach k).
        mode: ``"fraction"`` or ``"per_leaf"``.
    """

    indices: dict[float, np.ndarray]
    target_sizes: dict[float, int]
    short_nodes: dict[float, list[str]] = field(default_factory=dict)
    mode: str = "fraction"

    def to_dict(self, paths: Sequence[str] | None = None) -> dict:
        """JSON-ready: per level, the row positions (and image paths when given) and the shortfalls."""
        levels = []
        for level, rows in self.indices.items():
            entry = {
                "level": level,
                "size": len(rows),
                "target_size": self.target_sizes[level],
                "nodes_below_minimum": self.short_nodes.get(level, []),
                "train_positions": rows.tolist(),
            }
            if paths is not None:
                entry["images"] = [paths[i] for i in rows]
            levels.append(entry)
        return {"mode": self.mode, "levels": levels}


def _positives(targets, mask, hierarchy: Hierarchy) -> np.ndarray:
    """(rows, nodes) bool: known positive entries on evaluated nodes."""
    positive = np.asarray(torch.as_tensor(targets) > 0.5)
    if mask is not None:
        positive &= np.asarray(torch.as_tensor(mask) > 0.5)
    return positive & np.asarray(hierarchy.evaluated, bool)[None, :]


def _draw_order(targets, mask, hierarchy: Hierarchy, seed: int):
    """(positives, the seeded order of the rows, each row's position in it)."""
    positive = _positives(targets, mask, hierarchy)
    rows = len(positive)
    if rows == 0:
        raise ValueError("the training split is empty: no subsets to draw")
    order = np.random.default_rng(seed).permutation(rows)
    rank = np.empty(rows, dtype=np.int64)
    rank[order] = np.arange(rows)
    return positive, order, rank


def _rarest_first(positive: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """The nodes with training positives, fewest positives first."""
    totals = positive.sum(axis=0)
    nodes = nodes[totals[nodes] > 0]
    return nodes[np.argsort(totals[nodes], kind="stable")]


def _cover(
    chosen: np.ndarray, positive: np.ndarray, rank: np.ndarray, nodes: np.ndarray, minimum: int
) -> None:
    """Add rows (in seeded rank order) until each node in ``nodes`` has ``minimum`` positives, rarest
    node first; in place.  Nodes with too few positives overall keep all they have."""
    counts = positive[chosen].sum(axis=0)
    for node in nodes:
        need = minimum - counts[node]
        if need <= 0:
            continue
        candidates = np.flatnonzero(positive[:, node] & ~chosen)
        added = candidates[np.argsort(rank[candidates], kind="stable")][:need]
        chosen[added] = True
        counts += positive[added].sum(axis=0)


def _fill(chosen: np.ndarray, order: np.ndarray, size: int) -> None:
    missing = size - int(chosen.sum())
    if missing > 0:
        free = order[~chosen[order]]
        chosen[free[:missing]] = True


def _shortfall(chosen: np.ndarray, positive: np.ndarray, minimum: int, nodes, hierarchy) -> list[str]:
    counts = positive[chosen].sum(axis=0)
    return [hierarchy.nodes[n] for n in nodes if counts[n] < minimum]


def fraction_subsets(
    targets,
    mask,
    hierarchy: Hierarchy,
    fractions: Sequence[float],
    seed: int,
    min_positives: int = 1,
) -> Subsets:
    """Nested subsets at the given fractions of the training rows.

    Args:
        targets, mask: (rows, nodes) training targets and known-entry mask (None: all known).
        fractions: in (0, 1]; sizes are ``max(1, round(fraction * rows))``.
        seed: the order in which rows are drawn; the same seed gives the same subsets.
        min_positives: positives each node with training positives keeps, where possible.
    """
    fractions = sorted(float(f) for f in fractions)
    if not fractions or fractions[0] <= 0 or fractions[-1] > 1:
        raise ValueError(f"fractions must lie in (0, 1], got {fractions}")
    if min_positives < 0:
        raise ValueError(f"min_positives must be >= 0, got {min_positives}")
    positive, order, rank = _draw_order(targets, mask, hierarchy, seed)
    nodes = _rarest_first(positive, np.arange(positive.shape[1]))
    chosen = np.zeros(len(positive), dtype=bool)
    result = Subsets({}, {}, {}, "fraction")
    for fraction in fractions:
        size = max(1, round(fraction * len(positive)))
        _cover(chosen, positive, rank, nodes, min_positives)
        _fill(chosen, order, size)
        result.indices[fraction] = np.flatnonzero(chosen)
        result.target_sizes[fraction] = size
        result.short_nodes[fraction] = _shortfall(chosen, positive, min_positives, nodes, hierarchy)
    return result


def per_leaf_subsets(targets, mask, hierarchy: Hierarchy, counts: Sequence[int], seed: int) -> Subsets:
    """Nested subsets with (up to) k positive examples of every leaf node, for each k in ``counts``.

    Leaves are evaluated nodes without children.  Rows are drawn in a seeded order, rarest leaf first; a
    row counts for every leaf it is positive for (multi-label), so some leaves end up with more than k.
    """
    counts = sorted(int(k) for k in counts)
    if not counts or counts[0] < 1:
        raise ValueError(f"per-leaf counts must be positive integers, got {counts}")
    positive, _, rank = _draw_order(targets, mask, hierarchy, seed)
    leaves = np.array(
        [n for n in range(len(hierarchy)) if hierarchy.evaluated[n] and not hierarchy.children[n]], dtype=int
    )
    leaves = _rarest_first(positive, leaves)
    chosen = np.zeros(len(positive), dtype=bool)
    result = Subsets({}, {}, {}, "per_leaf")
    for k in counts:
        _cover(chosen, positive, rank, leaves, k)
        result.indices[k] = np.flatnonzero(chosen)
        result.target_sizes[k] = int(chosen.sum())
        result.short_nodes[k] = _shortfall(chosen, positive, k, leaves, hierarchy)
    return result
