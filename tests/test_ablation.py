"""The limited-data ablation grid: cells, resume, changed settings, failures, report and plots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from seabed_hmc.cli import main
from seabed_hmc.config import ConfigError
from seabed_hmc.data.synthetic import make_synthetic_seafloor
from seabed_hmc.limited_data.grid import build_cells, load_ablation_config, run_ablation
from seabed_hmc.limited_data.report import write_report
from seabed_hmc.limited_data.statistics import gain_trend, paired_gains
from seabed_hmc_studies import grid_rescore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seafloor(tmp_path_factory) -> Path:
    return make_synthetic_seafloor(tmp_path_factory.mktemp("seafloor"), images=60, size=32, seed=2)


def grid(tmp_path: Path, manifest: Path, **changes) -> Path:
    tree = {
        "run": {
            "data": {
                "manifest": str(manifest),
                "hierarchy": str(manifest.parent / "hierarchy.csv"),
                "workers": 0,
            },
            "encoder": {"name": "resnet18", "input_size": 32, "freeze": True},
            "head": {"hidden": 16},
            "train": {
                "epochs": 3,
                "batch_size": 8,
                "bf16": False,
                "cache_dir": str(tmp_path.parent / "cache"),
                "channels_last": False,
            },
        },
        "subsets": {"fractions": [0.25, 1.0], "min_positives": 1},
        "configurations": {
            "control": ["loss.name=control"],
            "rare_node_bbma": {"loss.name": "rare_node", "head.heads": 3},
        },
        "encoders": {"random": []},
        "seeds": [0, 1],
    }
    tree.update(changes)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_grid_writes_cells_subsets_report_and_resumes(seafloor, tmp_path, monkeypatch, capsys):
    config = load_ablation_config(grid(tmp_path, seafloor))
    out = tmp_path / "out"
    results = run_ablation(config, out, progress=False)
    assert len(results) == 8  # 2 configurations x 2 fractions x 2 seeds x 1 encoder
    assert set(results["configuration"]) == {"control", "rare_node_bbma"}
    assert results["au_prc"].between(0, 1).all() and results["rare_node_recall"].notna().all()
    # the subset files hold the rows each cell trained on, nested within a seed
    for seed in (0, 1):
        record = json.loads((out / "subsets" / f"seed{seed}.json").read_text())
        quarter, full = (set(level["train_positions"]) for level in record["levels"])
        assert quarter < full
        cell = results[(results["seed"] == seed) & (results["level"] == 0.25)]
        assert (cell["train_size"] == len(quarter)).all()
    assert not list(out.rglob("*.pt"))  # cells keep their best epoch in memory
    # a killed grid: drop two finished rows; a re-run trains those two only
    table = pd.read_csv(out / "results.csv")
    kept = table.iloc[2:]
    kept.to_csv(out / "results.csv", index=False)
    again = run_ablation(config, out, progress=False)
    assert len(again) == 8
    merged = again.set_index(["configuration", "level", "seed"]).loc[
        kept.set_index(["configuration", "level", "seed"]).index
    ]
    assert np.array_equal(merged["seconds"].to_numpy(), kept["seconds"].to_numpy())
    # report and plots from the table
    report = write_report(out)
    text = report.read_text()
    assert "| random | 0.25 | control | 2 |" in text
    assert "smallest possible two-sided p-value is 0.5" in text
    assert "under the decision rule fit on each cell's validation split" in text
    assert len(list((out / "cells").rglob("scores.npz"))) == 8  # every cell keeps its probabilities
    assert "node F1, fitted rule" in text and kept["decision"].str.startswith("f1 (fit on val").all()
    for name in ("au_prc_vs_fraction", "rare_node_recall_vs_fraction", "recall_by_depth", "gain_vs_control"):
        assert (out / f"{name}.png").stat().st_size > 1000
    # the stored probabilities alone re-score every cell (scripts/grid_rescore.py)
    monkeypatch.setattr(sys, "argv", ["grid_rescore.py", str(out)])
    grid_rescore.main()
    assert "8 cells re-scored" in capsys.readouterr().out
    keys = ["encoder", "configuration", "level", "seed"]
    rescored = pd.read_csv(out / "rescored.csv").merge(again, on=keys)
    gap = (rescored["decided_rare_node_recall_x"] - rescored["decided_rare_node_recall_y"]).abs()
    assert gap.max() < 0.05  # only probabilities quantised onto the other side of a threshold differ
    monkeypatch.setattr(sys, "argv", ["grid_rescore.py", str(out), "--set", "decision.policy=best"])
    with pytest.raises(SystemExit, match="decision.policy.*'f1'"):
        grid_rescore.main()


def test_changed_settings_are_not_silently_reused(seafloor, tmp_path):
    out = tmp_path / "out"
    run_ablation(load_ablation_config(grid(tmp_path, seafloor, seeds=[0])), out, progress=False)
    changed = grid(tmp_path, seafloor, seeds=[0], subsets={"fractions": [0.25, 1.0], "min_positives": 3})
    with pytest.raises(ConfigError, match="different settings"):
        run_ablation(load_ablation_config(changed), out, progress=False)


# a valid config whose loss fails at its first step (gmu needs an ensemble)
BREAKS_IN_TRAINING = ["loss.name=rare_node", "loss.uncertainty=gmu", "head.heads=1"]


def test_a_choice_that_does_not_exist_stops_the_grid_before_any_cell(seafloor, tmp_path):
    path = grid(tmp_path, seafloor, configurations={"control": ["loss.name=rare-node"]})
    with pytest.raises(ConfigError, match=r"loss.name .*configuration control.*did you mean 'rare_node'"):
        run_ablation(load_ablation_config(path), tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "cells").exists()


def test_a_failing_cell_is_recorded_and_the_grid_goes_on(seafloor, tmp_path):
    path = grid(
        tmp_path,
        seafloor,
        seeds=[0],
        subsets={"fractions": [1.0]},
        configurations={"control": ["loss.name=control"], "broken": BREAKS_IN_TRAINING},
    )
    out = tmp_path / "out"
    results = run_ablation(load_ablation_config(path), out, progress=False)
    assert list(results["configuration"]) == ["control"]
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed["configuration"]) == ["broken"] and "needs at least 2 heads" in failed["error"].iloc[0]


def test_per_leaf_mode(seafloor, tmp_path):
    path = grid(tmp_path, seafloor, seeds=[0], subsets={"per_leaf": [1, 3]})
    out = tmp_path / "out"
    results = run_ablation(load_ablation_config(path), out, progress=False)
    assert set(results["mode"]) == {"per_leaf"} and set(results["level"]) == {1.0, 3.0}
    small, large = (results[results["level"] == k]["train_size"].iloc[0] for k in (1.0, 3.0))
    assert small < large
    assert "examples per leaf" in write_report(out).read_text() or (out / "au_prc_vs_k.png").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"subsets": {"fractions": [0.5], "per_leaf": [1]}}, "exactly one"),
        ({"control": "baseline"}, "not one of the configurations"),
        ({"encoders": {}}, "encoders is empty"),
        ({"seeds": "zero"}, "seeds"),
        ({"subsets": {"fractions": [0.5], "min_positivs": 1}}, "min_positives"),
    ],
)
def test_grid_config_errors_name_the_key(seafloor, tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_ablation_config(grid(tmp_path, seafloor, **changes))


def test_a_typo_in_a_cell_override_fails_before_training(seafloor, tmp_path):
    path = grid(tmp_path, seafloor, configurations={"control": ["loss.nmae=control"]})
    with pytest.raises(ConfigError, match="loss.nmae"):
        build_cells(load_ablation_config(path), tmp_path / "out")


def test_paired_gains_are_paired_differences():
    runs = pd.DataFrame(
        {
            "encoder": ["e"] * 4,
            "configuration": ["control", "control", "m", "m"],
            "level": [0.5] * 4,
            "seed": [0, 1, 0, 1],
            "rare_node_recall": [0.1, 0.3, 0.4, 0.2],
        }
    )
    gains = paired_gains(runs, "control", "rare_node_recall")
    assert gains["gain"].iloc[0] == pytest.approx(((0.4 - 0.1) + (0.2 - 0.3)) / 2)


def test_gain_trend_is_spearman_over_paired_gains():
    """A gain that shrinks with the fraction gives rho < 0 (larger with less data) and equals
    scipy's Spearman on the paired differences; a constant gain has no trend to test."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    levels, seeds = [0.05, 0.1, 0.25, 0.5, 1.0], range(5)
    rows = []
    for level in levels:
        for seed in seeds:
            control = rng.uniform(0.2, 0.6)
            rows.append(("e", "control", level, seed, control, 0.5))
            rows.append(
                ("e", "weighted", level, seed, control + 0.3 * (1 - level) + rng.normal(0, 0.02), 0.5)
            )
            rows.append(("e", "flat", level, seed, control + 0.1, 0.5))
            # below control everywhere, less so with less data: "less harm", not "grows"
            rows.append(("e", "harmful", level, seed, control - 0.1 - 0.2 * level, 0.5))
            # node F1: the same gain at the two ends and a bump in the middle: Spearman's rho exactly 0
            bump = {0.05: 0.0, 0.1: 0.1, 0.25: 0.2, 0.5: 0.1, 1.0: 0.0}[level]
            rows.append(("e", "bump", level, seed, control, 0.5 + bump))
    runs = pd.DataFrame(
        rows, columns=["encoder", "configuration", "level", "seed", "rare_node_recall", "f1_all"]
    )
    table = gain_trend(runs, "control", ("rare_node_recall", "f1_all")).set_index(["configuration", "metric"])
    weighted = table.loc[("weighted", "rare-node recall")]
    pairs = (
        runs[runs.configuration == "weighted"].rare_node_recall.to_numpy()
        - runs[runs.configuration == "control"].rare_node_recall.to_numpy()
    )
    expected = spearmanr(runs[runs.configuration == "control"].level, pairs)
    assert (
        weighted["pairs"] == 25
        and weighted["rho"] == pytest.approx(expected.statistic)
        and weighted["rho"] < -0.8
    )
    assert weighted["p (Holm)"] < 0.05 and weighted["reading"] == "grows as data shrink (Holm p < 0.05)"
    assert weighted["gain, smallest level"] == pytest.approx(0.3 * 0.95, abs=0.03)
    assert weighted["gain, largest level"] == pytest.approx(0, abs=0.03)
    assert np.isnan(table.loc[("weighted", "node F1"), "rho"])  # F1 equal everywhere: no gain at all
    orphan = runs[runs.configuration == "weighted"].assign(encoder="no control yet")  # a partial grid
    lonely = gain_trend(pd.concat([runs, orphan]), "control", ("rare_node_recall",))
    assert lonely.set_index("encoder").loc["no control yet", "reading"] == "no pairs with control yet"
    flat = table.loc[("flat", "rare-node recall")]
    assert np.isnan(flat["rho"]) and flat["reading"] == "no variation (the same gain everywhere)"
    harmful = table.loc[("harmful", "rare-node recall")]
    assert harmful["rho"] < -0.8 and harmful["reading"] == "less harm as data shrink (Holm p < 0.05)"
    bump = table.loc[("bump", "node F1")]
    assert abs(bump["rho"]) < 1e-12 and bump["reading"] == "no trend (not significant)"


