"""One evaluation path: what ``train`` reports for its test split and what ``evaluate`` reports for the
same checkpoint and rows come from these functions, on the same inputs, so they are identical.

The inputs of a split are either cached features (a frozen encoder with ``train.feature_cache``: the
features of the unfolded encoder, read from or written to the shared :class:`FeatureCache`) or an
image dataset run through the whole model.  An inference model (:func:`inference_model`) is the one
both paths use on images: rebuilt from the checkpoint's weights, BatchNorm folded into the
convolutions, weights channels-last when the run trained that way, the run's bf16 setting.  Images
are batched with the run's batch size and the run's evaluation transform.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from seabed_hmc.atomic import atomic_path
from seabed_hmc.config import RunConfig
from seabed_hmc.data.images import ImageDataset, collate_skip_bad
from seabed_hmc.decisions import Decision
from seabed_hmc.engine.device import default_batch, device_of, loader_workers, to_device
from seabed_hmc.engine.features import FeatureCache
from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.metrics import decision_metrics, evaluate_predictions, node_scores
from seabed_hmc.models.classifier import HierarchicalClassifier
from seabed_hmc.models.heads import ensemble_probabilities

log = logging.getLogger("seabed_hmc")


@dataclass
class Inputs:
    """One split as the loop consumes it: cached features (views, n, F) or an image dataset."""

    targets: torch.Tensor
    mask: torch.Tensor
    features: torch.Tensor | None = None
    images: ImageDataset | None = None
    rows: np.ndarray | None = None  # positions within the split (images that failed are left out)

    def __len__(self) -> int:
        return len(self.targets)

    def select(self, positions: np.ndarray) -> Inputs:
        """The rows at these positions of the split (a training subset); rows whose image failed to
        load are absent from both and stay absent."""
        rows = np.arange(len(self)) if self.rows is None else self.rows
        keep = np.flatnonzero(np.isin(rows, np.asarray(positions)))
        index = torch.from_numpy(keep)
        images = None
        if self.images is not None:
            images = ImageDataset(
                [self.images.paths[i] for i in keep],
                self.images.targets[index],
                self.images.mask[index],
                self.images.transform,
                self.images.max_pixels,
            )
        features = None if self.features is None else self.features[:, index]
        return Inputs(self.targets[index], self.mask[index], features, images, rows[keep])


def default_cache_dir() -> Path:
    """``$SEABED_HMC_CACHE`` or ``$XDG_CACHE_HOME/seabed_hmc/features`` (``~/.cache/...``): shared by all
    runs, which is safe because entries are keyed on everything that changes the features."""
    if os.environ.get("SEABED_HMC_CACHE"):
        return Path(os.environ["SEABED_HMC_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "seabed_hmc" / "features"


def feature_cache(model: HierarchicalClassifier, config: RunConfig) -> FeatureCache | None:
    """The run's feature cache when its encoder is frozen and ``train.feature_cache`` is on, else None."""
    if not (getattr(model.encoder, "frozen", False) and config.train.feature_cache):
        return None
    return FeatureCache(Path(config.train.cache_dir) if config.train.cache_dir else default_cache_dir())


def split_inputs(
    model: HierarchicalClassifier,
    config: RunConfig,
    dataset: ImageDataset,
    cache: FeatureCache | None,
    views: int = 1,
    description: str = "features",
) -> tuple[Inputs, list[tuple[str, str]]]:
    """The inputs of one split, and the images that failed to load while computing features.

    Without a cache: the image dataset itself (failures are found batch by batch later).  With one:
    the encoder's features of ``views`` passes, read from the cache or computed and stored, rows whose
    image failed left out."""
    if cache is None:
        return Inputs(dataset.targets, dataset.mask, images=dataset, rows=np.arange(len(dataset))), []
    features, ok, hit = cache.features(
        model,
        dataset,
        model.encoder.description,
        views=views,
        seed=config.train.seed,
        batch_size=scoring_batch(config, device_of(model)),
        workers=loader_workers(config.data.workers, device_of(model)),
        channels_last=config.train.channels_last,
        progress=config.train.progress,
        description=description,
    )
    log.info("%s: %s for %d images (%d views)", description, "cached" if hit else "computed", len(ok), views)
    bad = [(dataset.paths[i], _failure(dataset, i)) for i in np.flatnonzero(~ok.numpy())]
    kept = np.flatnonzero(ok.numpy())
    targets, mask = dataset.targets, dataset.mask
    if len(kept) < len(ok):
        keep = torch.from_numpy(kept)
        features, targets, mask = features[:, keep], targets[keep], mask[keep]
    return Inputs(targets, mask, features=features, rows=kept), bad


