"""``evaluate`` and ``predict`` from a checkpoint alone.

``predict`` streams: rows are written to the CSV batch by batch, so memory does not grow with the
number of images.  An image that cannot be read gets a row with its error and no prediction: it is
reported, never silently dropped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm  # not tqdm.auto: it iterates a DataLoader twice (two worker sets)

from seabed_hmc.atomic import atomic_path, write_text_atomic
from seabed_hmc.config import SPLIT_CHOICES, DecisionConfig, RunConfig
from seabed_hmc.data.images import ImageDataset
from seabed_hmc.data.manifest import read_manifest
from seabed_hmc.decisions import (
    ABSTAIN,
    Decision,
    fit_configured,
    fixed_decision,
    outcomes,
    stored_decision,
)
from seabed_hmc.engine.checkpoint import ModelCheckpoint, read_model, write_model
from seabed_hmc.engine.data_and_model import inference_model, manifest_splits, transforms
from seabed_hmc.engine.device import device_of, resolve_device, to_device
from seabed_hmc.engine.evaluation import eval_loader, feature_cache, predict_inputs, score_split, split_inputs
from seabed_hmc.engine.features import FeatureCache
from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.models.classifier import HierarchicalClassifier
from seabed_hmc.models.heads import ensemble_probabilities
from seabed_hmc.remedies import option, remedies

log = logging.getLogger("seabed_hmc")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}


TRUE_LABELS = "true_labels"  # the manifest's labels in predict's output


def load_for_inference(
    checkpoint: str | Path, batch_size: int | None = None, workers: int | None = None
) -> tuple[HierarchicalClassifier, Hierarchy, ModelCheckpoint, RunConfig, FeatureCache | None]:
    """Model, hierarchy, checkpoint record, the run's config and its feature cache (a frozen encoder
    with ``train.feature_cache``; its BatchNorm is then left unfolded, as when the features were
    first computed).  ``batch_size`` and ``workers`` override the run's; the run's batch size
    reproduces its numbers exactly."""
    record = read_model(checkpoint, mmap=True)  # the optimizer's state is never read from disk
    hierarchy = record.built_hierarchy(str(checkpoint))
    config = record.run_config(str(checkpoint))
    config.train.progress = False
    if batch_size:
        config.train.batch_size = batch_size
    if workers is not None:
        config.data.workers = workers
    cached = bool(config.encoder.freeze and config.train.feature_cache)
    model = inference_model(config, hierarchy, record.model, fold=not cached, norm=record.normalisation)
    return model, hierarchy, record, config, feature_cache(model, config)


def resolve_decision(
    spec: str | None,
    record: ModelCheckpoint,
    hierarchy: Hierarchy,
    checkpoint: str | Path,
    threshold: float | None = None,
) -> Decision:
    """The decision rule to predict with: ``"checkpoint"`` (the one stored with the model; fixed 0.5
    for checkpoints from before decisions), ``"fixed"`` (0.5, or ``threshold``), or a file: a JSON
    decision record or another checkpoint (``seabed-hmc calibrate --out``) whose rule to use.  A
    ``threshold`` alone means a fixed rule at that threshold."""
    if threshold is not None and spec in (None, "fixed"):
        return fixed_decision(hierarchy, threshold)
    if spec in (None, "checkpoint"):
        return stored_decision(record.decision, hierarchy, str(checkpoint))
    if spec == "fixed":
        return fixed_decision(hierarchy)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"decision {spec!r} is neither fixed, checkpoint nor an existing file (a .json decision record "
            "or a .pt checkpoint written by seabed-hmc calibrate)"
        )
    if path.suffix.lower() == ".json":
        return Decision.from_record(json.loads(path.read_text()), hierarchy, str(path))
    other = read_model(path, mmap=True)
    if other.decision is None:
        raise ValueError(
            f"checkpoint {path} stores no decision rule (no rule was fit on it); "
            "use --decision fixed, or refit one with seabed-hmc calibrate"
        )
    return Decision.from_record(other.decision, hierarchy, str(path))


def score_rows(
    model, config: RunConfig, record: ModelCheckpoint, cache, hierarchy, table, rows, description: str
):
    """``(SplitScore, problems)``: the ``rows`` of an image table scored the way ``train`` scores its
    splits (the run's evaluation transform, the feature cache of a frozen encoder, its rare nodes)."""
    _, eval_transform = transforms(config, record.normalisation, device_of(model))
    paths = table.frame["image"].iloc[rows].tolist()
    dataset = ImageDataset(paths, table.targets[rows], table.mask[rows], eval_transform)
    inputs, problems = split_inputs(model, config, dataset, cache, description=description)
    return score_split(model, inputs, config, hierarchy, record.reference_counts(), problems), problems


def select_split(table, split: str, source: str | Path) -> tuple[np.ndarray, str]:
    """The rows to score and a phrase saying which: the rows of ``split`` (``test``, ``val``,
    ``train``) when the manifest has a split column, every row for ``all`` or when it has none."""
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split must be one of {list(SPLIT_CHOICES)}, got {split!r}")
    splits = manifest_splits(table)
    if split == "all":
        return np.arange(len(table)), f"all {len(table)} rows"
    if splits is None:
        return np.arange(len(table)), f"all {len(table)} rows (the manifest has no split column)"
    rows = splits[split]
    if len(rows) == 0:
        counts = ", ".join(f"{name} {len(found)}" for name, found in splits.items())
        raise ValueError(
            f"{source} has no rows with split {split!r} (rows per split: {counts}); "
            + remedies(option("split", "val", "(or test, train, all)"), "label some rows " + repr(split))
        )
    return rows, f"{len(rows)} rows of split {split!r}"


@torch.no_grad()
def evaluate_checkpoint(
    checkpoint: str | Path,
    manifest: str | Path,
    out: str | Path | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    device: str = "auto",
    split: str = "test",
    root: str | Path | None = None,
    allow_outside_root: bool = False,
    columns: dict | None = None,
    decision: str | None = None,
) -> dict:
    """Metrics of a checkpoint on the ``split`` rows of a labelled manifest (:func:`select_split`),
    computed as ``train`` computed its own (:mod:`seabed_hmc.engine.evaluation`): for the run's own
    test rows they are its ``metrics.json`` test numbers exactly.  Writes metrics.json and nodes.csv
    (and problems.csv) into ``out``.  The result also says which rows were scored (``scored``), how
    many of them the checkpoint was trained on (``trained_on``; None when the checkpoint does not
    record its training images) and the images that could not be read.  ``root``,
    ``allow_outside_root`` and ``columns`` are :func:`~seabed_hmc.data.manifest.read_manifest`'s
    (default ``columns``: the run's).  ``decision``: see :func:`resolve_decision`; the metrics that
    depend on decisions are given at the fixed threshold (flat, as ``train``'s test split) and under
    that rule (``decided``, as ``train``'s ``test_decided``).  ``device``: see
    :mod:`seabed_hmc.engine.device`."""
    model, hierarchy, record, config, cache = load_for_inference(checkpoint, batch_size, workers)
    model.to(resolve_device(device))
    table = read_manifest(
        manifest,
        hierarchy=hierarchy,
        root=root,
        columns=columns or config.data.columns or None,
        allow_outside_root=allow_outside_root,
    )
    rows, scored = select_split(table, split, manifest)
    paths = table.frame["image"].iloc[rows].tolist()
    trained = record.train_images
    trained_on = None if trained is None else len(set(paths) & set(trained))
    if trained_on:
        log.warning(
            "%d of the %d rows scored are images %s was trained on: their scores are optimistic",
            trained_on,
            len(rows),
            checkpoint,
        )
    result, problems = score_rows(model, config, record, cache, hierarchy, table, rows, "evaluate features")
    counts = record.reference_counts()
    if len(result.targets) == 0:
        raise ValueError(f"no image of {manifest} ({scored}) could be read ({len(problems)} failed)")
    rule = resolve_decision(decision, record, hierarchy, checkpoint)
    metrics = {
        **result.metrics,
        "decision": rule.describe(),
        "decided": result.decided(rule, hierarchy, counts),
        "scored": scored,
        "images": len(result.targets),
        "skipped_images": len(problems),
        "trained_on": trained_on,
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
        report = result.report(hierarchy, record.train_counts, config.train.threshold, rule)
        report.to_csv(out / "nodes.csv", index=False)
        if problems:
            pd.DataFrame(problems, columns=["image", "reason"]).to_csv(out / "problems.csv", index=False)
    return metrics


def image_list(source: str | Path, columns: dict | None = None) -> tuple[list[str], list[dict]]:
    """Images to predict: every image file under a folder, or the rows of a manifest (with metadata).

    ``columns`` maps the known names to the file's (``{"image": "path"}``), as in ``data.columns``.
    """
    paths, metadata = [], []
    for chunk_paths, chunk_metadata in image_chunks(source, columns, chunk_rows=None):
        paths += chunk_paths
        metadata += chunk_metadata
    return paths, metadata


def manifest_columns(source: str | Path, columns: dict | None = None) -> list[str]:
    """The columns a manifest passes through (none for a folder): all but ``image``, its ``labels``
    (the ground truth) named ``true_labels``."""
    source = Path(source)
    if source.is_dir() or source.suffix.lower() != ".csv":
        return []
    frame = _rename(pd.read_csv(source, dtype=str, nrows=0), columns)
    return [TRUE_LABELS if c == "labels" else c for c in frame.columns if c != "image"]


def _rename(frame: pd.DataFrame, columns: dict | None) -> pd.DataFrame:
    """The run's ``data.columns`` names back to the known ones (``{"image": "path"}``)."""
    return frame.rename(columns={v: k for k, v in (columns or {}).items() if v in frame and k not in frame})


def image_chunks(source: str | Path, columns: dict | None = None, chunk_rows: int | None = 4096):
    """(paths, metadata) in chunks of ``chunk_rows`` rows (all at once for None): a manifest is read
    chunk by chunk, so memory does not grow with its length."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(
            str(p) for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not paths:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {source}")
        step = chunk_rows or len(paths)
        for start in range(0, len(paths), step):
            yield paths[start : start + step], [{} for _ in paths[start : start + step]]
        return
    if source.suffix.lower() != ".csv":
        raise FileNotFoundError(f"{source} is neither a folder of images nor a CSV manifest")
    reader = pd.read_csv(source, dtype=str, keep_default_na=False, chunksize=chunk_rows or 10**12)
    root = source.parent
    for frame in reader:
        frame = _rename(frame, columns)
        if "image" not in frame:
            raise ValueError(f"{source} has no 'image' column (nor the run's data.columns name for it)")
        paths = [str(p if Path(p).is_absolute() else root / p) for p in frame["image"]]
        frame = frame.drop(columns=["image"]).rename(columns={"labels": TRUE_LABELS})
        metadata = frame.to_dict("records")
        yield paths, metadata


def predict_images(
    checkpoint: str | Path,
    source: str | Path,
    out_csv: str | Path,
    batch_size: int | None = None,
    workers: int | None = None,
    threshold: float | None = None,
    chunk_rows: int = 4096,
    device: str = "auto",
    decision: str | None = None,
) -> dict:
    """Write per-image predictions (coherent paths, per-node probabilities and spread) to a CSV.

    Every manifest column passes through; its ``labels`` (the ground truth) as ``true_labels``.
    Streams: the images are read ``chunk_rows`` at a time and rows are written as they are predicted,
    so memory stays bounded whatever the number of images (``scripts/bench_predict_stream.py``).  A
    frozen encoder's features come from (and go to) the run's feature cache, chunk by chunk.
    ``decision``: see :func:`resolve_decision` (default the checkpoint's rule; a ``threshold`` alone is a
    fixed rule at it); its description is in every row's ``decision`` column, a row whose image no
    node passes says ``abstain``, and ``p[node]`` are the probabilities the rule thresholds (calibrated
    when it calibrates).  ``device``: see :mod:`seabed_hmc.engine.device`."""
    model, hierarchy, record, config, cache = load_for_inference(checkpoint, batch_size, workers)
    model.to(resolve_device(device))
    rule = resolve_decision(decision, record, hierarchy, checkpoint, threshold)
    described = rule.describe()
    columns = config.data.columns or None
    _, transform = transforms(config, record.normalisation, device_of(model))
    meta_columns = manifest_columns(source, columns)
    evaluated = np.flatnonzero(hierarchy.evaluated)
    node_columns = [f"p[{hierarchy.nodes[i]}]" for i in evaluated]
    spread_columns = [f"spread[{hierarchy.nodes[i]}]" for i in evaluated]
    header = ["image", *meta_columns, "predicted", "decision", "error", *node_columns, *spread_columns]
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    counts = {"images": 0, "predicted": 0, "failed": 0, "abstained": 0}
    progress = tqdm(desc="predict", unit="image", leave=False)
    with (
        atomic_path(out_csv) as temporary,
        open(temporary, "w", newline="") as handle,
        torch.inference_mode(),
    ):
        writer = csv.writer(handle)
        writer.writerow(header)
        # chunk by chunk (rows are written as they come): memory does not grow with the manifest
        for paths, metadata in image_chunks(source, columns, chunk_rows):
            counts["images"] += len(paths)
            nothing = torch.zeros(len(paths), 0)  # no targets to carry: zero-width, not (rows, nodes)
            dataset = ImageDataset(paths, nothing, nothing, transform)
            for failed, indices, mean, spread in _predicted_batches(model, dataset, config, cache, hierarchy):
                lines = {}  # dataset index -> CSV row; written in input order
                for index, reason in failed:
                    lines[index] = [paths[index], *[metadata[index].get(c, "") for c in meta_columns]]
                    lines[index] += ["", described, reason]
                shown = rule.probabilities(mean, hierarchy)  # calibrated when the rule calibrates
                answers = outcomes(rule.decide(shown, hierarchy), hierarchy)
                for row, index in enumerate(indices):
                    lines[index] = [paths[index], *[metadata[index].get(c, "") for c in meta_columns]]
                    lines[index] += ["|".join(answers[row]), described, ""]
                    lines[index] += [f"{v:.4f}" for v in shown[row, evaluated].tolist()]
                    lines[index] += [f"{v:.4f}" for v in spread[row, evaluated].tolist()]
                    counts["abstained"] += answers[row] == [ABSTAIN]
                counts["failed"] += len(failed)
                counts["predicted"] += len(indices)
                writer.writerows(lines[index] for index in sorted(lines))
                progress.update(len(lines))
    progress.close()
    return counts


def _predicted_batches(
    model, dataset: ImageDataset, config: RunConfig, cache: FeatureCache | None, hierarchy
):
    """(failed [(index, reason)], indices, mean, spread) per batch of ``dataset``: from cached features
    (one batch) when ``cache`` is given, else image batches through the whole model."""
    if cache is not None:
        position = {path: index for index, path in enumerate(dataset.paths)}
        inputs, problems = split_inputs(model, config, dataset, cache, description="predict features")
        failed = [(position[path], reason) for path, reason in problems]
        mean, spread, kept = predict_inputs(model, inputs, config, hierarchy)
        yield failed, inputs.rows[kept].tolist(), mean, spread
        return
    device = device_of(model)
    for batch in eval_loader(dataset, config, device):
        failed = list(zip(batch.get("bad", []), batch.get("bad_reasons", []), strict=True))
        if not batch["index"].numel():
            yield failed, [], torch.zeros(0, len(hierarchy)), torch.zeros(0, len(hierarchy))
            continue
        images = to_device(batch["image"], device)
        if config.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        mean, spread = (t.cpu() for t in ensemble_probabilities(model(images), hierarchy))
        yield failed, batch["index"].tolist(), mean, spread


def calibrate_checkpoint(
    checkpoint: str | Path,
    manifest: str | Path,
    out: str | Path,
    settings: DecisionConfig,
    split: str = "all",
    device: str = "auto",
) -> Decision:
    """Refit a checkpoint's decision rule on the ``split`` rows of a labelled manifest (scored as
    ``evaluate`` scores them) without retraining, and write it: into a copy of the checkpoint when
    ``out`` is a ``.pt`` file, or as a JSON decision record (for ``--decision FILE``)."""
    out = Path(out)
    if out.suffix.lower() not in (".pt", ".json"):
        raise ValueError(f"--out {out}: give a .pt file (a new checkpoint) or a .json file (the rule alone)")
    model, hierarchy, record, config, cache = load_for_inference(checkpoint)
    model.to(resolve_device(device))
    table = read_manifest(manifest, hierarchy=hierarchy, columns=config.data.columns or None)
    rows, scored = select_split(table, split, manifest)
    result, _ = score_rows(model, config, record, cache, hierarchy, table, rows, "calibrate features")
    where = f"{Path(manifest).name}: {scored}, {len(result.targets)} images"
    try:
        decision = fit_configured(
            settings, result.probabilities, result.targets, result.mask, hierarchy, where
        )
    except ValueError as error:
        raise ValueError(f"{manifest}: {error}") from None
    if out.suffix.lower() == ".json":
        write_text_atomic(out, json.dumps(decision.to_record(), indent=1))
    else:
        full = read_model(checkpoint)  # with the optimizer's state, if the file has it
        write_model(dataclasses.replace(full, decision=decision.to_record()), out)
    return decision
