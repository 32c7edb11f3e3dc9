"""Rare-node weights w⁺ from training-split node frequencies (METHOD.md section 4)."""

from __future__ import annotations

import numpy as np
import torch

from seabed_hmc.hierarchy import Hierarchy

FREQUENCY_MODES = ("exact", "propagated")


def node_frequencies(
    hierarchy: Hierarchy,
    targets: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    frequency: str = "exact",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-node positive counts f_i and known counts, from ancestor-closed training targets.

    Args:
        targets: (samples, nodes) 0/1 ancestor-closed targets of the training split.
        mask: (samples, nodes) 1 where the node is known; unknown entries are not counted.
        frequency: ``"exact"`` counts each sample once per node.  ``"propagated"`` reproduces the
            original code, which added descendants' counts on top of already-closed labels:
            f_i = sum over j in D(i) of exact f_j.

    Returns:
        ``(positives, known)``: float64 arrays of shape (nodes,).
    """
    if frequency not in FREQUENCY_MODES:
        raise ValueError(f"frequency must be one of {FREQUENCY_MODES}, got {frequency!r}")
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != len(hierarchy):
        raise ValueError(f"targets must have shape (samples, {len(hierarchy)}), got {tuple(y.shape)}")
    known = np.ones_like(y) if mask is None else np.asarray(mask, dtype=np.float64)
    positives = (y * known).sum(axis=0)
    known_counts = known.sum(axis=0)
    if frequency == "propagated":
        node, ancestor = hierarchy.ancestor_pairs
        positives = np.bincount(ancestor, weights=positives[node], minlength=len(hierarchy))
    return positives, known_counts


def node_weights(
    hierarchy: Hierarchy,
    targets: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    omega: float = 0.25,
    frequency: str = "exact",
) -> torch.Tensor:
    """The rare-node weights w⁺ of shape (nodes,), computed once from the training split.

        w_i  = D / (K · f_i),   w_i := 1 where f_i = 0 or the node is on in every known sample
        w⁺_i = ω + max(w) · (w_i − min w) / (max w − min w)

    D is the number of training samples, K the number of evaluated nodes; min and max run over the
    evaluated nodes.  "Always on" is judged on the exact count (f_i equal to the number of samples
    where node i is known), so the rule means the same under ``frequency="propagated"``.  If every
    evaluated node has the same w (no imbalance, the normalisation is undefined), all weights are 1.
    Non-evaluated nodes get weight 1 (they never enter the loss).
    """
    positives, known = node_frequencies(hierarchy, targets, mask, frequency)
    exact, _ = node_frequencies(hierarchy, targets, mask, "exact")
    samples = np.asarray(targets).shape[0]
    evaluated = hierarchy.evaluated
    k = int(evaluated.sum())
    if samples == 0 or k == 0:
        raise ValueError("node weights need at least one training sample and one evaluated node")
    uninformative = (exact == 0) | (exact == known)
    with np.errstate(divide="ignore"):
        w = np.where(uninformative, 1.0, samples / (k * np.maximum(positives, 1e-300)))
    w_eval = w[evaluated]
    low, high = w_eval.min(), w_eval.max()
    weights = np.ones(len(hierarchy))
    if high > low:
        weights[evaluated] = omega + high * (w_eval - low) / (high - low)
    return torch.as_tensor(weights, dtype=torch.float32)
