"""Training and prediction of hierarchical heads on tabular features (the HMC benchmarks).

The published C-HMCNN protocol: the ensemble head on standardised features (no encoder), Adam, a
fixed number of epochs, mini-batches drawn by a seeded shuffle each epoch.  One function trains, one
predicts; the loss is any :class:`~seabed_hmc.losses.RareNodeFocalLoss`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm  # not tqdm.auto: it iterates a DataLoader twice (two worker sets)

from seabed_hmc.engine.allocator import keep_freed_memory
from seabed_hmc.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.losses import RareNodeFocalLoss
from seabed_hmc.models import EnsembleHead, ensemble_probabilities

log = logging.getLogger("seabed_hmc")


@dataclass(frozen=True)
class TabularSettings:
    """Optimisation settings of one tabular run (the published defaults where they exist).

    ``weight_decay`` is the L2 penalty of one head, as in the published single-head protocol.  The loss
    is a mean over heads, so each head's loss gradient is 1/H of what it would be alone, while Adam's
    coupled L2 term is not: with ``decay_per_head`` (the default) the optimizer gets weight_decay / H,
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
    def optimizer_weight_decay(self) -> float:
        """The L2 coefficient handed to Adam."""
        return self.weight_decay / self.heads if self.decay_per_head else self.weight_decay


@dataclass
class TabularCheckpoint:
    """Where and how often :func:`train_tabular` saves its state, so a killed run resumes.

    The file holds the model, the optimizer, both random streams (dropout and the shuffle) and the
    epoch, so a resumed run is the same, bit for bit, as one that was never stopped.  ``fingerprint``
    names everything else the run depends on (data, method, settings); a file whose fingerprint
    differs is not resumed from (it is reported and replaced).  ``every_s`` is the least time between
    saves (each save follows a finished epoch); 0 saves after every epoch.  After training,
    ``seconds_before`` is the training time spent by earlier, interrupted pieces of this run and
    ``resumed_epoch`` the epoch it went on from (0: started afresh).
    """

    path: Path
    fingerprint: str
    every_s: float = 600.0
    seconds_before: float = field(default=0.0, init=False)
    resumed_epoch: int = field(default=0, init=False)

    def load(self) -> dict | None:
        """The saved state of this run, or None (no file, a damaged one, or another run's: reported)."""
        if not Path(self.path).exists():
            return None
        try:
            state = load_checkpoint(self.path)
        except CheckpointError as error:
            log.warning("%s; starting afresh", error)
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.warning(
                "checkpoint %s is of a different run (fingerprint differs); starting afresh", self.path
            )
            return None
        return state

    def resume(self, model, optimizer, order: torch.Generator) -> int:
        """Restore an unfinished piece of this run into ``model``, ``optimizer``, the global and the
        shuffle generators; the epoch to start at (0 when there is nothing to resume)."""
        state = self.load()
        if state is None:
            return 0
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(
            state["optimizer"] if "optimizer" in state else state["optimiser"]
        )  # older files
        torch.set_rng_state(state["torch_rng"])
        order.set_state(state["order_rng"])
        self.seconds_before = float(state["seconds"])
        self.resumed_epoch = int(state["epoch"])
        return self.resumed_epoch

    def save(self, state: dict) -> None:
        save_checkpoint({**state, "fingerprint": self.fingerprint}, self.path)


def train_tabular(
    features: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None,
    loss_fn: RareNodeFocalLoss,
    settings: TabularSettings,
    seed: int,
    sample_indices: np.ndarray | None = None,
    progress: bool = False,
    checkpoint: TabularCheckpoint | None = None,
    device: str | torch.device = "cpu",
) -> EnsembleHead:
    """Train an :class:`EnsembleHead` on (samples, F) features and (samples, nodes) targets.

    Args:
        mask: (samples, nodes) known entries, or None when every label is complete.
        sample_indices: the training rows to draw from, repeats allowed (oversampling); all rows
            once by default.
        seed: seeds the initialisation, the shuffles and dropout.
        checkpoint: save the training state there now and then, and resume from it when it holds
            an unfinished piece of this same run (see :class:`TabularCheckpoint`).
        device: where the model, data and loss live.  The shuffle's generator stays on the CPU, so
            the batches do not depend on the device; dropout draws from the device's generator (a
            resumed CUDA run is therefore not bit for bit the unbroken one).
    """
    started = time.perf_counter()
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
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=settings.learning_rate,
        weight_decay=settings.optimizer_weight_decay,
        fused=True,
    )
    device = torch.device(device)
    model.to(device)
    loss_fn = loss_fn.to(device)
    features, targets = features.to(device), targets.to(device)
    mask = None if mask is None else mask.to(device)
    order = torch.Generator().manual_seed(seed)
    rows = torch.arange(len(features)) if sample_indices is None else torch.as_tensor(sample_indices)
    first_epoch = checkpoint.resume(model, optimizer, order) if checkpoint is not None else 0
    last_save = time.perf_counter()
    model.train()
    epochs = tqdm(range(first_epoch, settings.epochs), desc="epochs", disable=not progress, leave=False)
    for epoch in epochs:
        shuffled = rows[torch.randperm(len(rows), generator=order)].to(device)
        for batch in shuffled.split(settings.batch_size):
            optimizer.zero_grad(set_to_none=True)
            logits = model(features[batch])
            loss = loss_fn(logits, targets[batch], None if mask is None else mask[batch])
            loss.backward()
            optimizer.step()
        now = time.perf_counter()
        if checkpoint is not None and epoch + 1 < settings.epochs and now - last_save >= checkpoint.every_s:
            checkpoint.save(
                {
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "order_rng": order.get_state(),
                    "seconds": checkpoint.seconds_before + now - started,
                }
            )
            last_save = time.perf_counter()
    return model.eval()


@torch.no_grad()
def predict_tabular(
    model: EnsembleHead, features: torch.Tensor, hierarchy: Hierarchy, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coherent ensemble probabilities and the spread across heads, each (samples, nodes), on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    means, spreads = [], []
    for chunk in features.split(batch_size):
        mean, spread = ensemble_probabilities(model(chunk.to(device)), hierarchy)
        means.append(mean.cpu())
        spreads.append(spread.cpu())
    return torch.cat(means), torch.cat(spreads)
