"""The embedded demo: synthetic data that is what it says, and the quick end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seabed_hmc.data.manifest import read_manifest
from seabed_hmc.data.synthetic import BIOTA, SUBSTRATES, make_synthetic_seafloor
from seabed_hmc.demo import run_demo


def test_synthetic_seafloor_is_hierarchical_multilabel_and_imbalanced(tmp_path):
    manifest = make_synthetic_seafloor(tmp_path, images=200, size=32, seed=3)
    table = read_manifest(manifest)
    hierarchy = table.hierarchy
    assert int(hierarchy.depth.max()) == 3 and len(hierarchy.roots) == 2  # four levels, two roots
    counts = table.targets.sum(0).numpy()
    leaf = {name: counts[hierarchy.index(name)] for name in [*SUBSTRATES, *BIOTA]}
    assert (
        leaf["Substrate > Consolidated > Rock > Boulders"]
        < leaf["Substrate > Unconsolidated > Sand > Flat sand"] / 3
    )
    assert (table.targets[:, hierarchy.index("Biota")] > 0).any()  # some images carry substrate and biota
    frame = pd.read_csv(manifest)
    assert set(frame.split) == {"train", "val", "test"} and (frame.split == "train").mean() == 0.6
    image = np.asarray(Image.open(tmp_path / frame.image[0]))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and image.std() > 5
    again = make_synthetic_seafloor(tmp_path / "again", images=200, size=32, seed=3)
    assert pd.read_csv(again).labels.tolist() == frame.labels.tolist()  # reproducible


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys):
    results = run_demo(tmp_path, quick=True)
    assert set(results) == {"control", "rare_node"}
    for loss in results:
        assert (tmp_path / loss / "best.pt").exists()
        assert 0 <= results[loss]["au_prc"] <= 1
    assert len(pd.read_csv(tmp_path / "predictions.csv")) == 150
    for loss in results:  # the mosaic: 5 x 5 patches, the first column a nodata collar
        assert results[loss]["decision"].startswith("f1 (fit on val")
        assert set(results[loss]["decided"]) >= {"f1_all", "rare_node_recall", "taxonomic_distance"}
        for decision, folder in (("fixed", "fixed"), ("checkpoint", "fitted")):
            mosaic = results[loss]["mosaic"][decision]
            assert mosaic["tiles"] == 20 and mosaic["skipped_tiles"] == 5
            assert (
                0 <= mosaic["leaf_accuracy"] <= mosaic["level_3_accuracy"] <= mosaic["level_2_accuracy"] <= 1
            )
            assert (tmp_path / "mosaic" / loss / folder / "classes.tif").exists()
    assert json.loads((tmp_path / "comparison.json").read_text()) == results
    printed = capsys.readouterr().out
    assert "rare_node_recall" in printed and "(fixed 0.5 | fitted rule)" in printed


def test_mosaic_accuracy_scores_against_the_ground_truth(tmp_path):
    from seabed_hmc.demo import mosaic_accuracy

    pd.DataFrame(
        {
            "row": [0, 0, 64],
            "col": [0, 64, 0],
            "status": ["predicted", "predicted", "skipped: too much nodata"],
            "paths": [
                "Substrate > Unconsolidated > Sand > Flat sand|Biota > Sponges > Massive",
                "Substrate > Unconsolidated > Gravel",
                "",
            ],  # fmt: skip
            "probabilities": ["0.9|0.95", "0.8", ""],
        }
    ).to_csv(tmp_path / "tiles.csv", index=False)
    pd.DataFrame(
        {
            "row": [0, 0, 64],
            "col": [0, 64, 0],
            "labels": [
                "Substrate > Unconsolidated > Sand > Flat sand",
                "Substrate > Unconsolidated > Gravel > Pebbles|Biota > Sponges > Massive",
                "Substrate > Consolidated > Rock > Bedrock",
            ],  # fmt: skip
        }
    ).to_csv(tmp_path / "truth.csv", index=False)
    scores = mosaic_accuracy(tmp_path / "tiles.csv", tmp_path / "truth.csv")
    assert scores == {"tiles": 2, "leaf_accuracy": 0.5, "level_2_accuracy": 1.0, "level_3_accuracy": 1.0}
