"""Interrupted runs: training, an ablation grid and predict-tiles killed with SIGKILL, then resumed.

Each test starts the real command in a subprocess, kills it (SIGKILL: no cleanup handler runs) once it
has written some progress, resumes it, and compares the outcome with an uninterrupted run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
import yaml

from seabed_hmc.data.synthetic import make_synthetic_seafloor
from seabed_hmc.engine.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def seafloor(tmp_path_factory) -> Path:
    return make_synthetic_seafloor(tmp_path_factory.mktemp("seafloor"), images=60, size=32, seed=5)


def run_config(manifest: Path, cache: Path, epochs: int = 8) -> dict:
    return {
        "data": {
            "manifest": str(manifest),
            "hierarchy": str(manifest.parent / "hierarchy.csv"),
            "workers": 0,
        },
        "encoder": {"name": "resnet18", "input_size": 32, "freeze": False},
        "head": {"heads": 2, "hidden": 16},
        "loss": {"name": "rare_node"},
        "train": {
            "epochs": epochs,
            "batch_size": 8,
            "progress": False,
            "bf16": False,
            "deterministic": True,
            "cache_dir": str(cache),
            "checkpoint_minutes": 0,  # last.pt after every epoch: the kill comes after epoch 3
        },
    }


def seabed(*args: str) -> None:
    """Run the command to completion; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "seabed_hmc", *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "seabed_hmc", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def kill_when(process: subprocess.Popen, ready, timeout: float = 240) -> None:
    """SIGKILL the process as soon as ``ready()`` holds (fails if it finishes first)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"finished before it could be killed: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "timed out waiting to kill"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_training_killed_mid_run_resumes_to_the_same_weights(seafloor, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run_config(seafloor, tmp_path / "cache")))
    seabed("train", "--config", str(config), "--out", str(tmp_path / "whole"))
    out = tmp_path / "killed"
    process = start(["train", "--config", str(config), "--out", str(out)])
    kill_when(process, lambda: lines(out / "log.csv") >= 4)  # header + 3 epochs: killed in epoch 4 or 5
    state = load_checkpoint(out / "last.pt")  # the last complete epoch's checkpoint is intact
    assert 2 <= state["epoch"] < 7
    seabed("train", "--config", str(config), "--out", str(out), "--resume")
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(out / "last.pt")
    assert a["epoch"] == b["epoch"] == 7
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert json.loads((out / "metrics.json").read_text()) == json.loads(
        (tmp_path / "whole" / "metrics.json").read_text()
    )


@pytest.mark.slow
def test_ablation_grid_killed_mid_run_resumes_to_the_same_table(seafloor, tmp_path):
    tree = {
        "run": {
            **run_config(seafloor, tmp_path / "cache", epochs=3),
            "encoder": {"name": "resnet18", "input_size": 32, "freeze": True},
        },
        "subsets": {"fractions": [0.5, 1.0]},
        "configurations": {"control": ["loss.name=control"], "rare_node": {"loss.name": "rare_node"}},
        "encoders": {"random": []},
        "seeds": [0, 1, 2],
    }
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(tree))
    args = ["ablate", "--config", str(grid), "--no-progress"]
    seabed(*args, "--out", str(tmp_path / "whole"))
    out = tmp_path / "killed"
    process = start([*args, "--out", str(out)])
    kill_when(process, lambda: lines(out / "results.csv") >= 4)  # header + 3 of 12 cells
    partial = pd.read_csv(out / "results.csv")  # complete rows only: the table is replaced atomically
    assert 3 <= len(partial) < 12 and partial["au_prc"].notna().all()
    seabed(*args, "--out", str(out))
    key = ["encoder", "configuration", "level", "seed"]
    a = pd.read_csv(tmp_path / "whole" / "results.csv").sort_values(key).reset_index(drop=True)
    b = pd.read_csv(out / "results.csv").sort_values(key).reset_index(drop=True)
    assert len(b) == 12 and not b.duplicated(key).any()
    metrics = ["au_prc", "f1_all", "recall_all", "rare_node_recall", "hierarchical_f1", "train_size"]
    pd.testing.assert_frame_equal(a[key + metrics], b[key + metrics])


@pytest.mark.slow
def test_predict_tiles_killed_mid_run_resumes_to_the_same_maps(seafloor, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run_config(seafloor, tmp_path / "cache", epochs=1)))
    seabed("train", "--config", str(config), "--out", str(tmp_path / "model"))
    raster = tmp_path / "mosaic.tif"
    rng = np.random.default_rng(0)
    transform = rasterio.transform.from_origin(0, 640, 1, 1)
    profile = {
        "driver": "GTiff",
        "width": 640,
        "height": 640,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32630",
        "transform": transform,
        "nodata": 0,
    }
    with rasterio.open(raster, "w", **profile) as target:
        target.write(rng.integers(1, 255, (3, 640, 640), dtype=np.uint8))
    args = [
        "predict-tiles",
        "--checkpoint",
        str(tmp_path / "model" / "best.pt"),
        "--raster",
        str(raster),
        "--tile-size",
        "32",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--no-progress",
    ]
    seabed(*args, "--out", str(tmp_path / "whole"))
    out = tmp_path / "killed"
    process = start([*args, "--out", str(out)])
    kill_when(process, lambda: (out / ".partial" / "rank0.npz").exists())  # after 20 batches of 400
    assert not (out / "classes.tif").exists()
    seabed(*args, "--out", str(out))
    for name in ("classes", "probabilities", "uncertainty"):
        with rasterio.open(tmp_path / "whole" / f"{name}.tif") as a, rasterio.open(out / f"{name}.tif") as b:
            assert np.array_equal(a.read(), b.read()), name
    tiles = pd.read_csv(out / "tiles.csv")
    assert len(tiles) == 400 and tiles["tile"].is_unique


@pytest.mark.slow
def test_predict_streams_in_chunks_with_the_same_output(seafloor, tmp_path):
    from seabed_hmc.engine.inference import predict_images

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run_config(seafloor, tmp_path / "cache", epochs=1)))
    seabed("train", "--config", str(config), "--out", str(tmp_path / "model"))
    checkpoint = tmp_path / "model" / "best.pt"
    whole = predict_images(checkpoint, seafloor, tmp_path / "whole.csv", workers=0, chunk_rows=10_000)
    chunked = predict_images(checkpoint, seafloor, tmp_path / "chunked.csv", workers=0, chunk_rows=7)
    assert whole == chunked and {k: whole[k] for k in ("images", "predicted", "failed")} == {
        "images": 60,
        "predicted": 60,
        "failed": 0,
    }
    assert (tmp_path / "whole.csv").read_text() == (tmp_path / "chunked.csv").read_text()
    assert list(pd.read_csv(tmp_path / "chunked.csv")["survey"][:3]) == ["demo-0", "demo-1", "demo-2"]
