"""Image training end to end on tiny synthetic seafloor images: outputs, cache, resume, bad data, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from seabed_hmc.cli import main
from seabed_hmc.config import load_config
from seabed_hmc.data.synthetic import make_synthetic_seafloor
from seabed_hmc.engine.checkpoint import CheckpointError, load_checkpoint
from seabed_hmc.engine.inference import evaluate_checkpoint, predict_images
from seabed_hmc.engine.train import train


@pytest.fixture(scope="module")
def seafloor(tmp_path_factory) -> Path:
    return make_synthetic_seafloor(tmp_path_factory.mktemp("seafloor"), images=40, size=32, seed=1)


def tiny_config(manifest: Path, out: Path, *extra: str):
    overrides = [
        f"data.manifest={manifest}",
        f"data.hierarchy={manifest.parent / 'hierarchy.csv'}",
        "data.workers=0",
        "encoder.name=resnet18",
        "encoder.input_size=32",
        "encoder.freeze=true",
        "loss.name=rare_node",
        "head.heads=3",
        "head.hidden=16",
        "train.epochs=4",
        "train.batch_size=8",
        "train.progress=false",
        "train.bf16=off",
        f"train.cache_dir={out.parent / 'cache'}",
        f"out={out}",
        *extra,
    ]
    return load_config(None, overrides)


def test_training_writes_every_output_and_reuses_cached_features(seafloor, tmp_path):
    first = train(tiny_config(seafloor, tmp_path / "a"))
    out = tmp_path / "a"
    for name in ("config.yaml", "last.pt", "best.pt", "log.csv", "metrics.json", "nodes.csv"):
        assert (out / name).exists(), name
    log = pd.read_csv(out / "log.csv")
    assert list(log.epoch) == [0, 1, 2, 3] and log.best.iloc[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"val", "test", "best_epoch"} and 0 <= metrics["test"]["au_prc"] <= 1
    assert metrics == json.loads(json.dumps(first, default=str))
    nodes = pd.read_csv(out / "nodes.csv")
    assert len(nodes) == 21 and {"node", "depth", "train_positives", "recall", "f1"} <= set(nodes.columns)
    cached = sorted((tmp_path / "cache").glob("*.pt"))
    assert len(cached) == 3  # train, val, test features
    stamps = [p.stat().st_mtime_ns for p in cached]
    train(tiny_config(seafloor, tmp_path / "b"))
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "cache").glob("*.pt"))] == stamps  # reused
    state = load_checkpoint(out / "best.pt")
    assert state["hierarchy"]["nodes"][0] == "Substrate" and state["normalisation"]["image_size"] == 32
    assert state["hierarchy"]["excluded"] == ["Substrate"]  # a root every training image has: not evaluated
    assert not nodes.evaluated[0] and nodes.evaluated[1:].all() and metrics["test"]["nodes_all"] == 20
    assert state["encoder"]["name"] == "resnet18" and len(state["train_indices"]) == 24


def test_a_changed_encoder_does_not_reuse_the_cache(seafloor, tmp_path):
    train(tiny_config(seafloor, tmp_path / "a", "train.epochs=1"))
    train(tiny_config(seafloor, tmp_path / "b", "train.epochs=1", "encoder.noise_alpha=0.0", "train.seed=1"))
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 6  # the seed is part of the encoder's record


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(seafloor, tmp_path):
    straight = tmp_path / "straight"
    train(tiny_config(seafloor, straight, "train.deterministic=true"))
    interrupted = tmp_path / "interrupted"
    stopped = train(tiny_config(seafloor, interrupted, "train.deterministic=true"), stop_after=2)
    assert stopped["stopped_after_epoch"] == 1 and not (interrupted / "metrics.json").exists()
    train(tiny_config(seafloor, interrupted, "train.deterministic=true"), resume=True)
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(interrupted / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert list(pd.read_csv(interrupted / "log.csv").epoch) == [0, 1, 2, 3]


def test_trainable_encoder_trains_on_images(seafloor, tmp_path):
    config = tiny_config(
        seafloor, tmp_path / "run", "encoder.freeze=false", "train.epochs=1", "loss.name=control"
    )
    metrics = train(config)
    assert 0 <= metrics["val"]["au_prc"] <= 1
    assert not list((tmp_path / "cache").glob("*.pt"))  # no cache for a trainable encoder


def test_bad_images_are_reported_and_skipped_or_stop_the_run(seafloor, tmp_path):
    folder = seafloor.parent
    frame = pd.read_csv(seafloor)
    (folder / "bad").mkdir(exist_ok=True)  # not images/: other tests predict over that folder
    (folder / "bad" / "empty.png").write_bytes(b"")
    data = (folder / "images" / "seafloor_0000.png").read_bytes()
    (folder / "bad" / "cut.png").write_bytes(data[: len(data) // 2])
    extra = pd.DataFrame(
        [
            {"image": "bad/empty.png", "labels": frame.labels[0], "split": "train", "survey": "x"},
            {"image": "bad/cut.png", "labels": frame.labels[1], "split": "train", "survey": "x"},
        ]
    )
    manifest = folder / "with_bad.csv"
    pd.concat([frame, extra]).to_csv(manifest, index=False)
    metrics = train(tiny_config(manifest, tmp_path / "run", "train.epochs=1", "data.max_bad_fraction=0.1"))
    assert metrics["skipped_images"] == 2
    problems = pd.read_csv(tmp_path / "run" / "problems.csv")
    assert sorted(Path(p).name for p in problems.image) == ["cut.png", "empty.png"]
    with pytest.raises(Exception, match="2 of 42"):
        train(tiny_config(manifest, tmp_path / "strict", "train.epochs=1", "data.max_bad_fraction=0.01"))


def test_evaluate_and_predict_from_the_checkpoint_alone(seafloor, tmp_path):
    train(tiny_config(seafloor, tmp_path / "run", "train.epochs=2"))
    checkpoint = tmp_path / "run" / "best.pt"
    metrics = evaluate_checkpoint(checkpoint, seafloor, tmp_path / "eval", workers=0)
    assert metrics["images"] == 8 and 0 <= metrics["au_prc"] <= 1 and "rare_node_recall" in metrics
    assert (tmp_path / "eval" / "nodes.csv").exists()
    folder = seafloor.parent
    listing = pd.read_csv(seafloor).head(5)
    listing.loc[len(listing)] = {"image": "images/missing.png", "labels": "", "split": "", "survey": "gone"}
    listing.to_csv(folder / "to_predict.csv", index=False)
    counts = predict_images(checkpoint, folder / "to_predict.csv", tmp_path / "predictions.csv", workers=0)
    assert counts == {"images": 6, "predicted": 5, "failed": 1, "abstained": counts["abstained"]}
    predictions = pd.read_csv(tmp_path / "predictions.csv", keep_default_na=False)
    assert list(predictions.columns[:6]) == [
        "image",
        "true_labels",
        "split",
        "survey",
        "predicted",
        "decision",
    ]
    assert predictions.true_labels.tolist()[:5] == listing.labels.tolist()[:5]
    assert predictions.error.tolist()[:5] == [""] * 5 and predictions.error.iloc[-1] == "file not found"
    assert predictions.survey.iloc[-1] == "gone"  # passthrough metadata kept even for a failed row
    probabilities = predictions[[c for c in predictions.columns if c.startswith("p[")]].iloc[:5].astype(float)
    assert probabilities.shape == (5, 20) and ((probabilities >= 0) & (probabilities <= 1)).all().all()
    parent, child = "p[Substrate > Unconsolidated]", "p[Substrate > Unconsolidated > Sand]"
    assert (probabilities[parent] >= probabilities[child]).all()  # coherent


def test_a_damaged_checkpoint_is_reported(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")


def test_cli_train_predict_and_errors(seafloor, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data:\n  manifest: {seafloor}\n  workers: 0\nencoder:\n  name: resnet18\n  freeze: true\n"
    )
    out = tmp_path / "cli"
    settings = ["encoder.input_size=32", "train.epochs=1", "train.progress=false", "loss.name=control"]
    settings.append("train.learning_rate=1e-4")  # YAML 1.2: a float, not the string YAML 1.1 makes
    args = ["train", "--config", str(config), "--out", str(out)]
    assert main([*args, *[x for s in settings for x in ("--set", s)]]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(out)
    assert load_checkpoint(out / "best.pt")["config"]["train"]["learning_rate"] == 1e-4
    assert main(["predict", "--checkpoint", str(out / "best.pt"), "--images", str(seafloor.parent / "images"),
                 "--out", str(tmp_path / "p.csv"), "--workers", "0"]) == 0  # fmt: skip
    assert len(pd.read_csv(tmp_path / "p.csv")) == 40
    assert main(["train", "--config", str(config), "--set", "train.epoch=1"]) == 2
    assert "unknown key 'train.epoch'" in capsys.readouterr().err


def test_best_checkpoint_keeps_its_epoch_when_last_moves_on(tmp_path):
    from seabed_hmc.engine.checkpoint import keep_copy, save_checkpoint

    save_checkpoint({"epoch": 0}, tmp_path / "last.pt")
    keep_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 0
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_load_model_uses_the_recorded_encoder_name(seafloor, tmp_path):
    """A config that named only a short weight name (encoder.name null) still rebuilds from the checkpoint."""
    from seabed_hmc.config import config_from_dict
    from seabed_hmc.engine.checkpoint import save_checkpoint
    from seabed_hmc.engine.data_and_model import build_model, load_model

    train(tiny_config(seafloor, tmp_path / "run", "train.epochs=1"))
    state = load_checkpoint(tmp_path / "run" / "best.pt")
    state["config"]["encoder"]["name"] = None
    state.pop("format_version")
    save_checkpoint(state, tmp_path / "edited.pt")
    model, hierarchy, _ = load_model(tmp_path / "edited.pt")
    assert model.encoder.description["name"] == "resnet18" and len(hierarchy) == 21
    images = torch.zeros(2, 3, 32, 32)
    original, _, _ = load_model(tmp_path / "run" / "best.pt")
    torch.testing.assert_close(model(images), original(images))
    # inference models are built on the meta device and loaded (no random init), then BatchNorm folded:
    # the same outputs as a model built, initialised and loaded the ordinary way
    unfolded, _, _ = load_model(tmp_path / "run" / "best.pt", fold=False)
    trained = load_checkpoint(tmp_path / "run" / "best.pt")
    reference = build_model(config_from_dict(trained["config"]), hierarchy, weights=None)
    reference.load_state_dict(trained["model"])
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(unfolded(images), reference.eval()(images), rtol=0, atol=0)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in original.modules())
    torch.testing.assert_close(original(images), unfolded(images), rtol=1e-4, atol=1e-5)


def test_augmented_views_are_cached_per_image(seafloor, tmp_path):
    train(tiny_config(seafloor, tmp_path / "run", "train.epochs=1", "train.augmented_views=3"))
    entries = [torch.load(p, weights_only=True) for p in (tmp_path / "cache").glob("*.pt")]
    shapes = sorted(tuple(e["features"].shape[:2]) for e in entries)
    assert shapes == [(1, 8), (1, 8), (3, 24)]  # val, test: one eval view; train: three augmented views
    views = next(e["features"] for e in entries if e["features"].shape[0] == 3)
    assert not torch.equal(views[0], views[1])  # different augmentations, different features


def test_cli_hierarchy_show_and_validate(tmp_path, capsys):
    paths = tmp_path / "h.csv"
    paths.write_text("path\nBiota > Macroalgae > Kelp\nBiota > Sponges\n")
    assert main(["hierarchy", "validate", str(paths)]) == 0
    assert "ok: Hierarchy(4 nodes" in capsys.readouterr().out
    assert main(["hierarchy", "show", str(paths)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[1:] == ["Biota   (not evaluated)", "  Macroalgae", "    Kelp", "  Sponges"]
    cyclic = tmp_path / "cycle.csv"
    cyclic.write_text("id,parent,name\n1,2,a\n2,1,b\n")
    assert main(["hierarchy", "validate", str(cyclic)]) == 2
    assert "cycle" in capsys.readouterr().err


def test_default_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    from seabed_hmc.engine.evaluation import default_cache_dir

    monkeypatch.setenv("SEABED_HMC_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("SEABED_HMC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "seabed_hmc" / "features"


def test_evaluate_and_predict_use_the_runs_column_names(seafloor, tmp_path):
    renamed = seafloor.parent / "renamed.csv"  # beside the images and hierarchy.csv
    pd.read_csv(seafloor).rename(columns={"image": "path", "labels": "hierarchy_path"}).to_csv(
        renamed, index=False
    )
    config = tiny_config(
        renamed, tmp_path / "run", "train.epochs=1", "data.columns={image: path, labels: hierarchy_path}"
    )
    train(config)
    checkpoint = tmp_path / "run" / "best.pt"
    assert evaluate_checkpoint(checkpoint, renamed, workers=0, split="all")["images"] == 40
    assert predict_images(checkpoint, renamed, tmp_path / "p.csv", workers=0)["predicted"] == 40


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_l2_is_per_head_and_adamw_decay_is_not_scaled(optimizer):
    """The loss is a mean over heads: Adam's coupled L2 on the heads is divided by H (not on the shared
    encoder, whose gradient is the heads' mean); AdamW's decoupled decay is not scaled."""
    import dataclasses
    from types import SimpleNamespace

    from seabed_hmc.config import RunConfig
    from seabed_hmc.engine.train import _optimizer
    from seabed_hmc.models import EnsembleHead

    config = RunConfig()
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, optimizer=optimizer, weight_decay=0.02)
    )
    model = SimpleNamespace(head=EnsembleHead(6, 5, heads=4, hidden=3), encoder=torch.nn.Linear(2, 2))
    built = _optimizer(model, config, head_only=False)
    assert type(built).__name__ == {"adam": "Adam", "adamw": "AdamW"}[optimizer]
    heads = 0.005 if optimizer == "adam" else 0.02
    assert [group["weight_decay"] for group in built.param_groups] == [heads, 0.02]
