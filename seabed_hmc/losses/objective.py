"""The rare-node focal objective (METHOD.md sections 3-6) and its named configurations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seabed_hmc.constraint import constraint_plan, mcloss_inputs
from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.losses.node_weights import node_weights
from seabed_hmc.losses.uncertainty import MULTI_HEAD_MODES, UNCERTAINTY_MODES, uncertainty

WEIGHT_TARGETS = ("positive", "negative")
REDUCTIONS = ("mean", "sum")


class RareNodeFocalLoss(nn.Module):
    """MCLoss × node weights × focal factor from ensemble uncertainty, over evaluated known nodes.

        L = reduce_{h, b, i} m_bi · w_bi · (γ + u_bi^k) · BCE(z^(h)_bi, y_bi)

    Args:
        hierarchy: the label hierarchy; non-evaluated nodes never enter the loss.
        weights: (nodes,) rare-node weights w⁺ (see :func:`node_weights`), or None for no weighting.
        weight_target: ``"positive"`` puts w⁺ on positive targets (the method as described);
            ``"negative"`` puts it on negative targets (what the original code did).
        uncertainty: a mode of :mod:`seabed_hmc.losses.uncertainty`, or None for no focal factor.
        focal_min: γ, the floor of the focal factor.
        k: exponent on u (1 for images, 2 in the tabular runs).
        reduction: ``"mean"`` over heads and known evaluated entries, or ``"sum"`` (original code).
        constrained: False gives flat BCE on the raw logits (the no-constraint baseline).

    Called as ``loss(logits, targets, mask=None)`` with logits (heads, batch, nodes) and targets/mask
    (batch, nodes).  A 2-D logits tensor is taken as a single head.
    """

    def __init__(
        self,
        hierarchy: Hierarchy,
        weights: torch.Tensor | np.ndarray | None = None,
        weight_target: str = "positive",
        uncertainty: str | None = "bbma",
        focal_min: float = 0.25,
        k: float = 1.0,
        reduction: str = "mean",
        constrained: bool = True,
    ) -> None:
        super().__init__()
        if weight_target not in WEIGHT_TARGETS:
            raise ValueError(f"weight_target must be one of {WEIGHT_TARGETS}, got {weight_target!r}")
        if uncertainty is not None and uncertainty not in UNCERTAINTY_MODES:
            raise ValueError(
                f"unknown uncertainty mode {uncertainty!r}; choose from {sorted(UNCERTAINTY_MODES)}"
            )
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.hierarchy = hierarchy
        self.plan = constraint_plan(hierarchy)
        self.weight_target = weight_target
        self.uncertainty = uncertainty
        self.focal_min = float(focal_min)
        self.k = float(k)
        self.reduction = reduction
        self.constrained = constrained
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=torch.float32)
            if weights.shape != (len(hierarchy),):
                raise ValueError(f"weights must have shape ({len(hierarchy)},), got {tuple(weights.shape)}")
        self.register_buffer("weights", weights)
        self.register_buffer("evaluated", torch.as_tensor(hierarchy.evaluated, dtype=torch.float32))

    def extra_repr(self) -> str:
        return (
            f"nodes={len(self.hierarchy)}, weighted={self.weights is not None}, "
            f"weight_target={self.weight_target!r}, uncertainty={self.uncertainty!r}, "
            f"focal_min={self.focal_min}, k={self.k}, reduction={self.reduction!r}"
        )

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if logits.dim() == 2:
            logits = logits.unsqueeze(0)
        if logits.dim() != 3 or logits.shape[1:] != targets.shape:
            raise ValueError(
                f"logits must be (heads, batch, nodes) matching targets (batch, nodes); "
                f"got logits {tuple(logits.shape)} and targets {tuple(targets.shape)}"
            )
        heads = logits.shape[0]
        if self.uncertainty in MULTI_HEAD_MODES and heads < 2:
            raise ValueError(f"uncertainty mode {self.uncertainty!r} needs at least 2 heads, got {heads}")
        targets = targets.to(logits.dtype)
        known = self.evaluated.to(logits.dtype).expand_as(targets)
        if mask is not None:
            known = known * mask.to(logits.dtype)

        z = mcloss_inputs(logits, targets, self.plan) if self.constrained else logits
        per_entry = F.binary_cross_entropy_with_logits(z, targets.expand_as(z), reduction="none")

        factor = known
        if self.weights is not None:
            weighted = targets if self.weight_target == "positive" else 1 - targets
            factor = factor * torch.where(weighted > 0.5, self.weights.to(logits.dtype), 1.0)
        if self.uncertainty is not None:
            u = uncertainty(torch.sigmoid(logits.detach()), self.uncertainty)
            factor = factor * (self.focal_min + u.pow(self.k))
        total = (per_entry * factor).sum()
        if self.reduction == "sum":
            return total
        return total / (heads * known.sum().clamp(min=1))


@dataclass(frozen=True)
class LossPreset:
    """A named configuration of the one objective (METHOD.md section 6)."""

    name: str
    heads: int
    node_weights: bool
    uncertainty: str | None
    constrained: bool = True
    description: str = ""


PRESETS: dict[str, LossPreset] = {
    preset.name: preset
    for preset in (
        LossPreset(
            "control", 1, False, None, description="C-HMCNN MCLoss, one head, no weights, no focal factor"
        ),
        LossPreset("imbalance", 1, True, None, description="MCLoss with rare-node weights only"),
        LossPreset("focal", 20, False, "bbma", description="MCLoss with the focal factor only (ensemble)"),
        LossPreset(
            "rare_node", 20, True, "bbma", description="the method: node weights x focal factor, ensemble"
        ),
        LossPreset(
            "flat", 1, False, None, constrained=False, description="flat BCE baseline, no max-constraint"
        ),
    )
}


def build_loss(
    name: str,
    hierarchy: Hierarchy,
    train_targets: torch.Tensor | np.ndarray | None = None,
    train_mask: torch.Tensor | np.ndarray | None = None,
    *,
    uncertainty: str | None = None,
    weight_target: str = "positive",
    omega: float = 0.25,
    frequency: str = "exact",
    focal_min: float = 0.25,
    k: float = 1.0,
    reduction: str = "mean",
) -> RareNodeFocalLoss:
    """Build the objective of a named configuration (``control``, ``imbalance``, ``focal``,
    ``rare_node``, ``flat``).  Node weights are computed here from the training split, so
    configurations that use them need ``train_targets``.  ``uncertainty`` overrides the preset's
    mode for ``focal`` and ``rare_node`` (e.g. ``"gmu"``).  The number of heads to give the model is
    ``PRESETS[name].heads``.
    """
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown loss configuration {name!r}; choose one of {sorted(PRESETS)}") from None
    weights = None
    if preset.node_weights:
        if train_targets is None:
            raise ValueError(f"loss configuration {name!r} uses node weights: pass the training targets")
        weights = node_weights(hierarchy, train_targets, train_mask, omega=omega, frequency=frequency)
    mode = preset.uncertainty
    if mode is not None and uncertainty is not None:
        mode = uncertainty
    return RareNodeFocalLoss(
        hierarchy,
        weights=weights,
        weight_target=weight_target,
        uncertainty=mode,
        focal_min=focal_min,
        k=k,
        reduction=reduction,
        constrained=preset.constrained,
    )
