"""Per-node probability calibration fit on validation logits (temperature or Platt scaling).

The ensemble's coherent probabilities ``p`` become ``sigmoid(a_i * logit(p) + b_i)`` per node ``i``
(temperature scaling fits ``a_i`` alone, ``b_i = 0``; Platt scaling fits both), each node by Newton's
method on its own binary cross-entropy over the known validation entries, with a weak pull towards
the identity (``a = 1``, ``b = 0``) so that a node whose scores separate perfectly stays finite.  A
node with fewer than ``min_positives`` positives or negatives keeps the identity.  Per-node maps can
break coherence (a child above its parent), so the max-constraint is applied again to the calibrated
logits.  :func:`expected_calibration_error` and :func:`reliability_diagram` say what it did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seabed_hmc.config import CALIBRATION_METHODS
from seabed_hmc.constraint import constraint_plan, max_constraint
from seabed_hmc.hierarchy import Hierarchy

EPSILON = 1e-6  # probabilities are clipped to [EPSILON, 1 - EPSILON] before the logit
PULL = 1e-3  # ridge towards the identity, in units of the per-node curvature


@dataclass
class Calibration:
    """Per-node ``scale`` (a) and ``bias`` (b); ``fitted`` marks the nodes that were fit."""

    method: str
    scale: np.ndarray
    bias: np.ndarray
    fitted: np.ndarray

    def apply(self, probabilities: np.ndarray, hierarchy: Hierarchy, node_axis: int = -1) -> np.ndarray:
        """Calibrated, coherent probabilities shaped like ``probabilities`` (nodes on ``node_axis``)."""
        values = np.moveaxis(np.asarray(probabilities, dtype=np.float64), node_axis, -1)
        clipped = np.clip(values, EPSILON, 1 - EPSILON)
        logits = self.scale * (np.log(clipped) - np.log1p(-clipped)) + self.bias
        shape = logits.shape
        coherent = max_constraint(torch.from_numpy(logits.reshape(-1, shape[-1])), constraint_plan(hierarchy))
        calibrated = torch.sigmoid(coherent).numpy().reshape(shape)
        return np.moveaxis(calibrated, -1, node_axis)

    def to_record(self) -> dict:
        return {
            "method": self.method,
            "scale": [float(v) for v in self.scale],
            "bias": [float(v) for v in self.bias],
            "fitted": [bool(v) for v in self.fitted],
        }

    @classmethod
    def from_record(cls, record: dict) -> Calibration:
        return cls(
            record["method"],
            np.asarray(record["scale"], dtype=np.float64),
            np.asarray(record["bias"], dtype=np.float64),
            np.asarray(record["fitted"], dtype=bool),
        )


def fit_calibration(
    probabilities: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray | None,
    hierarchy: Hierarchy,
    method: str = "platt",
    min_positives: int = 5,
    steps: int = 50,
) -> Calibration:
    """Fit ``method`` (``temperature`` or ``platt``) per evaluated node on (samples, nodes) arrays."""
    if method not in CALIBRATION_METHODS or method == "none":
        raise ValueError(f"calibration method {method!r} is not one of {list(CALIBRATION_METHODS[1:])}")
    scores = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    logits = np.log(scores) - np.log1p(-scores)
    truth = np.asarray(targets) > 0.5
    known = np.ones_like(truth) if mask is None else np.asarray(mask) > 0.5
    weight = known.astype(np.float64)
    positives, negatives = (truth & known).sum(0), (~truth & known).sum(0)
    fitted = hierarchy.evaluated & (positives >= min_positives) & (negatives >= min_positives)
    scale, bias = np.ones(scores.shape[1]), np.zeros(scores.shape[1])
    y = truth.astype(np.float64)
    for _ in range(steps):
        z = scale * logits + bias
        p = 1 / (1 + np.exp(-z))
        residual, curvature = (p - y) * weight, p * (1 - p) * weight
        g_scale = (residual * logits).sum(0) + PULL * (scale - 1)
        h_scale = (curvature * logits**2).sum(0) + PULL
        if method == "temperature":
            step_scale, step_bias = g_scale / h_scale, 0.0
        else:
            g_bias, h_bias = residual.sum(0) + PULL * bias, curvature.sum(0) + PULL
            h_cross = (curvature * logits).sum(0)
            determinant = h_scale * h_bias - h_cross**2
            step_scale = (h_bias * g_scale - h_cross * g_bias) / determinant
            step_bias = (h_scale * g_bias - h_cross * g_scale) / determinant
        scale = np.where(fitted, np.clip(scale - step_scale, 0.05, 20.0), 1.0)
        bias = np.where(fitted, np.clip(bias - step_bias, -20.0, 20.0), 0.0)
    return Calibration(method, scale, bias, fitted)


def expected_calibration_error(
    probabilities: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray | None,
    hierarchy: Hierarchy,
    bins: int = 10,
) -> float:
    """ECE over the known entries of evaluated nodes, pooled: sum over ``bins`` equal-width probability
    bins of (share of entries) x |mean probability - share positive|."""
    scores, truth = _pooled(probabilities, targets, mask, hierarchy)
    which = np.minimum((scores * bins).astype(int), bins - 1)
    total = 0.0
    for index in range(bins):
        chosen = which == index
        if chosen.any():
            total += chosen.mean() * abs(scores[chosen].mean() - truth[chosen].mean())
    return float(total)


def _pooled(probabilities, targets, mask, hierarchy: Hierarchy) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(probabilities, dtype=np.float64)
    known = np.ones(scores.shape, dtype=bool) if mask is None else np.asarray(mask) > 0.5
    known &= hierarchy.evaluated[None, :]
    return scores[known], (np.asarray(targets) > 0.5)[known].astype(np.float64)


def reliability_diagram(path: Path, curves: dict[str, tuple], hierarchy: Hierarchy, bins: int = 10) -> Path:
    """A PNG of the share of positives against the mean probability per bin, one line per
    ``{name: (probabilities, targets, mask)}``, with each curve's ECE in its label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.plot([0, 1], [0, 1], color="0.7", linestyle=":", label="perfectly calibrated")
    for name, (probabilities, targets, mask) in curves.items():
        scores, truth = _pooled(probabilities, targets, mask, hierarchy)
        which = np.minimum((scores * bins).astype(int), bins - 1)
        used = [i for i in range(bins) if (which == i).any()]
        x = [scores[which == i].mean() for i in used]
        y = [truth[which == i].mean() for i in used]
        ece = expected_calibration_error(probabilities, targets, mask, hierarchy, bins)
        axes.plot(x, y, marker="o", label=f"{name} (ECE {ece:.3f})")
    axes.set(xlabel="mean predicted probability", ylabel="share positive", xlim=(0, 1), ylim=(0, 1))
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