def _failure(dataset: ImageDataset, index: int) -> str:
    """Why an image failed during feature extraction (it is loaded again to ask: failures are few)."""
    item = dataset[index]
    return "failed to load during feature extraction" if item["ok"] else str(item["reason"])


def scoring_batch(config: RunConfig, device: torch.device) -> int:
    """Images per batch when scoring (no gradients): the training batch, or the device's
    :func:`~seabed_hmc.engine.device.default_batch` when larger (32 on the CPU, 256 on a GPU)."""
    return max(config.train.batch_size, default_batch(device))


def eval_loader(dataset: ImageDataset, config: RunConfig, device: torch.device) -> DataLoader:
    """Images in order for scoring on ``device``: :func:`scoring_batch` images per batch, the run's
    loading processes, pinned batches on a GPU."""
    return DataLoader(
        dataset,
        batch_size=scoring_batch(config, device),
        num_workers=loader_workers(config.data.workers, device),
        collate_fn=collate_skip_bad,
        pin_memory=device.type == "cuda",
    )


@torch.no_grad()
def predict_inputs(
    model: HierarchicalClassifier,
    inputs: Inputs,
    config: RunConfig,
    hierarchy: Hierarchy,
    problems: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(probabilities, spread, kept rows) for a split; rows whose image failed are left out (and added
    to ``problems`` when given)."""
    model.eval()
    device = device_of(model)
    if inputs.features is not None:
        means, spreads = [], []
        for part in inputs.features[0].split(4096):  # bounded device memory for large splits
            mean, spread = ensemble_probabilities(model.head(to_device(part, device)), hierarchy)
            means.append(mean.cpu())
            spreads.append(spread.cpu())
        return torch.cat(means), torch.cat(spreads), np.arange(len(inputs))
    means, spreads, rows = [], [], []
    for batch in eval_loader(inputs.images, config, device):
        if problems is not None:
            problems += [
                (inputs.images.paths[i], reason)
                for i, reason in zip(batch.get("bad", []), batch.get("bad_reasons", []), strict=True)
            ]
        if batch["index"].numel() == 0:
            continue
        images = to_device(batch["image"], device)
        if config.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        mean, spread = ensemble_probabilities(model(images), hierarchy)
        means.append(mean.cpu())
        spreads.append(spread.cpu())
        rows.append(batch["index"].numpy())
    if not means:
        empty = torch.zeros(0, len(hierarchy))
        return empty, empty.clone(), np.zeros(0, int)
    return torch.cat(means), torch.cat(spreads), np.concatenate(rows)


def node_report(
    probabilities, targets, mask, hierarchy, train_counts, threshold: float, decision: Decision | None = None
) -> pd.DataFrame:
    """Per node: depth, training positives, support, predicted positives, precision, recall, F1 at the
    fixed ``threshold``; with a ``decision`` also its threshold, where that came from, the positives
    it was fit on, and the same counts and scores under it (``decided_*``)."""
    scores = node_scores(probabilities.numpy() >= threshold, targets, mask, hierarchy)
    frame = pd.DataFrame(
        {
            "node": hierarchy.nodes,
            "depth": hierarchy.depth,
            "evaluated": hierarchy.evaluated,
            "train_positives": np.asarray(train_counts).astype(int),
            "support": scores.support,
            "predicted_positives": scores.predicted_positives,
            "precision": scores.precision,
            "recall": scores.recall,
            "f1": scores.f1,
        }
    )
    if decision is None:
        return frame
    decided = node_scores(decision.predict(probabilities, hierarchy), targets, mask, hierarchy)
    frame["threshold"] = decision.thresholds
    frame["threshold_source"] = decision.sources
    if len(decision.positives):
        frame["fit_positives"] = decision.positives
    frame["decided_predicted_positives"] = decided.predicted_positives
    frame["decided_precision"] = decided.precision
    frame["decided_recall"] = decided.recall
    frame["decided_f1"] = decided.f1
    return frame


@dataclass
class SplitScore:
    """What :func:`score_split` measured: metrics, and the probabilities with their truth."""

    metrics: dict
    probabilities: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def report(
        self, hierarchy: Hierarchy, train_counts, threshold: float, decision: Decision | None = None
    ) -> pd.DataFrame:
        return node_report(
            self.probabilities, self.targets, self.mask, hierarchy, train_counts, threshold, decision
        )

    def decided(self, decision: Decision, hierarchy: Hierarchy, train_counts) -> dict:
        """The decision-dependent metrics under ``decision`` (threshold-free ones do not change)."""
        predicted = decision.predict(self.probabilities, hierarchy)
        metrics = decision_metrics(predicted, self.targets, self.mask, hierarchy, train_counts)
        return {key: (int(v) if isinstance(v, int) else float(v)) for key, v in metrics.items()}


def score_split(
    model: HierarchicalClassifier,
    inputs: Inputs,
    config: RunConfig,
    hierarchy: Hierarchy,
    train_counts,
    problems: list | None = None,
) -> SplitScore:
    """Metrics of one split at the run's threshold, rare nodes defined by ``train_counts``."""
    probabilities, _, kept = predict_inputs(model, inputs, config, hierarchy, problems)
    targets, mask = inputs.targets[kept], inputs.mask[kept]
    metrics = evaluate_predictions(
        probabilities, targets, mask, hierarchy, train_counts, config.train.threshold
    )
    return SplitScore(metrics, probabilities, targets, mask)


SCORES_FILE = "scores.npz"
SCORE_STEPS = 65535  # probabilities are stored as round(p * 65535) in uint16: within 7.7e-6 of the value


def save_scores(path: Path, scored: dict[str, SplitScore], train_counts, hierarchy: Hierarchy) -> None:
    """The splits' probabilities (quantised to uint16), targets and masks, the rare-node counts and the
    hierarchy, compressed: enough to re-score any decision rule or metric without the model
    (:func:`load_scores`).  Written atomically."""
    arrays = {
        "hierarchy": np.asarray(json.dumps(hierarchy.to_dict())),
        "train_counts": np.asarray(train_counts, dtype=np.int64),
    }
    for split, result in scored.items():
        arrays[f"{split}_probabilities"] = np.rint(result.probabilities.numpy() * SCORE_STEPS).astype(
            np.uint16
        )
        arrays[f"{split}_targets"] = result.targets.numpy() > 0.5
        arrays[f"{split}_mask"] = result.mask.numpy() > 0.5
    with atomic_path(path, suffix=".npz") as temporary:
        np.savez_compressed(temporary, **arrays)


def load_scores(path: Path) -> dict:
    """{split: (probabilities float64, targets, mask)}, ``train_counts`` and ``hierarchy`` from
    :func:`save_scores`' file."""
    with np.load(path, allow_pickle=False) as saved:
        loaded = {"train_counts": saved["train_counts"]}
        if "hierarchy" in saved:  # files from before the hierarchy was stored have node names only
            loaded["hierarchy"] = Hierarchy.from_dict(json.loads(str(saved["hierarchy"])), source=str(path))
        for split in ("val", "test"):
            if f"{split}_probabilities" in saved:
                loaded[split] = (
                    saved[f"{split}_probabilities"].astype(np.float64) / SCORE_STEPS,
                    saved[f"{split}_targets"],
                    saved[f"{split}_mask"],
                )
    return loaded
