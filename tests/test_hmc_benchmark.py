"""The tabular trainer, one benchmark run, and the resumable benchmark script, on a tiny synthetic set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from seabed_hmc.engine.checkpoint import load_checkpoint
from seabed_hmc.engine.evaluation import load_scores
from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.losses import build_loss
from seabed_hmc.metrics import micro_average_precision
from seabed_hmc.models import EnsembleHead
from seabed_hmc_studies.hmc import benchmark
from seabed_hmc_studies.hmc.datasets import load_hmc_dataset
from seabed_hmc_studies.hmc.runs import METHODS, heads_for, run_one
from seabed_hmc_studies.hmc.tabular import TabularCheckpoint, TabularSettings, predict_tabular, train_tabular

LEAVES = ["01/01", "01/02", "02/01/01", "02/02"]
HIERARCHY_LINE = "01,01/01,01/02,02,02/01,02/01/01,02/02"


def toy_rows(rng: np.random.Generator, count: int) -> list[str]:
    """Four informative features; the label is the leaf whose feature is largest (plus noise)."""
    rows = []
    for _ in range(count):
        leaf = int(rng.integers(0, 4))
        features = rng.normal(size=4)
        features[leaf] += 2.5
        rows.append(",".join(f"{v:.4f}" for v in features) + f",{LEAVES[leaf]}")
    return rows


def write_toy_benchmark(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "HMC_data" / "datasets_FUN" / "toy_FUN"
    folder.mkdir(parents=True)
    header = "@RELATION toy\n" + "".join(f"@ATTRIBUTE f{i} numeric\n" for i in range(4))
    header += f"@ATTRIBUTE class hierarchical {HIERARCHY_LINE}\n@DATA\n"
    for split, count in (("train", 120), ("valid", 40), ("test", 100)):
        (folder / f"toy_FUN.{split}.arff").write_text(header + "\n".join(toy_rows(rng, count)) + "\n")
    return root / "HMC_data"


SETTINGS = {
    "hidden": 16,
    "epochs": 12,
    "learning_rate": 1e-2,
    "batch_size": 8,
    "weight_decay": 1e-5,
    "dropout": 0.1,
    "layers": 2,
    "heads": 3,
    "k": 2.0,
    "focal_min": 0.25,
    "omega": 0.25,
    "frequency": "exact",
    "hros_budget": 0.1,
}


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_benchmark(tmp_path_factory.mktemp("hmc"))


def three_leaf_problem(rows: int, separation: float, seed: int):
    """A learnable toy: three leaves, one feature per leaf raised by ``separation`` for its rows."""
    rng = np.random.default_rng(seed)
    leaves = ["a > b", "a > c", "d > e"]
    h = Hierarchy.from_paths(leaves, sep=" > ")
    leaf = rng.integers(0, 3, size=rows)
    features = torch.as_tensor(rng.normal(size=(rows, 3)) + separation * np.eye(3)[leaf], dtype=torch.float32)
    targets, mask = h.encode([leaves[i] for i in leaf])
    return h, features, targets, mask


def test_training_learns_and_is_deterministic():
    h, features, targets, mask = three_leaf_problem(200, 3.0, seed=1)
    loss_fn = build_loss("control", h)
    settings = TabularSettings(hidden=16, epochs=15, learning_rate=1e-2, batch_size=8, dropout=0.0)
    first = train_tabular(features, targets, mask, loss_fn, settings, seed=3)
    second = train_tabular(features, targets, mask, loss_fn, settings, seed=3)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    probabilities, spread = predict_tabular(first, features, h)
    accuracy = ((probabilities >= 0.5) == (targets > 0.5)).float().mean().item()
    assert accuracy > 0.95
    assert torch.all(spread == 0)  # one head


class IdenticalHeads(EnsembleHead):
    """Every head starts from the same weights, whatever the ensemble size."""

    def reset_parameters(self) -> None:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for parameter in [*self.weights, *self.biases]:
                one = torch.rand(parameter.shape[1:], generator=generator) - 0.5
                parameter.copy_(one.expand_as(parameter))


@pytest.mark.parametrize("heads", [2, 4])
def test_decay_per_head_makes_each_head_train_like_a_single_model(monkeypatch, heads):
    """Identical heads without dropout under the per-head MCLoss: with the decay divided by H each head
    follows the single-head run (Adam is scale-invariant up to eps); with the whole decay it does not."""
    monkeypatch.setattr("seabed_hmc_studies.hmc.tabular.EnsembleHead", IdenticalHeads)
    h, features, targets, mask = three_leaf_problem(64, 2.0, seed=2)
    loss_fn = build_loss("control", h)
    common = {"hidden": 8, "epochs": 10, "learning_rate": 1e-2, "batch_size": 8, "dropout": 0.0}
    common["weight_decay"] = 0.05  # large enough to matter in 80 steps

    def trained(heads: int, decay_per_head: bool) -> list[torch.Tensor]:
        settings = TabularSettings(**common, heads=heads, decay_per_head=decay_per_head)
        model = train_tabular(features, targets, mask, loss_fn, settings, seed=0)
        return [p.detach() for p in model.parameters()]

    single = trained(1, True)
    per_head = trained(heads, True)
    whole = trained(heads, False)
    for one, many, unscaled in zip(single, per_head, whole, strict=True):
        for head in range(heads):
            torch.testing.assert_close(many[head], one[0], rtol=1e-4, atol=1e-5)
        assert (unscaled[0] - one[0]).abs().max() > 1e-3
    assert TabularSettings(**common, heads=heads).optimizer_weight_decay == pytest.approx(0.05 / heads)


def test_allocator_tuning_applies_on_glibc():
    """The settings take (mallopt accepts them); the speed effect is measured by
    scripts/bench_tabular_step.py, not asserted in a timed test."""
    import platform

    from seabed_hmc.engine.allocator import keep_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator tuning applies to glibc only")
    assert keep_freed_memory() is True


def test_sample_indices_restrict_training():
    h = Hierarchy.from_paths(["a > b", "a > c"], sep=" > ")
    features = torch.randn(10, 2)
    targets, mask = h.encode(["a > b"] * 5 + ["a > c"] * 5)
    loss_fn = build_loss("control", h)
    settings = TabularSettings(hidden=4, epochs=2, learning_rate=1e-2, batch_size=2)
    only_b = train_tabular(features, targets, mask, loss_fn, settings, seed=0, sample_indices=np.arange(5))
    poisoned = features.clone()
    poisoned[5:] = float("nan")  # rows never drawn cannot matter
    same = train_tabular(poisoned, targets, mask, loss_fn, settings, seed=0, sample_indices=np.arange(5))
    for a, b in zip(only_b.parameters(), same.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["control", "hros", "imbalance_neg", "rare_node_gmu"])
def test_run_one_gives_a_complete_row(toy_data, name):
    dataset = load_hmc_dataset(toy_data, "toy_FUN")
    row = run_one(dataset, name, seed=0, settings=SETTINGS)
    assert row["dataset"] == "toy_FUN" and row["method"] == name and row["seed"] == 0
    assert row["heads"] == heads_for(name, SETTINGS) == (3 if name.startswith("rare_node") else 1)
    assert row["evaluated_nodes"] == 7 and row["test_samples"] == 100
    assert row["train_samples"] == (160 + 16 if name == "hros" else 160)  # train+valid, +10% clones
    # a learnable problem: far above the positive rate (~0.36 of known evaluated entries)
    assert row["au_prc"] > 0.8
    for key in ("f1_all", "recall_supported", "hierarchical_f1", "rare_node_recall", "seconds"):
        assert np.isfinite(row[key])
    assert set(yaml.safe_load(row["recall_by_depth"])) == {"1", "2", "3"}
    assert row["weight_target"] == (
        "negative" if name == "imbalance_neg" else "positive" if "rare" in name else ""
    )


def test_a_held_out_run_stores_its_fit_part_and_test_probabilities(toy_data, tmp_path):
    dataset = load_hmc_dataset(toy_data, "toy_FUN")
    scores = tmp_path / "run.npz"
    row = run_one(dataset, "control", seed=0, settings={**SETTINGS, "fit_part": "held_out"}, scores=scores)
    assert row["train_samples"] == 120 and row["fit_part"] == "valid" and row["fit_samples"] == 40
    stored = load_scores(scores)
    assert stored["val"][0].shape == (40, 8) and stored["test"][0].shape == (100, 8)  # 7 nodes and the root
    assert torch.equal(torch.as_tensor(stored["test"][1]), dataset.test.targets > 0.5)
    assert stored["hierarchy"].nodes == dataset.hierarchy.nodes
    # the stored test probabilities give the row's AU(PRC) (quantised to 1/65535)
    assert micro_average_precision(*stored["test"], stored["hierarchy"]) == pytest.approx(
        row["au_prc"], abs=1e-3
    )
    with pytest.raises(ValueError, match="fit_part 'valid' does not exist; choose from none, held_out"):
        run_one(dataset, "control", seed=0, settings={**SETTINGS, "fit_part": "valid"})


def test_every_method_is_buildable(toy_data):
    dataset = load_hmc_dataset(toy_data, "toy_FUN")
    quick = {**SETTINGS, "epochs": 1}
    for name in METHODS:
        assert 0 <= run_one(dataset, name, seed=1, settings=quick)["au_prc"] <= 1


@pytest.mark.slow
def test_script_appends_rows_and_resumes(toy_data, tmp_path):
    config = tmp_path / "config.yaml"
    defaults = {k: v for k, v in SETTINGS.items() if k not in ("hidden", "epochs", "learning_rate")}
    entry = {"hidden": 8, "epochs": 2, "learning_rate": 1e-2}
    config.write_text(yaml.safe_dump({"defaults": defaults, "datasets": {"toy_FUN": entry}}))
    out = tmp_path / "runs.csv"
    command = [
        sys.executable, "-m", "seabed_hmc_studies.hmc.benchmark", "--data", str(toy_data),
        "--datasets", "FUN", "--methods", "control", "imbalance", "--seeds", "0", "1",
        "--config", str(config), "--out", str(out),
    ]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "4 runs to do, 0 already" in first.stdout
    table = pd.read_csv(out)
    assert sorted(zip(table.method, table.seed, strict=True)) == [
        ("control", 0),
        ("control", 1),
        ("imbalance", 0),
        ("imbalance", 1),
    ]
    again = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "0 runs to do, 4 already" in again.stdout
    pd.testing.assert_frame_equal(pd.read_csv(out), table)
    missing = subprocess.run(
        [*command[:3], "--data", str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert missing.returncode != 0 and "is not a folder" in missing.stderr
    # an overridden setting is a different run: it is made, recorded, and resumed on its own key
    changed = [*command[:8], "control", "--seeds", "0", *command[-4:], "--set", "weight_decay=1e-3"]
    first = subprocess.run(changed, capture_output=True, text=True, check=True)
    assert "1 runs to do, 0 already" in first.stdout
    table = pd.read_csv(out, dtype={"overrides": str})
    assert table.overrides.fillna("").tolist() == ["", "", "", "", "weight_decay=0.001"]
    assert "0 runs to do, 1 already" in subprocess.run(changed, capture_output=True, text=True).stdout
    for bad, message in (("nonsense=1", "no setting 'nonsense'"), ("weight_decay", "expected key=value")):
        refused = subprocess.run([*changed[:-1], bad], capture_output=True, text=True)
        assert refused.returncode != 0 and message in refused.stderr
    # --rerun makes a finished run again and replaces its row in place; a changed AU(PRC) is reported
    before = pd.read_csv(out, dtype={"overrides": str})
    row = before.index[(before.method == "control") & (before.seed == 1)][0]
    tampered = before.copy()
    tampered.loc[row, "au_prc"] = 0.123
    tampered.to_csv(out, index=False)
    rerun = [*command[:8], "control", "--seeds", "1", *command[-4:], "--rerun"]
    result = subprocess.run(rerun, capture_output=True, text=True, check=True)
    assert "1 runs to do, 0 already" in result.stdout
    assert "differs from the replaced row's 0.123000" in result.stdout
    after = pd.read_csv(out, dtype={"overrides": str})
    assert len(after) == len(before)
    assert after.loc[row, "au_prc"] == pytest.approx(before.loc[row, "au_prc"], abs=1e-12)  # deterministic
    keys = ["method", "seed", "overrides"]
    pd.testing.assert_frame_equal(after[keys], before[keys])  # same rows, same order


def test_report_tables_and_statistics(tmp_path):
    """hmc_report.py on a synthetic runs table: reproduction verdicts and a paired test that must fire."""
    rows = []
    for dataset, published in (("toy_FUN", 0.30), ("other_FUN", 0.20)):
        for seed in range(6):
            depth = json.dumps({"1": 0.5, "2": 0.2, "3": 0.1})
            base = {"dataset": dataset, "seed": seed, "recall_by_depth": depth, "seconds": 10.0}
            metrics = {
                "au_prc": published + 0.001 * seed,
                "recall_all": 0.1,
                "f1_all": 0.1,
                "f1_supported": 0.1,
            }
            rows.append({**base, "method": "control", "heads": 1, **metrics, "rare_node_recall": 0.01})
            better = {**metrics, "recall_all": 0.2 + 0.01 * seed, "rare_node_recall": 0.05 + 0.01 * seed}
            rows.append({**base, "method": "rare_node_bbma", "heads": 5, **better})
            # the negative target below the positive one on node recall in every pair, equal elsewhere
            worse = {**better, "recall_all": better["recall_all"] - 0.05 - 0.001 * seed}
            rows.append({**base, "method": "rare_node_bbma_neg", "heads": 5, **worse})
            if dataset == "toy_FUN" and seed < 2:  # a second ensemble size for one dataset
                rows.append({**base, "method": "rare_node_bbma_neg", "heads": 20, **worse, "seconds": 99.0})
            # the GMU uncertainty: node recall 0.01 above bbma's in every pair, equal elsewhere
            gmu = {**worse, "recall_all": worse["recall_all"] + 0.01}
            rows.append({**base, "method": "rare_node_gmu_neg", "heads": 5, **gmu})
            # node weights alone: node recall 0.03 above rare_node_bbma_neg's in every pair
            weights = {**worse, "recall_all": worse["recall_all"] + 0.03}
            rows.append({**base, "method": "imbalance_neg", "heads": 1, **weights})
            if dataset == "toy_FUN":  # the whole decay on every head: node F1 lower by 0.02 + 0.001 * seed
                unscaled = {**worse, "f1_all": worse["f1_all"] - 0.02 - 0.001 * seed}
                overrides = "decay_per_head=False"
                rows.append(
                    {**base, "method": "rare_node_bbma_neg", "heads": 5, **unscaled, "overrides": overrides}
                )
            if dataset == "toy_FUN" and seed == 0:  # an overridden setting: kept out of the main tables
                changed = {**better, "au_prc": 0.9, "overrides": "weight_decay=1e-06"}
                rows.append({**base, "method": "rare_node_bbma", "heads": 5, **changed})
    for row in rows:  # the rare-node AP on some runs only (as for rows made before the metric)
        if row.get("overrides") or row["heads"] == 20:
            continue
        key = (row["dataset"], row["method"], row["seed"])
        if key[0] == "toy_FUN" and key[2] < 4 and key[1] in ("control", "rare_node_bbma_neg"):
            row["rare_node_ap"] = 0.10 + 0.01 * key[2] + (0.02 if key[1] != "control" else 0.0)
        if key == ("other_FUN", "rare_node_gmu_neg", 0):  # no control AP to pair with
            row["rare_node_ap"] = 0.5
    runs = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(runs, index=False)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"published_au_prc": {"other_FUN": 0.25, "toy_FUN": 0.30}}, sort_keys=False)
    )
    out = tmp_path / "hmc.md"
    out.write_text("# Notes kept\n\n<!-- tables:start -->\nold\n<!-- tables:end -->\n\nTail kept.\n")
    command = [
        sys.executable,
        "-m",
        "seabed_hmc_studies.hmc.report",
        "--runs",
        str(runs),
        "--config",
        str(config),
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, capture_output=True)
    text = out.read_text()
    assert text.startswith("# Notes kept") and text.rstrip().endswith("Tail kept.") and "\nold\n" not in text
    # toy_FUN: mean 0.3025 vs 0.30 -> within 0.01; other_FUN: 0.2025 vs 0.25 -> not
    assert "| toy_FUN | 0.300 | 0.3025 |" in text and "| other_FUN | 0.250 | 0.2025 |" in text
    reproduction = text.split("### All methods")[0]
    assert reproduction.count("| yes |") == 1 and reproduction.count("| NO |") == 1
    # rare-node recall better in all 12 pairs: exact two-sided Wilcoxon p = 2 / 2**12
    assert "p=0.000488" in text
    targets = text.split("### Which weight target")[1].split("###")[0]
    row = next(
        line for line in targets.splitlines() if line.startswith("| rare_node_bbma_neg vs rare_node_bbma |")
    )
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "12" and cells[3].startswith("-0.05") and "p=0.000488" in cells[3]
    assert cells[6].startswith("+0.0000") and "p=1" in cells[6]  # rare-node recall: identical pairs
    sizes = text.split("### Ensemble size")[1].split("###")[0]
    assert "| toy_FUN | rare_node_bbma_neg | yes | 20 | 2 |" in sizes and "| 99 |" in sizes
    assert "| toy_FUN | rare_node_bbma_neg | yes | 5 | 6 |" in sizes and "other_FUN" not in sizes
    assert "| rare_node_bbma_neg | no |" not in sizes  # no other size with the whole decay
    focal = text.split("### rare_node against the node weights")[1].split("###")[0]
    row = next(
        line for line in focal.splitlines() if line.startswith("| rare_node_bbma_neg vs imbalance_neg |")
    )
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "12" and cells[3].startswith("-0.0300") and "p=0.000488" in cells[3]
    assert "rare_node_bbma vs" not in focal  # no positive-target imbalance runs to pair with
    modes = text.split("### Uncertainty mode")[1].split("###")[0]
    row = next(line for line in modes.splitlines() if line.startswith("| rare_node_gmu_neg vs "))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert row.startswith("| rare_node_gmu_neg vs rare_node_bbma_neg |") and cells[1] == "12"
    assert cells[3].startswith("+0.0100") and "p=0.000488" in cells[3] and "p=1" in cells[2]
    assert "| rare_node_gmu vs" not in modes  # no positive-target gmu runs
    decay = text.split("### Weight decay per head")[1].split("###")[0]
    row = next(line for line in decay.splitlines() if line.startswith("| rare_node_bbma_neg vs "))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    # per-head decay above the whole decay in all 6 toy_FUN pairs: p = 2 / 2**6
    assert cells[1] == "6" and cells[4].startswith("+0.0225") and "p=0.0312" in cells[4]
    # the method table lists the datasets in the config's order (other_FUN first), not the CSV's
    methods = text.split("### All methods")[1].split("###")[0]
    assert methods.index("| other_FUN |") < methods.index("| toy_FUN |")
    assert (tmp_path / "hmc_recall_by_depth.png").stat().st_size > 1000
    assert "| toy_FUN | rare_node_bbma | 5 | 6 |" in methods
    assert "0.9000" not in text.split("### Runs with")[0]
    rare = text.split("### Rare-node average precision")[1].split("###")[0]
    assert "| toy_FUN | control | 1 | 4 |" in rare and "| other_FUN | rare_node_gmu_neg | 5 | 1 |" in rare
    assert "| toy_FUN | imbalance_neg |" not in rare  # runs without the metric are left out
    row = next(line for line in rare.splitlines() if line.startswith("| rare_node_bbma_neg | 4 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[4].startswith("+0.0200") and "p=0.125" in cells[4]  # 4 pairs, all up: 2 / 2**4
    assert "| rare_node_gmu_neg |" not in rare.split("Against control")[1]
    changed = text.split("### Runs with overridden settings")[1]
    assert "| toy_FUN | rare_node_bbma | 5 | (config) | 6 |" in changed
    assert "| toy_FUN | rare_node_bbma | 5 | weight_decay=1e-06 | 1 | 0.9000 |" in changed


class Killed(Exception):
    """Stands for the process being killed right after a checkpoint was written."""


class KilledAfterSave(TabularCheckpoint):
    """A checkpoint whose run dies just after saving the state of epoch ``die_at``."""

    def __init__(self, *args, die_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.die_at = die_at

    def save(self, state: dict) -> None:
        super().save(state)
        if state["epoch"] == self.die_at:
            raise Killed


def rare_node_problem():
    h, features, targets, mask = three_leaf_problem(64, 2.0, seed=4)
    loss_fn = build_loss("rare_node", h, targets, mask, uncertainty="gmu", weight_target="negative")
    settings = TabularSettings(hidden=16, epochs=6, learning_rate=1e-2, heads=3, batch_size=8, dropout=0.5)
    return features, targets, mask, loss_fn, settings


def test_a_killed_run_resumes_from_its_checkpoint_bit_for_bit(tmp_path):
    features, targets, mask, loss_fn, settings = rare_node_problem()
    whole = train_tabular(features, targets, mask, loss_fn, settings, seed=2)
    path = tmp_path / "run.pt"
    dying = KilledAfterSave(path, "run A", every_s=0, die_at=3)
    with pytest.raises(Killed):
        train_tabular(features, targets, mask, loss_fn, settings, seed=2, checkpoint=dying)
    assert path.exists() and not list(tmp_path.glob("*tmp*"))  # written whole, then renamed
    torch.manual_seed(12345)  # whatever the new process's random state is
    saver = TabularCheckpoint(path, "run A", every_s=0)
    resumed = train_tabular(features, targets, mask, loss_fn, settings, seed=2, checkpoint=saver)
    assert saver.resumed_epoch == 3 and saver.seconds_before > 0
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)  # dropout, shuffles and Adam's moments all went on where they stopped
    # (checked: without restoring either random state this comparison fails)
    state = load_checkpoint(path)
    assert state["epoch"] == 5  # the last save before the final epoch


def test_a_checkpoint_of_another_run_or_a_torn_one_is_not_resumed(tmp_path, caplog):
    features, targets, mask, loss_fn, settings = rare_node_problem()
    whole = train_tabular(features, targets, mask, loss_fn, settings, seed=2)
    path = tmp_path / "run.pt"
    with pytest.raises(Killed):
        train_tabular(
            features, targets, mask, loss_fn, settings, seed=2,
            checkpoint=KilledAfterSave(path, "run A", every_s=0, die_at=2),
        )  # fmt: skip
    for fingerprint, damage, message in (("run B", False, "different run"), ("run A", True, "corrupt")):
        if damage:
            path.write_bytes(b"not a checkpoint")
        saver = TabularCheckpoint(path, fingerprint, every_s=3600)
        caplog.clear()
        model = train_tabular(features, targets, mask, loss_fn, settings, seed=2, checkpoint=saver)
        assert saver.resumed_epoch == 0 and message in caplog.text and str(path) in caplog.text
        for a, b in zip(whole.parameters(), model.parameters(), strict=True):
            assert torch.equal(a, b)


@pytest.mark.slow
def test_run_one_resumes_and_the_script_removes_finished_checkpoints(toy_data, tmp_path, monkeypatch):
    dataset = load_hmc_dataset(toy_data, "toy_FUN")
    settings = {**SETTINGS, "hidden": 8, "epochs": 4}
    plain = run_one(dataset, "rare_node_gmu_neg", seed=0, settings=settings)
    assert plain["resumed_from_epoch"] == 0
    folder = tmp_path / "checkpoints"
    path = folder / benchmark.checkpoint_name("toy_FUN", "rare_node_gmu_neg", 0, 3, "")
    original = TabularCheckpoint.save

    def save_then_die(self, state):
        original(self, state)
        if state["epoch"] == 2:
            raise Killed

    monkeypatch.setattr(TabularCheckpoint, "save", save_then_die)
    with pytest.raises(Killed):
        run_one(
            dataset, "rare_node_gmu_neg", seed=0, settings=settings, checkpoint=path, checkpoint_every_s=0
        )
    monkeypatch.undo()
    assert path.exists()
    # the script, started again on the same run, goes on from epoch 2 and removes the file after the row
    config = tmp_path / "config.yaml"
    defaults = {k: v for k, v in settings.items() if k not in ("hidden", "epochs", "learning_rate")}
    entry = {k: settings[k] for k in ("hidden", "epochs", "learning_rate")}
    config.write_text(yaml.safe_dump({"defaults": defaults, "datasets": {"toy_FUN": entry}}))
    out = tmp_path / "runs.csv"
    command = [
        sys.executable, "-m", "seabed_hmc_studies.hmc.benchmark", "--data", str(toy_data),
        "--datasets", "toy_FUN", "--methods", "rare_node_gmu_neg", "--seeds", "0", "--config", str(config),
        "--out", str(out), "--checkpoints", str(folder), "--checkpoint-every", "0",
    ]  # fmt: skip
    status = subprocess.run([*command, "--status"], capture_output=True, text=True, check=True)
    assert "epoch 2 of 4" in status.stdout and not out.exists()  # --status lists, runs nothing
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "(resumed at epoch 2)" in result.stdout
    row = pd.read_csv(out).iloc[0]
    assert row.resumed_from_epoch == 2
    for key in ("au_prc", "f1_all", "recall_all", "rare_node_recall", "hierarchical_f1"):
        assert row[key] == pytest.approx(plain[key], abs=1e-12)  # the same run as the one never stopped
    assert not list(folder.iterdir())  # the finished run's checkpoint is gone
    status = subprocess.run([*command, "--status"], capture_output=True, text=True, check=True)
    assert "0 runs to do, 1 already" in status.stdout
    bad = subprocess.run([*command[:-1], "-5"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--checkpoint-every -5.0" in bad.stderr
