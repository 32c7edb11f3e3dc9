"""Distributed training under torchrun (2 CPU processes, gloo) against one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seabed_hmc.data.synthetic import make_synthetic_seafloor
from seabed_hmc.engine.checkpoint import load_checkpoint

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    manifest = make_synthetic_seafloor(root / "data", images=80, size=32, seed=4)  # 48 training images
    tree = {
        "data": {
            "manifest": str(manifest),
            "hierarchy": str(manifest.parent / "hierarchy.csv"),
            "workers": 0,
        },
        "encoder": {"name": "resnet18", "input_size": 32, "freeze": True},
        "head": {"heads": 3, "hidden": 32, "dropout": 0.0},
        "loss": {"name": "rare_node"},
        "train": {
            "epochs": 4,
            "batch_size": 8,
            "progress": False,
            "bf16": False,
            "device": "cpu",  # two CPU processes (gloo), also on a machine with one GPU
            "cache_dir": str(root / "cache"),
        },
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def run(command: list[str], port: int | None = None) -> subprocess.CompletedProcess:
    prefix = (
        [sys.executable] if port is None else [str(TORCHRUN), "--nproc_per_node=2", f"--master_port={port}"]
    )
    result = subprocess.run(
        [*prefix, "-m", "seabed_hmc", *command], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_processes_match_one_with_frozen_features(config_file, tmp_path):
    """Each rank takes half of every batch of 8 and DDP averages the gradients: with dropout 0 and equal
    halves the updates equal one process's (up to float summation order)."""
    run(["train", "--config", str(config_file), "--out", str(tmp_path / "one")])
    run(["train", "--config", str(config_file), "--out", str(tmp_path / "two")], port=29561)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one["best_epoch"] == two["best_epoch"]
    for key in ("au_prc", "f1_all", "recall_all", "rare_node_recall", "hierarchical_f1"):
        assert two["test"][key] == pytest.approx(one["test"][key], abs=1e-6), key
    a = load_checkpoint(tmp_path / "one" / "best.pt")["model"]
    b = load_checkpoint(tmp_path / "two" / "best.pt")["model"]
    assert set(a) == set(b)  # the unwrapped model (no "module." prefixes)
    assert all((a[k].float() - b[k].float()).abs().max() < 1e-5 for k in a)


@pytest.mark.slow
def test_two_processes_train_a_trainable_encoder(config_file, tmp_path):
    """With a trainable encoder, BatchNorm sees each rank's half batch, so the runs differ slightly; the
    distributed one must train, select and write a loadable checkpoint like any other."""
    result = run(
        [
            "train",
            "--config",
            str(config_file),
            "--set",
            "encoder.freeze=false",
            "--out",
            str(tmp_path / "two"),
        ],
        port=29562,
    )
    printed = json.loads(result.stdout)  # rank 0 alone prints the metrics
    assert 0 <= printed["test"]["au_prc"] <= 1
    state = load_checkpoint(tmp_path / "two" / "best.pt")
    assert not any(k.startswith("module.") for k in state["model"])
    assert len((tmp_path / "two" / "log.csv").read_text().splitlines()) == 5  # header + 4 epochs, once
