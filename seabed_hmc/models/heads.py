"""The batched ensemble of hierarchical heads (METHOD.md section 7).

H heads, each an MLP on the encoder's pooled features::

    Linear(F, hidden) → ReLU → Dropout → [Linear(hidden, hidden) → ReLU → Dropout] × (layers − 1)
    → Linear(hidden, N)

run as ONE batched computation: the weights of all heads are stacked (head, in, out) and every layer
is one ``torch.baddbmm``; the shared input of the first layer is broadcast to the heads as a view.
(An earlier version multiplied by the first weights permuted to (in, head*out), which copied the
whole first layer and its gradient every step: 1.5x slower with 20 heads of 1280 units;
scripts/bench_training.py.)
Heads differ by their random initialisation and their dropout masks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seabed_hmc.constraint import constraint_plan, max_constraint
from seabed_hmc.hierarchy import Hierarchy


class EnsembleHead(nn.Module):
    """H hierarchical MLP heads evaluated together.

    Args:
        in_features: F, the size of the pooled features.
        num_nodes: N, the number of hierarchy nodes.
        heads: H, the ensemble size (1 for ``control``).
        hidden: hidden width (default F, as in METHOD.md; the tabular benchmarks set their own).
        layers: number of hidden layers (default 2).
        dropout: dropout probability after each hidden layer (default 0.7).
    """

    def __init__(
        self,
        in_features: int,
        num_nodes: int,
        heads: int = 20,
        hidden: int | None = None,
        layers: int = 2,
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        if heads < 1 or layers < 1:
            raise ValueError(
                f"need at least one head and one hidden layer, got heads={heads}, layers={layers}"
            )
        hidden = in_features if hidden is None else hidden
        self.in_features, self.num_nodes, self.heads, self.hidden = in_features, num_nodes, heads, hidden
        sizes = [in_features] + [hidden] * layers + [num_nodes]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(heads, fan_in, fan_out))
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(heads, 1, fan_out)) for fan_out in sizes[1:])
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each head initialised like ``nn.Linear``: U(−1/√fan_in, 1/√fan_in), independently."""
        for weight, bias in zip(self.weights, self.biases, strict=True):
            bound = 1 / math.sqrt(weight.shape[1])
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"heads={self.heads}, in_features={self.in_features}, hidden={self.hidden}, "
            f"layers={len(self.weights) - 1}, nodes={self.num_nodes}"
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (batch, F) → logits (heads, batch, nodes)."""
        # The shared input as a (heads, batch, F) view: no copy of the input, the weights or their grads.
        x = features.unsqueeze(0).expand(self.heads, -1, -1)
        last = len(self.weights) - 1
        for index in range(len(self.weights)):
            x = torch.baddbmm(self.biases[index], x, self.weights[index])
            if index < last:
                x = self.dropout(torch.relu(x))
        return x


def ensemble_probabilities(logits: torch.Tensor, hierarchy: Hierarchy) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction of an ensemble: the mean over heads of the constrained probabilities.

    Args:
        logits: (heads, batch, nodes).

    Returns:
        ``(mean, spread)``, each (batch, nodes): the coherent ensemble probability and the standard
        deviation across heads of the constrained probabilities (0 for a single head), a free
        per-node uncertainty.
    """
    constrained = torch.sigmoid(max_constraint(logits, constraint_plan(hierarchy)))
    mean = constrained.mean(dim=0)
    spread = constrained.std(dim=0, unbiased=True) if logits.shape[0] > 1 else torch.zeros_like(mean)
    return mean, spread
