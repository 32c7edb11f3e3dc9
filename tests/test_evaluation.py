"""One evaluation path: ``evaluate`` reproduces ``train``'s own test metrics, honours the split, warns
about training rows, uses the feature cache; ``predict`` passes the truth through; failed runs say so."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from seabed_hmc.cli import main
from seabed_hmc.data.synthetic import make_synthetic_seafloor
from seabed_hmc.engine import features as features_module
from seabed_hmc.engine.inference import evaluate_checkpoint, predict_images
from seabed_hmc.engine.train import train
from tests.test_train import tiny_config


@pytest.fixture(scope="module")
def seafloor(tmp_path_factory) -> Path:
    return make_synthetic_seafloor(tmp_path_factory.mktemp("seafloor"), images=48, size=32, seed=3)


def config_for(manifest: Path, out: Path, *extra: str):
    return tiny_config(manifest, out, "train.epochs=2", "encoder.freeze=false", *extra)


@pytest.mark.parametrize(
    "setting",
    [
        ("encoder.freeze=true", "train.feature_cache=true"),  # heads on cached features
        ("encoder.freeze=false", "train.bf16=auto"),  # images through the whole model, BatchNorm folded
        ("encoder.freeze=true", "train.feature_cache=false"),
    ],
    ids=["cached-features", "trainable-encoder", "frozen-uncached"],
)
def test_evaluate_prints_the_runs_own_test_metrics_exactly(seafloor, tmp_path, setting):
    out = tmp_path / "run"
    trained = train(config_for(seafloor, out, *setting))
    evaluated = evaluate_checkpoint(out / "best.pt", seafloor, workers=0)
    assert evaluated["scored"] == "9 rows of split 'test'" and evaluated["images"] == 9
    assert {key: evaluated[key] for key in trained["test"]} == trained["test"]  # every metric, exactly
    assert evaluated["decision"] == trained["decision"] and evaluated["decided"] == trained["test_decided"]
    assert evaluated["trained_on"] == 0
    report = pd.read_csv(out / "nodes.csv")
    evaluate_checkpoint(out / "best.pt", seafloor, tmp_path / "eval", workers=0)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "eval" / "nodes.csv"), report)


def test_evaluate_scores_the_chosen_split_and_counts_training_rows(seafloor, tmp_path, caplog):
    out = tmp_path / "run"
    trained = train(config_for(seafloor, out, "encoder.freeze=true"))
    validation = evaluate_checkpoint(out / "best.pt", seafloor, workers=0, split="val")
    assert validation["scored"] == "9 rows of split 'val'" and validation["trained_on"] == 0
    assert validation["au_prc"] == trained["val"]["au_prc"]
    with caplog.at_level(logging.WARNING, logger="seabed_hmc"):
        everything = evaluate_checkpoint(out / "best.pt", seafloor, workers=0, split="all")
    assert everything["images"] == 48 and everything["trained_on"] == 30
    assert "30 of the 48 rows scored are images" in caplog.text
    # a manifest without a split column: every row is scored, and the training rows are counted
    bare = seafloor.parent / "no_split.csv"
    pd.read_csv(seafloor).drop(columns=["split"]).to_csv(bare, index=False)
    unsplit = evaluate_checkpoint(out / "best.pt", bare, workers=0)
    assert unsplit["scored"] == "all 48 rows (the manifest has no split column)"
    assert unsplit["trained_on"] == 30


def test_evaluate_cli_says_what_it_scored_and_names_its_own_flags(seafloor, tmp_path, capsys):
    out = tmp_path / "run"
    train(config_for(seafloor, out, "encoder.freeze=true", "train.epochs=1"))
    base = ["evaluate", "--checkpoint", str(out / "best.pt"), "--manifest", str(seafloor), "--workers", "0"]
    assert main([*base, "--split", "train"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["trained_on"] == 30
    assert "scored 30 rows of split 'train': 30 images, 30 of them were training images" in captured.err
    only_test = seafloor.parent / "only_test.csv"
    frame = pd.read_csv(seafloor)
    frame[frame.split == "test"].to_csv(only_test, index=False)
    assert main([*base[:4], str(only_test), "--split", "val"]) == 2
    error = capsys.readouterr().err
    assert "no rows with split 'val' (rows per split: train 0, val 0, test 9)" in error
    assert "pass --split val" in error


def test_evaluate_reads_cached_features_instead_of_recomputing(seafloor, tmp_path, monkeypatch):
    out = tmp_path / "run"
    trained = train(config_for(seafloor, out, "encoder.freeze=true", "train.epochs=1"))

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(features_module, "extract_features", no_extraction)
    evaluated = evaluate_checkpoint(out / "best.pt", seafloor, workers=0)
    assert evaluated["au_prc"] == trained["test"]["au_prc"]


def test_predict_uses_the_cache_and_keeps_the_truth(seafloor, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(config_for(seafloor, out, "encoder.freeze=true", "train.epochs=1"))
    first = predict_images(out / "best.pt", seafloor, tmp_path / "first.csv", workers=0)
    cache_files = sorted((tmp_path / "cache").glob("*.pt"))
    monkeypatch.setattr(features_module, "extract_features", lambda *a, **k: pytest.fail("recomputed"))
    again = predict_images(out / "best.pt", seafloor, tmp_path / "again.csv", workers=0, threshold=0.3)
    assert {k: first[k] for k in ("images", "predicted", "failed")} == {
        "images": 48,
        "predicted": 48,
        "failed": 0,
    }
    assert {k: again[k] for k in ("images", "predicted", "failed")} == {
        "images": 48,
        "predicted": 48,
        "failed": 0,
    }
    assert sorted((tmp_path / "cache").glob("*.pt")) == cache_files
    one, two = (pd.read_csv(tmp_path / name, keep_default_na=False) for name in ("first.csv", "again.csv"))
    probabilities = [c for c in one.columns if c.startswith("p[")]
    pd.testing.assert_frame_equal(one[probabilities], two[probabilities])
    manifest = pd.read_csv(seafloor, keep_default_na=False)
    assert one.true_labels.tolist() == manifest.labels.tolist()
    assert one.split.tolist() == manifest.split.tolist()


def test_a_failed_run_says_so_and_a_rerun_is_not_confused(seafloor, tmp_path):
    out = tmp_path / "run"
    train(config_for(seafloor, out, "encoder.freeze=true", "train.epochs=1"))
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "finished" and status["command"] and status["ended"]
    # a valid config that fails in training: gmu needs an ensemble
    broken = config_for(seafloor, out, "encoder.freeze=true", "loss.uncertainty=gmu", "head.heads=1")
    with pytest.raises(ValueError, match="needs at least 2 heads"):
        train(broken)
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and "needs at least 2 heads" in status["error"]
    assert not (out / "metrics.json").exists() and not (out / "nodes.csv").exists()  # no stale reports
    train(config_for(seafloor, out, "encoder.freeze=true", "train.epochs=1"))
    assert json.loads((out / "status.json").read_text())["status"] == "finished"
    assert (out / "metrics.json").exists()


def test_a_run_stopped_to_resume_later_says_stopped(seafloor, tmp_path):
    out = tmp_path / "run"
    train(config_for(seafloor, out, "encoder.freeze=true", "train.epochs=3"), stop_after=1)
    assert json.loads((out / "status.json").read_text())["status"] == "stopped"
    train(config_for(seafloor, out, "encoder.freeze=true", "train.epochs=3"), resume=True)
    assert json.loads((out / "status.json").read_text())["status"] == "finished"


def test_checkpoints_between_writes_keep_the_best_epoch_in_memory(tmp_path):
    import dataclasses

    import torch

    from seabed_hmc.engine.checkpoint import Checkpoints, ModelCheckpoint, read_model

    model = torch.nn.Linear(3, 2)
    checkpoints = Checkpoints(tmp_path, minutes=60)
    assert not checkpoints.due()
    best_weights = {k: v.clone() for k, v in model.state_dict().items()}
    checkpoints.note_best(0, model, {"au_prc": 0.5}, 0.5, copy=True)
    with torch.no_grad():
        model.weight.add_(1.0)  # epoch 1 moves on without improving
    record = ModelCheckpoint(hierarchy={"nodes": ["h"]}, encoder={}, normalisation={}, config={}, model={})
    epoch1 = dataclasses.replace(record, model=model.state_dict(), optimizer={"state": {}}, epoch=1)
    checkpoints.write(epoch1)
    last, best = read_model(tmp_path / "last.pt"), read_model(tmp_path / "best.pt")
    assert last.epoch == 1 and best.epoch == 0 and best.hierarchy == {"nodes": ["h"]}
    assert last.optimizer == {"state": {}} and best.optimizer is None and best.best_metric == 0.5
    assert all(torch.equal(best.model[k], v) for k, v in best_weights.items())
    checkpoints.note_best(2, model, {}, 0.7, copy=False)  # written this epoch: best.pt is last.pt
    checkpoints.write(dataclasses.replace(record, model=model.state_dict(), epoch=2))
    assert read_model(tmp_path / "best.pt").epoch == 2
    assert Checkpoints(tmp_path, minutes=0).due()


def test_a_run_writes_its_checkpoints_at_the_end_when_they_are_not_due(seafloor, tmp_path):
    out = tmp_path / "run"
    trained = train(
        config_for(seafloor, out, "encoder.freeze=true", "train.epochs=3", "train.checkpoint_minutes=60")
    )
    from seabed_hmc.engine.checkpoint import load_checkpoint

    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    assert load_checkpoint(out / "best.pt")["epoch"] == trained["best_epoch"]


def test_the_decision_rule_travels_with_the_checkpoint(seafloor, tmp_path, capsys):
    import torch

    from seabed_hmc.engine.checkpoint import CheckpointError, read_model, save_checkpoint

    out = tmp_path / "run"
    trained = train(config_for(seafloor, out, "encoder.freeze=true", "train.epochs=1"))
    stored = read_model(out / "best.pt").decision
    assert stored["policy"] == "f1" and trained["decision"].startswith("f1 (fit on val: 9 images")
    assert set(trained) >= {"val_decided", "test_decided"}
    nodes = pd.read_csv(out / "nodes.csv")
    assert {"threshold", "threshold_source", "decided_recall", "fit_positives"} <= set(nodes.columns)
    # a format-1 checkpoint (from before decisions and typed records): loads, migrated, and decides at 0.5
    current = torch.load(out / "best.pt", weights_only=True)
    old = {k: v for k, v in current.items() if k not in ("decision", "metric_counts", "optimizer")}
    old |= {"format_version": 1, "optimiser": {"state": {}}}  # version 1 spelt it so
    torch.save(old, tmp_path / "old.pt")
    migrated = read_model(tmp_path / "old.pt")
    assert migrated.decision is None and torch.equal(migrated.metric_counts, current["train_counts"])
    assert migrated.optimizer == {"state": {}}
    evaluated = evaluate_checkpoint(tmp_path / "old.pt", seafloor, workers=0)
    assert evaluated["decision"] == "fixed 0.5"
    assert all(evaluated["decided"][k] == evaluated[k] for k in evaluated["decided"])
    # a newer format, and a file that is not a model checkpoint: errors that say what to do
    torch.save(current | {"format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99.*reads versions 1, 2.*upgrade"):
        read_model(tmp_path / "future.pt")
    save_checkpoint({"epoch": 0}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt is not a seabed_hmc model checkpoint.*hierarchy"):
        evaluate_checkpoint(tmp_path / "other.pt", seafloor, workers=0)
    # refit on another labelled set (here: the training rows), into a new checkpoint and a JSON record
    base = [
        "calibrate",
        "--checkpoint",
        str(out / "best.pt"),
        "--manifest",
        str(seafloor),
        "--split",
        "train",
    ]
    assert main([*base, "--policy", "precision", "--precision", "0.9", "--out", str(tmp_path / "c2.pt")]) == 0
    told = json.loads(capsys.readouterr().out)
    assert told["decision"].startswith("precision (P >= 0.9, fit on manifest.csv: 30 rows of split 'train'")
    assert main([*base, "--policy", "depth", "--out", str(tmp_path / "rule.json")]) == 0
    capsys.readouterr()
    with_c2 = evaluate_checkpoint(out / "best.pt", seafloor, workers=0, decision=str(tmp_path / "c2.pt"))
    assert with_c2["decision"] == told["decision"]
    assert evaluate_checkpoint(out / "best.pt", seafloor, workers=0, decision=str(tmp_path / "rule.json"))[
        "decision"
    ].startswith("depth")
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--manifest", str(seafloor),
                 "--decision", str(tmp_path / "nothing.json")]) == 2  # fmt: skip
    assert "neither fixed, checkpoint nor an existing file" in capsys.readouterr().err
    # fitting on rows without a single positive is refused, naming the manifest
    empty = seafloor.parent / "negatives.csv"
    frame = pd.read_csv(seafloor)
    frame.assign(labels="Substrate", complete="false").to_csv(empty, index=False)  # Substrate: always on
    assert main(["calibrate", "--checkpoint", str(out / "best.pt"), "--manifest", str(empty),
                 "--out", str(tmp_path / "x.pt")]) == 2  # fmt: skip
    error = capsys.readouterr().err
    assert "negatives.csv" in error and "no positive for any evaluated node" in error


def test_predict_says_which_rule_and_abstains_explicitly(seafloor, tmp_path):
    out = tmp_path / "run"
    train(config_for(seafloor, out, "encoder.freeze=true", "train.epochs=1"))
    counts = predict_images(out / "best.pt", seafloor, tmp_path / "never.csv", workers=0, threshold=1.5)
    assert counts["abstained"] == counts["predicted"] == 48
    rows = pd.read_csv(tmp_path / "never.csv", keep_default_na=False)
    assert set(rows.predicted) == {"abstain"} and set(rows.decision) == {"fixed 1.5"}
    predict_images(out / "best.pt", seafloor, tmp_path / "rule.csv", workers=0)
    assert pd.read_csv(tmp_path / "rule.csv").decision.iloc[0].startswith("f1 (fit on val")


def test_a_calibrated_rule_reports_its_ece_and_evaluate_reproduces_it(seafloor, tmp_path):
    out = tmp_path / "run"
    extra = ("encoder.freeze=true", "decision.calibration=platt", "decision.min_positives=2")
    trained = train(config_for(seafloor, out, *extra))
    report = trained["calibration"]
    assert report["method"] == "platt" and {"ece_val_before", "ece_val_after", "ece_test_after"} <= set(
        report
    )
    assert report["ece_val_after"] <= report["ece_val_before"]  # fit on val: no worse there
    assert (out / "reliability.png").stat().st_size > 5000
    assert trained["decision"].endswith("platt-calibrated")
    evaluated = evaluate_checkpoint(out / "best.pt", seafloor, workers=0)
    assert evaluated["decided"] == trained["test_decided"]


def test_scores_npz_holds_what_re_scoring_needs(seafloor, tmp_path):
    from seabed_hmc.engine.data_and_model import prepare_data, transforms
    from seabed_hmc.engine.evaluation import load_scores, predict_inputs, split_inputs
    from seabed_hmc.engine.inference import load_for_inference

    out = tmp_path / "run"
    train(config_for(seafloor, out, "encoder.freeze=true", "train.epochs=1"))
    scores = load_scores(out / "scores.npz")
    model, hierarchy, record, config, cache = load_for_inference(out / "best.pt")
    assert scores["hierarchy"] == hierarchy and (scores["train_counts"] == record.train_counts.numpy()).all()
    data = prepare_data(config.data, config.train.seed)
    rows = data.splits["test"]
    from seabed_hmc.data.images import ImageDataset

    _, evaluation = transforms(config, record.normalisation)
    paths = data.table.frame["image"].iloc[rows].tolist()
    dataset = ImageDataset(paths, data.table.targets[rows], data.table.mask[rows], evaluation)
    inputs, _ = split_inputs(model, config, dataset, cache)
    probabilities, _, _ = predict_inputs(model, inputs, config, hierarchy)
    stored, targets, mask = scores["test"]
    assert abs(stored - probabilities.numpy()).max() <= 0.5 / 65535 + 1e-7  # quantised to 1/65535
    assert (targets == (inputs.targets.numpy() > 0.5)).all() and (mask == (inputs.mask.numpy() > 0.5)).all()


def test_calibrating_on_labels_outside_the_hierarchy_names_the_row(seafloor, tmp_path, capsys):
    out = tmp_path / "run"
    train(config_for(seafloor, out, "encoder.freeze=true", "train.epochs=1"))
    foreign = seafloor.parent / "foreign.csv"
    frame = pd.read_csv(seafloor)
    frame.loc[3, "labels"] = "Substrate > Mud"
    frame.to_csv(foreign, index=False)
    assert main(["calibrate", "--checkpoint", str(out / "best.pt"), "--manifest", str(foreign),
                 "--out", str(tmp_path / "c.pt")]) == 2  # fmt: skip
    error = capsys.readouterr().err
    assert "foreign.csv" in error and "row 5" in error and "Substrate > Mud" in error