def test_quick_config_builds_its_cells(tmp_path):
    config = load_ablation_config(ROOT / "configs" / "ablation_quick.yaml")
    cells = build_cells(config, tmp_path)
    assert len(cells) == 3 * 4 * 2 * 3
    assert {c.config.encoder.name for c in cells} == {"resnet18"}


def test_cli_ablate_and_report_only(seafloor, tmp_path, capsys):
    path = grid(tmp_path, seafloor, seeds=[0], subsets={"fractions": [1.0]})
    out = tmp_path / "out"
    assert main(["ablate", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    assert "2 cells" in capsys.readouterr().out
    (out / "report.md").unlink()
    assert main(["ablate", "--config", str(path), "--out", str(out), "--report-only"]) == 0
    assert (out / "report.md").exists()
    assert main(["ablate", "--config", str(tmp_path / "missing.yaml"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_grid_whose_first_cells_all_fail_stops(seafloor, tmp_path):
    path = grid(tmp_path, seafloor, configurations={"control": BREAKS_IN_TRAINING})
    with pytest.raises(RuntimeError, match="first 3 cells all failed"):
        run_ablation(load_ablation_config(path), tmp_path / "out", progress=False)
    assert len(pd.read_csv(tmp_path / "out" / "failed.csv")) == 3


def test_only_runs_the_selected_cells_of_the_same_grid(seafloor, tmp_path):
    from seabed_hmc.limited_data.grid import parse_only

    config = load_ablation_config(grid(tmp_path, seafloor))
    out = tmp_path / "out"
    first = run_ablation(config, out, progress=False, only=parse_only(["level=1", "seed=0"]))
    assert set(first["level"]) == {1.0} and set(first["seed"]) == {0} and len(first) == 2
    assert len(run_ablation(config, out, progress=False)) == 8  # the rest, same grid
    with pytest.raises(ConfigError, match="KEY"):
        parse_only(["fraction=1"])
    with pytest.raises(ConfigError, match="int"):
        parse_only(["seed=a"])


@pytest.mark.slow
def test_the_quick_grid_runs_end_to_end_on_a_reduced_set(tmp_path, capsys):
    """configs/ablation_quick.yaml as shipped, reduced by grid overrides to a few cells."""
    config = ROOT / "configs" / "ablation_quick.yaml"
    overrides = [
        "seeds=[0]",
        "synthetic.images=120",
        "subsets.fractions=[0.25,1.0]",
        "encoders={random_32px: [encoder.input_size=32]}",
        "configurations={control: [loss.name=control], rare_node_bbma: [loss.name=rare_node, head.heads=3]}",
        "set=[train.epochs=5]",
    ]
    argv = ["ablate", "--config", str(config), "--out", str(tmp_path / "quick"), "--no-progress"]
    assert main([*argv, *(f"--set={o}" for o in overrides)]) == 0
    results = pd.read_csv(tmp_path / "quick" / "results.csv")
    assert len(results) == 4 and results["au_prc"].between(0, 1).all()
    report = (tmp_path / "quick" / "report.md").read_text()
    assert "4 of 4 finished cells" in report and "## Summary" in report
    assert (tmp_path / "quick" / "data" / "manifest.csv").exists()  # the synthetic set, generated


def test_the_cell_digest_ignores_settings_left_at_their_defaults():
    from seabed_hmc.limited_data.grid import _non_default

    defaults = {"train": {"epochs": 20, "seed": 0}, "encoder": {"name": None, "batchnorm_refit": 0}}
    values = {"train": {"epochs": 40, "seed": 0}, "encoder": {"name": "resnet18", "batchnorm_refit": 0}}
    assert _non_default(values, defaults) == {"train": {"epochs": 40}, "encoder": {"name": "resnet18"}}
    older = {"train": {"epochs": 40, "seed": 0}, "encoder": {"name": "resnet18"}}  # before the new key
    assert _non_default(older, defaults) == _non_default(values, defaults)
