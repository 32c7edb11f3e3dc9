"""One run of the HMC benchmark protocol: a dataset, a method, a seed -> one row of results.

Methods are named configurations of the one objective (METHOD.md section 6) plus the HROS
oversampling baseline.  ``_neg`` variants put the node weights on negative targets, as the original
code did (``weight_target="negative"``); the others follow the method's description.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seabed_hmc.engine.evaluation import SplitScore, save_scores
from seabed_hmc.losses import PRESETS, build_loss, node_frequencies
from seabed_hmc.metrics import evaluate_predictions
from seabed_hmc_studies.hmc.datasets import FIT_PARTS, HMCDataset, prepare_hmc_fit_splits, prepare_hmc_splits
from seabed_hmc_studies.hmc.oversampling import hros_indices
from seabed_hmc_studies.hmc.tabular import TabularCheckpoint, TabularSettings, predict_tabular, train_tabular


@dataclass(frozen=True)
class Method:
    """A benchmark method: a loss preset, its uncertainty mode and weight target, and oversampling."""

    name: str
    preset: str
    uncertainty: str | None = None
    weight_target: str = "positive"
    oversample: bool = False


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("control", "control"),
        Method("flat", "flat"),
        Method("hros", "control", oversample=True),
        Method("imbalance", "imbalance"),
        Method("imbalance_neg", "imbalance", weight_target="negative"),
        Method("focal_bbma", "focal", "bbma"),
        Method("rare_node_bbma", "rare_node", "bbma"),
        Method("rare_node_gmu", "rare_node", "gmu"),
        Method("rare_node_bbma_neg", "rare_node", "bbma", weight_target="negative"),
        Method("rare_node_gmu_neg", "rare_node", "gmu", weight_target="negative"),
    )
}


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}") from None


def heads_for(method_name: str, settings: dict[str, Any]) -> int:
    """Ensemble size of a method: 1 for single-head presets, else the configured ``heads``."""
    return 1 if PRESETS[method(method_name).preset].heads == 1 else int(settings["heads"])


def tabular_settings(settings: dict[str, Any], heads: int) -> TabularSettings:
    """The tabular trainer's settings from a dataset's merged config entries."""
    return TabularSettings(
        hidden=int(settings["hidden"]),
        epochs=int(settings["epochs"]),
        learning_rate=float(settings["learning_rate"]),
        heads=heads,
        batch_size=int(settings["batch_size"]),
        weight_decay=float(settings["weight_decay"]),
        dropout=float(settings["dropout"]),
        layers=int(settings["layers"]),
        decay_per_head=bool(settings.get("decay_per_head", TabularSettings.decay_per_head)),
    )


def _flat_metrics(scores: dict[str, Any]) -> dict[str, Any]:
    """The metrics as CSV columns: per-depth recalls folded into one JSON column each."""
    row = {key: value for key, value in scores.items() if "_depth_" not in key}
    for prefix in ("recall_depth_", "recall_supported_depth_"):
        by_depth = {key.removeprefix(prefix): v for key, v in scores.items() if key.startswith(prefix)}
        row[prefix.replace("_depth_", "_by_depth")] = json.dumps(by_depth)
    return row


def _splits(dataset: HMCDataset, fit_part: str):
    """The preprocessed train and test arrays, and the held-out fit part (None for the published
    protocol, ``fit_part="none"``)."""
    if fit_part not in FIT_PARTS:
        raise ValueError(f"fit_part {fit_part!r} does not exist; choose from {', '.join(FIT_PARTS)}")
    if fit_part == "held_out":
        return prepare_hmc_fit_splits(dataset)
    return prepare_hmc_splits(dataset), None


def _method_columns(spec, tabular: TabularSettings) -> dict[str, Any]:
    """How the method ran: its uncertainty mode, weight target, heads, epochs and weight decay."""
    return {
        "uncertainty": spec.uncertainty or "",
        "weight_target": spec.weight_target if PRESETS[spec.preset].node_weights else "",
        "heads": tabular.heads,
        "epochs": tabular.epochs,
        "optimizer_weight_decay": tabular.optimizer_weight_decay,
    }


def _fingerprint(name: str, x_train, y_train, method_name: str, seed: int, settings: dict) -> str:
    """What a saved training state must match to be resumed: the data's shape, the method, the seed and
    every setting."""
    record = {
        "dataset": name,
        "shape": [list(x_train.shape), list(y_train.shape)],
        "method": method_name,
        "seed": seed,
        "settings": {key: settings[key] for key in sorted(settings)},
    }
    return json.dumps(record, default=str)


def _store(path: Path, scored: dict, train_counts, hierarchy) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_scores(path, scored, train_counts, hierarchy)


def run_one(
    dataset: HMCDataset,
    method_name: str,
    seed: int,
    settings: dict[str, Any],
    progress: bool = False,
    checkpoint: Path | None = None,
    checkpoint_every_s: float = 600.0,
    scores: Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train and evaluate one (dataset, method, seed); returns a flat, CSV-ready row.

    ``settings`` are the merged defaults and per-dataset entries of ``configs/hmc_benchmarks.yaml``.
    ``checkpoint``: a file where training saves its state every ``checkpoint_every_s`` seconds and
    from which a killed run resumes (bit for bit); the caller removes it once the row is safe.  The
    row's ``seconds`` then add the training time of the earlier pieces, and ``resumed_from_epoch``
    says where the last piece began (0: one piece).

    ``settings["fit_part"]``: ``"none"`` (the published protocol) or ``"held_out"``: a labelled part is
    kept out of training (:func:`~seabed_hmc_studies.hmc.datasets.prepare_hmc_fit_splits`) so a
    decision rule can be fit on it.  ``scores``: a file where the test probabilities (and the fit
    part's, when there is one) are stored, quantised and compressed
    (:func:`~seabed_hmc.engine.evaluation.save_scores`), so decision rules and metrics are re-scored
    without training again.  ``device``: where the heads train
    (``"cuda"`` on a GPU machine; the shuffle stays on the CPU, so the batches are the same).
    """
    spec = method(method_name)
    start = time.perf_counter()
    splits, fit = _splits(dataset, settings.get("fit_part", "none"))
    x_train, y_train, mask_train, x_test, y_test, mask_test = splits
    hierarchy = dataset.hierarchy
    heads = heads_for(method_name, settings)
    loss_fn = build_loss(
        spec.preset,
        hierarchy,
        y_train,
        mask_train,
        uncertainty=spec.uncertainty,
        weight_target=spec.weight_target,
        **{key: settings[key] for key in ("omega", "frequency", "focal_min", "k")},
    )
    indices = None
    if spec.oversample:
        indices = hros_indices(y_train.numpy(), hierarchy, budget=settings["hros_budget"], seed=seed)
    tabular = tabular_settings(settings, heads)
    saver = None
    if checkpoint is not None:
        fingerprint = _fingerprint(dataset.name, x_train, y_train, spec.name, seed, settings)
        saver = TabularCheckpoint(checkpoint, fingerprint, every_s=checkpoint_every_s)
    model = train_tabular(
        x_train, y_train, mask_train, loss_fn, tabular, seed, indices, progress, saver, device=device
    )
    probabilities, _ = predict_tabular(model, x_test, hierarchy)
    # rare nodes are chosen from the ORIGINAL training split, the same for every method
    train_counts, _ = node_frequencies(hierarchy, y_train, mask_train)
    if scores is not None:
        scored = {"test": SplitScore({}, probabilities, y_test, mask_test)}
        if fit is not None:  # the held-out part a rule is fit on, as "val"
            scored["val"] = SplitScore({}, predict_tabular(model, fit.x, hierarchy)[0], fit.y, fit.mask)
        _store(Path(scores), scored, train_counts, hierarchy)
    scores = evaluate_predictions(probabilities, y_test, mask_test, hierarchy, train_counts=train_counts)
    row = {
        "dataset": dataset.name,
        "method": spec.name,
        "seed": seed,
        **_method_columns(spec, tabular),
        "train_samples": len(x_train) if indices is None else len(indices),
        "test_samples": len(x_test),
        "evaluated_nodes": int(hierarchy.evaluated.sum()),
        "fit_part": fit.source if fit is not None else "",
        "fit_samples": len(fit.x) if fit is not None else 0,
        "device": str(device),
    }
    row.update(_flat_metrics(scores))
    earlier = saver.seconds_before if saver is not None else 0.0
    row["seconds"] = round(time.perf_counter() - start + earlier, 2)
    row["resumed_from_epoch"] = saver.resumed_epoch if saver is not None else 0
    return row
