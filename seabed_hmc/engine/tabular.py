"""Training and prediction of hierarchical heads on tabular features (the HMC benchmarks).

The published C-HMCNN protocol: the ensemble head on standardised features (no encoder), Adam, a
fixed number of epochs, mini-batches drawn by a seeded shuffle each epoch.  One function trains, one
predicts; the loss is any :class:`~seabed_hmc.losses.RareNodeFocalLoss`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm  # not tqdm.auto: it iterates a DataLoader twice (two worker sets)

from seabed_hmc.engine._memory import keep_freed_memory
from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.losses import RareNodeFocalLoss
from seabed_hmc.models import EnsembleHead, ensemble_probabilities


@dataclass(frozen=True)
class TabularSettings:
    """Optimisation settings of one tabular run (the published defaults where they exist).

    ``weight_decay`` is the L2 penalty of one head, as in the published single-head protocol.  The loss
    is a mean over heads, so each head's loss gradient is 1/H of what it would be alone, while Adam's
    coupled L2 term is not: with ``decay_per_head`` (the default) the optimiser gets weight_decay / H,
    which gives every head of an H-head ensemble the same loss-to-decay balance as a single-head run.
    Without it an ensemble is regularised H times harder than ``control`` (Adam is otherwise invariant
    to the loss scale); docs/results/hmc.md measures what that does.
    """

    hidden: int
    epochs: int
    learning_rate: float
    heads: int = 1
    batch_size: int = 4
    weight_decay: float = 1e-5
    dropout: float = 0.7
    layers: int = 2
    decay_per_head: bool = True

    @property
    def optimiser_weight_decay(self) -> float:
        """The L2 coefficient handed to Adam."""
        return self.weight_decay / self.heads if self.decay_per_head else self.weight_decay


def train_tabular(
    features: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None,
    loss_fn: RareNodeFocalLoss,
    settings: TabularSettings,
    seed: int,
    sample_indices: np.ndarray | None = None,
    progress: bool = False,
) -> EnsembleHead:
    """Train an :class:`EnsembleHead` on (samples, F) features and (samples, nodes) targets.

    Args:
        mask: (samples, nodes) known entries, or None when every label is complete.
        sample_indices: the training rows to draw from, repeats allowed (oversampling); all rows
            once by default.
        seed: seeds the initialisation, the shuffles and dropout.
    """
    keep_freed_memory()  # small batches: avoid page-faulting gradient buffers back in every step
    torch.manual_seed(seed)
    model = EnsembleHead(
        features.shape[1],
        targets.shape[1],
        heads=settings.heads,
        hidden=settings.hidden,
        layers=settings.layers,
        dropout=settings.dropout,
    )
    optimiser = torch.optim.Adam(
        model.parameters(),
        lr=settings.learning_rate,
        weight_decay=settings.optimiser_weight_decay,
        fused=True,
    )
    order = torch.Generator().manual_seed(seed)
    rows = torch.arange(len(features)) if sample_indices is None else torch.as_tensor(sample_indices)
    model.train()
    epochs = tqdm(range(settings.epochs), desc="epochs", disable=not progress, leave=False)
    for _ in epochs:
        for batch in rows[torch.randperm(len(rows), generator=order)].split(settings.batch_size):
            optimiser.zero_grad(set_to_none=True)
            logits = model(features[batch])
            loss = loss_fn(logits, targets[batch], None if mask is None else mask[batch])
            loss.backward()
            optimiser.step()
    return model.eval()


@torch.no_grad()
def predict_tabular(
    model: EnsembleHead, features: torch.Tensor, hierarchy: Hierarchy, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coherent ensemble probabilities and the spread across heads, each (samples, nodes)."""
    model.eval()
    means, spreads = [], []
    for chunk in features.split(batch_size):
        mean, spread = ensemble_probabilities(model(chunk), hierarchy)
        means.append(mean)
        spreads.append(spread)
    return torch.cat(means), torch.cat(spreads)
