"""``evaluate`` and ``predict`` from a checkpoint alone.

``predict`` streams: rows are written to the CSV batch by batch, so memory does not grow with the
number of images.  An image that cannot be read gets a row with its error and no prediction: it is
reported, never silently dropped.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm  # not tqdm.auto: it iterates a DataLoader twice (two worker sets)

from seabed_hmc.data.images import ImageDataset, collate_skip_bad
from seabed_hmc.data.manifest import read_manifest
from seabed_hmc.data.transforms import build_transform
from seabed_hmc.engine.device import resolve_device, to_device
from seabed_hmc.engine.setup import load_model
from seabed_hmc.engine.train import node_report
from seabed_hmc.metrics import evaluate_predictions
from seabed_hmc.models.heads import ensemble_probabilities

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}


def _eval_transform(state: dict):
    norm = state["normalisation"]
    eval_spec = state["config"]["data"].get("eval_transforms")
    return build_transform(eval_spec, norm["image_size"], norm["mean"], norm["std"], train=False)


def _batches(dataset: ImageDataset, batch_size: int, workers: int):
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_skip_bad)


@torch.no_grad()
def evaluate_checkpoint(
    checkpoint: str | Path,
    manifest: str | Path,
    out: str | Path | None = None,
    batch_size: int = 32,
    workers: int = 2,
    device: str = "auto",
) -> dict:
    """Metrics of a checkpoint on a labelled manifest; writes metrics.json and nodes.csv into ``out``.
    ``device``: see :mod:`seabed_hmc.engine.device`."""
    device = resolve_device(device)
    model, hierarchy, state = load_model(checkpoint)
    model.to(device)
    data = state["config"]["data"]  # the training run's column names apply to manifests like its own
    table = read_manifest(manifest, hierarchy=hierarchy, columns=data.get("columns") or None)
    dataset = ImageDataset(table.frame["image"].tolist(), table.targets, table.mask, _eval_transform(state))
    means, rows, bad = [], [], []
    for batch in tqdm(_batches(dataset, batch_size, workers), desc="evaluate", leave=False):
        bad += [
            (dataset.paths[i], r)
            for i, r in zip(batch.get("bad", []), batch.get("bad_reasons", []), strict=True)
        ]
        if batch["index"].numel():
            images = to_device(batch["image"], device)
            means.append(ensemble_probabilities(model(images), hierarchy)[0].cpu())
            rows.append(batch["index"].numpy())
    if not means:
        raise ValueError(f"no image of {manifest} could be read ({len(bad)} failed)")
    kept = np.concatenate(rows)
    probabilities = torch.cat(means)
    train_counts = None if state.get("train_counts") is None else np.asarray(state["train_counts"])
    metrics = evaluate_predictions(
        probabilities, table.targets[kept], table.mask[kept], hierarchy, train_counts
    )
    metrics["images"], metrics["skipped_images"] = int(len(kept)), len(bad)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        report = node_report(
            probabilities, table.targets[kept], table.mask[kept], hierarchy, train_counts, 0.5
        )
        report.to_csv(out / "nodes.csv", index=False)
        if bad:
            pd.DataFrame(bad, columns=["image", "reason"]).to_csv(out / "problems.csv", index=False)
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
    """The metadata columns a manifest passes through (none for a folder)."""
    source = Path(source)
    if source.is_dir() or source.suffix.lower() != ".csv":
        return []
    frame = _rename(pd.read_csv(source, dtype=str, nrows=0), columns)
    return [c for c in frame.columns if c not in ("image", "labels")]


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
        metadata = frame.drop(columns=[c for c in ("image", "labels") if c in frame]).to_dict("records")
        yield paths, metadata


def predict_images(
    checkpoint: str | Path,
    source: str | Path,
    out_csv: str | Path,
    batch_size: int = 32,
    workers: int = 2,
    threshold: float = 0.5,
    chunk_rows: int = 4096,
    device: str = "auto",
) -> dict:
    """Write per-image predictions (coherent paths, per-node probabilities and spread) to a CSV.

    Streams: the images are read ``chunk_rows`` at a time and rows are written as they are predicted,
    so memory stays bounded whatever the number of images (``scripts/bench_predict_stream.py``).
    ``device``: see :mod:`seabed_hmc.engine.device`."""
    device = resolve_device(device)
    model, hierarchy, state = load_model(checkpoint)
    model.to(device)
    columns = state["config"]["data"].get("columns") or None
    transform = _eval_transform(state)
    meta_columns = manifest_columns(source, columns)
    evaluated = np.flatnonzero(hierarchy.evaluated)
    node_columns = [f"p[{hierarchy.nodes[i]}]" for i in evaluated]
    spread_columns = [f"spread[{hierarchy.nodes[i]}]" for i in evaluated]
    header = ["image", *meta_columns, "predicted", "error", *node_columns, *spread_columns]
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_csv.with_name(f".{out_csv.name}.tmp{os.getpid()}")
    counts = {"images": 0, "predicted": 0, "failed": 0}
    progress = tqdm(desc="predict", unit="image", leave=False)
    with open(temporary, "w", newline="") as handle, torch.inference_mode():
        writer = csv.writer(handle)
        writer.writerow(header)
        # chunk by chunk (rows are written as they come): memory does not grow with the manifest
        for paths, metadata in image_chunks(source, columns, chunk_rows):
            counts["images"] += len(paths)
            nothing = torch.zeros(len(paths), 0)  # no targets to carry: zero-width, not (rows, nodes)
            dataset = ImageDataset(paths, nothing, nothing, transform)
            for batch in _batches(dataset, batch_size, workers):
                lines = {}  # dataset index -> CSV row; written in input order
                for index, reason in zip(batch.get("bad", []), batch.get("bad_reasons", []), strict=True):
                    lines[index] = [
                        paths[index],
                        *[metadata[index].get(c, "") for c in meta_columns],
                        "",
                        reason,
                    ]
                    counts["failed"] += 1
                if batch["index"].numel():
                    images = to_device(batch["image"], device)
                    mean, spread = (t.cpu() for t in ensemble_probabilities(model(images), hierarchy))
                    decoded = hierarchy.decode((mean >= threshold).numpy())
                    for row, index in enumerate(batch["index"].tolist()):
                        lines[index] = (
                            [
                                paths[index],
                                *[metadata[index].get(c, "") for c in meta_columns],
                                "|".join(decoded[row]),
                                "",
                            ]
                            + [f"{v:.4f}" for v in mean[row, evaluated].tolist()]
                            + [f"{v:.4f}" for v in spread[row, evaluated].tolist()]
                        )
                        counts["predicted"] += 1
                writer.writerows(lines[index] for index in sorted(lines))
                progress.update(len(lines))
    progress.close()
    os.replace(temporary, out_csv)
    return counts
