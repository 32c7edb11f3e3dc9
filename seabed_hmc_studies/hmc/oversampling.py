"""Hierarchical random oversampling (HROS), the oversampling baseline of METHOD.md section 6."""

from __future__ import annotations

import math

import numpy as np
import torch

from seabed_hmc.hierarchy import Hierarchy


def hros_indices(
    targets: np.ndarray | torch.Tensor,
    hierarchy: Hierarchy,
    budget: float = 0.10,
    seed: int = 0,
    mask: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """Training indices with samples of minority label paths duplicated (HROS, after ML-ROS).

    ML-ROS (Charte et al. 2015) applied to ancestor-closed hierarchical targets:

    1. ``count(i)`` = the number of training samples with ``y[b, i] = 1`` at evaluated node ``i``,
       known entries only (``mask[b, i] = 1``).  Nodes with count 0 (and excluded nodes such as
       ``root``) take no part.
    2. For the remaining nodes, ``IR(i) = max_count / count(i)`` with ``max_count`` the largest count;
       ``MeanIR`` = the mean of ``IR`` over them, computed once, from the original data.
    3. The minority nodes are those with ``IR(i) > MeanIR``.  The budget is ``floor(budget * n)`` clones.
    4. Rounds, round-robin: each round visits the current minority nodes in order of increasing
       current count (ties by node index), the order fixed at the start of the round.  At its turn a
       node whose ``IR`` (with the current counts, ``max_count`` included) is already ``<= MeanIR`` leaves
       the minority set without a clone.  Otherwise one of the ORIGINAL samples with a known positive
       at that node is cloned, drawn uniformly by ``np.random.default_rng(seed)``; the clone adds 1 to
       the count of every evaluated node where it has a known positive, the budget drops by one, and
       the node leaves the minority set if its ``IR`` is now ``<= MeanIR``.
    5. It stops when the budget is spent or no minority node is left.  A node that has left stays out,
       even if clones for other nodes later raise ``max_count`` again (as in ML-ROS).

    Cloning a sample duplicates its whole label set (every path it carries, and their ancestors), so
    counts never decrease and common ancestors grow with their rare descendants.

    Args:
        targets: (samples, nodes) 0/1, ancestor-closed (``hierarchy.encode``).
        hierarchy: gives the evaluated nodes (``hierarchy.evaluated``).
        budget: the most clones, as a fraction of the number of samples (METHOD.md: 10%).
        seed: seeds the draws; the same inputs and seed give the same indices.
        mask: (samples, nodes) 0/1, known entries (None: all known).

    Returns:
        (samples + clones,) int64: ``0 .. samples-1`` in order, then the cloned sample indices in the
        order they were drawn.  Index a dataset with it to get the oversampled training set.
    """
    if not budget >= 0:
        raise ValueError(f"budget must be a non-negative fraction of the training set, not {budget}")
    positives = _known_positives(targets, mask, hierarchy)
    samples = positives.shape[0]
    # The tolerance keeps 0.1 * 70 = 7.000000000000001 and 0.29 * 100 = 28.999999999999996 at 7 and 29.
    clones_left = math.floor(budget * samples + 1e-9)
    original = np.arange(samples, dtype=np.int64)
    counts = positives.sum(axis=0).astype(np.int64)
    present = np.flatnonzero(counts > 0)
    if clones_left == 0 or present.size == 0:
        return original

    def imbalance(node: int) -> float:
        return counts[present].max() / counts[node]

    mean_ratio = float(np.mean(counts[present].max() / counts[present]))
    minority = {int(i) for i in present if imbalance(int(i)) > mean_ratio}
    carriers = {node: np.flatnonzero(positives[:, node]) for node in minority}
    rng = np.random.default_rng(seed)
    clones: list[int] = []
    while clones_left > 0 and minority:
        for node in sorted(minority, key=lambda i: (counts[i], i)):
            if clones_left == 0:
                break
            if imbalance(node) <= mean_ratio:
                minority.discard(node)
                continue
            chosen = int(carriers[node][rng.integers(carriers[node].size)])
            clones.append(chosen)
            counts += positives[chosen]
            clones_left -= 1
            if imbalance(node) <= mean_ratio:
                minority.discard(node)
    return np.concatenate([original, np.asarray(clones, dtype=np.int64)])


def _known_positives(
    targets: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor | None, hierarchy: Hierarchy
) -> np.ndarray:
    """(samples, nodes) int64: 1 where the target is 1, known, and the node evaluated."""
    y = _as_array(targets)
    if y.ndim != 2 or y.shape[1] != len(hierarchy):
        raise ValueError(
            f"targets must be (samples, {len(hierarchy)}) for this hierarchy, got shape {tuple(y.shape)}"
        )
    known = np.ones_like(y, dtype=bool) if mask is None else _as_array(mask) > 0.5
    if known.shape != y.shape:
        raise ValueError(f"mask shape {tuple(known.shape)} differs from targets shape {tuple(y.shape)}")
    return ((y > 0.5) & known & hierarchy.evaluated[None, :]).astype(np.int64)


def _as_array(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)
