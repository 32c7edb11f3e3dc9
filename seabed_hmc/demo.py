"""The embedded default: a control vs rare_node comparison on the synthetic seafloor set.

``run_demo`` draws the synthetic set (:mod:`seabed_hmc.data.synthetic`: procedural habitat textures
with biota overlays, a four-level hierarchy with rare deep classes), trains ``control`` and ``rare_node``
on it (a small timm CNN, ``mobilenetv3_small_100`` from random weights, trained end to end at 64 px:
no download, no pretrained weights needed), evaluates both on the test split, predicts, prints a
comparison, then maps a synthetic georeferenced survey mosaic with both models (``predict-tiles``)
and scores the tiles against the mosaic's known habitat patches.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd

from seabed_hmc.data.synthetic import make_synthetic_mosaic, make_synthetic_seafloor


def mosaic_accuracy(tiles_csv: Path, truth_csv: Path) -> dict:
    """Tile accuracy against the mosaic's ground truth: the most probable predicted substrate path
    equals the true substrate leaf (``leaf``) or agrees at the level below Substrate (``level_2``,
    e.g. Unconsolidated vs Consolidated) and at level 3 (``level_3``: Sand, Gravel, Rock)."""
    tiles = pd.read_csv(tiles_csv, keep_default_na=False)
    truth = pd.read_csv(truth_csv)
    merged = tiles.merge(truth, on=["row", "col"], how="inner")
    merged = merged[merged["status"] == "predicted"]
    hits = {"leaf": 0, "level_2": 0, "level_3": 0}
    for record in merged.itertuples(index=False):
        true_leaf = next(p for p in record.labels.split("|") if p.startswith("Substrate"))
        paths = record.paths.split("|") if record.paths else []
        scores = [float(v) for v in record.probabilities.split("|")] if record.probabilities else []
        substrate = [
            (score, path) for path, score in zip(paths, scores, strict=True) if path.startswith("Substrate")
        ]
        predicted = max(substrate)[1] if substrate else ""
        true_levels, predicted_levels = true_leaf.split(" > "), predicted.split(" > ")
        hits["leaf"] += predicted == true_leaf
        hits["level_2"] += predicted_levels[:2] == true_levels[:2]
        hits["level_3"] += predicted_levels[:3] == true_levels[:3]
    count = max(len(merged), 1)
    return {"tiles": int(len(merged)), **{f"{k}_accuracy": v / count for k, v in hits.items()}}


def demo_config(manifest: Path, out: Path, loss: str, quick: bool):
    from seabed_hmc.config import load_config

    overrides = [
        f"data.manifest={manifest}",
        f"data.hierarchy={manifest.parent / 'hierarchy.csv'}",
        "data.workers=0",
        "data.train_transforms=[{name: HorizontalFlip, p: 0.5}, {name: VerticalFlip, p: 0.5}, "
        "{name: RandomRotate90, p: 0.5}]",
        "encoder.name=mobilenetv3_small_100",
        "encoder.freeze=false",
        "encoder.input_size=64",
        "head.hidden=256",
        f"loss.name={loss}",
        f"train.epochs={3 if quick else 30}",
        "train.batch_size=32",
        "train.learning_rate=0.001",
        "train.encoder_learning_rate=0.001",
        "train.progress=false",
        f"out={out / loss}",
    ]
    if loss == "rare_node":
        overrides.append(f"head.heads={4 if quick else 20}")
    return load_config(None, overrides)


def run_demo(out: str | Path, quick: bool = False) -> dict:
    """Generate the data, train control and rare_node, evaluate, predict, print a comparison."""
    from seabed_hmc.engine.inference import predict_images
    from seabed_hmc.engine.tiles import predict_tiles
    from seabed_hmc.engine.train import train

    out = Path(out)
    start = time.perf_counter()
    manifest = make_synthetic_seafloor(out / "data", images=150 if quick else 700)
    print(f"synthetic seafloor images and manifest: {manifest}")
    results = {}
    for loss in ("control", "rare_node"):
        config = demo_config(manifest, out, loss, quick)
        trained = train(config)
        results[loss] = {
            **trained["test"],
            "decision": trained["decision"],
            "decided": trained["test_decided"],
        }
        print(f"trained {loss}: {out / loss / 'best.pt'} (decision rule: {trained['decision']})")
    counts = predict_images(out / "rare_node" / "best.pt", manifest, out / "predictions.csv", workers=0)
    print(f"predictions for {counts['predicted']} images: {out / 'predictions.csv'}")
    keys = ["au_prc", "f1_all", "recall_all", "rare_node_recall", "rare_node_precision", "hierarchical_f1"]
    keys += ["taxonomic_distance"]
    print("\ntest split            control   rare_node   (fixed 0.5 | fitted rule)")
    for key in keys:
        cells = []
        for loss in results:
            fitted = results[loss]["decided"].get(key)  # threshold-free metrics have no second value
            cells.append(
                f"{results[loss][key]:6.3f}" + (f" | {fitted:5.3f}" if fitted is not None else " |   -  ")
            )
        print(f"{key:20s} {cells[0]:>16s} {cells[1]:>16s}")
    mosaic = make_synthetic_mosaic(out / "mosaic", patches=5 if quick else 10)
    print(f"\nsynthetic survey mosaic (EPSG:32630, nodata collar): {mosaic}")
    for loss in ("control", "rare_node"):
        results[loss]["mosaic"] = {}
        for decision, name in (("fixed", "fixed 0.5"), ("checkpoint", "fitted rule")):
            folder = out / "mosaic" / loss / ("fixed" if decision == "fixed" else "fitted")
            shutil.rmtree(folder, ignore_errors=True)  # the models are new: an earlier demo's maps go
            summary = predict_tiles(
                out / loss / "best.pt",
                mosaic,
                folder,
                tile_size=64,
                workers=0,
                progress=False,
                decision=decision,
            )
            accuracy = mosaic_accuracy(folder / "tiles.csv", out / "mosaic" / "ground_truth.csv")
            skipped = sum(summary["skipped"].values())
            results[loss]["mosaic"][decision] = {**accuracy, "skipped_tiles": skipped}
            print(
                f"{loss:9s} {name:11s} maps in {folder}: {accuracy['tiles']} tiles, substrate leaf accuracy "
                f"{accuracy['leaf_accuracy']:.3f}, Sand/Gravel/Rock {accuracy['level_3_accuracy']:.3f}, "
                f"{skipped} nodata tiles skipped"
            )
    print(
        f"\ndone in {time.perf_counter() - start:.0f} s; "
        f"checkpoints: {out}/control/best.pt, {out}/rare_node/best.pt"
    )
    (out / "comparison.json").write_text(json.dumps(results, indent=2))
    return results
