"""Typed configs: YAML loading, --set overrides, errors naming the key and the file."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import yaml

from seabed_hmc.config import (
    ConfigError,
    FrequencyMode,
    LossName,
    OnDuplicate,
    Reduction,
    RunConfig,
    SelectionMetric,
    UncertaintyMode,
    WeightTarget,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
    read_yaml,
    save_config,
)
from seabed_hmc.hierarchy import Hierarchy


def write(tmp_path, tree) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_defaults_and_yaml_and_overrides(tmp_path):
    assert load_config() == RunConfig()
    path = write(tmp_path, {"encoder": {"name": "mobilenetv2_100", "freeze": True}, "train": {"epochs": 3}})
    config = load_config(path, ["train.epochs=7", "loss.uncertainty=gmu", "data.mean=[0.1, 0.2, 0.3]"])
    assert config.encoder.name == "mobilenetv2_100" and config.encoder.freeze is True
    assert (
        config.train.epochs == 7 and config.loss.uncertainty == "gmu" and config.data.mean == [0.1, 0.2, 0.3]
    )
    assert config.train.learning_rate == 1e-3  # untouched default
    assert load_config(None, ["train.learning_rate=1"]).train.learning_rate == 1.0  # int accepted as float
    assert load_config(None, ["loss.uncertainty=null"]).loss.uncertainty is None


def test_round_trip_through_a_saved_file(tmp_path):
    config = load_config(None, ["train.epochs=2", "data.columns={image: path}"])
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config
    assert config_from_dict(config_to_dict(config)) == config


@pytest.mark.parametrize(
    ("tree", "words"),
    [
        ({"train": {"epoch": 3}}, ["unknown key 'train.epoch'", "did you mean", "epochs", "run.yaml"]),
        ({"trian": {"epochs": 3}}, ["unknown key 'trian'", "train"]),
        ({"train": {"epochs": "three"}}, ["train.epochs", "expected int", "'three'", "run.yaml"]),
        ({"train": {"epochs": 2.5}}, ["train.epochs", "expected int"]),
        ({"train": {"channels_last": "yes"}}, ["train.channels_last", "true or false"]),
        ({"encoder": {"noise_alpha": True}}, ["encoder.noise_alpha", "expected float"]),
        ({"data": {"mean": [0.1, "x", 0.3]}}, ["data.mean[1]"]),
        ({"loss": 3}, ["loss", "mapping"]),
    ],
)
def test_bad_values_name_the_key_and_file(tmp_path, tree, words):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, tree))
    for word in words:
        assert word in str(error.value)


def test_bad_files_and_overrides(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listing)
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("train.epochs")
    with pytest.raises(ConfigError, match="--set overrides"):
        load_config(None, ["train.nonsense=1"])


def test_yaml_is_read_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("out: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_yaml_1_2_numbers_in_files_and_overrides(tmp_path):
    """``1e-4`` is a float wherever a user writes it (YAML 1.1 would make it the string '1e-4')."""
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  learning_rate: 1e-4\n  weight_decay: 5E-6\nhead:\n  dropout: .5\n")
    config = load_config(path, ["train.encoder_learning_rate=2e-5"])
    assert (config.train.learning_rate, config.train.weight_decay) == (1e-4, 5e-6)
    assert (config.head.dropout, config.train.encoder_learning_rate) == (0.5, 2e-5)
    assert read_yaml("a: 1e\nb: 1.5.2\nc: 10\nd: .inf") == {
        "a": "1e",
        "b": "1.5.2",
        "c": 10,
        "d": float("inf"),
    }


@pytest.mark.parametrize(
    ("override", "words"),
    [
        (
            "loss.uncertainty=bmma",
            r"loss.uncertainty \(--set overrides\): 'bmma' is not one of .*did you mean 'bbma'",
        ),
        (
            "loss.name=rare-node",
            r"loss.name .*'rare-node' is not one of \['control'.*did you mean 'rare_node'",
        ),
        ("train.selection_metric=auprc", r"train.selection_metric .*not one of .*did you mean 'au_prc'"),
        ("train.optimizer=sgd", r"train.optimizer .*'sgd' is not one of \['adamw', 'adam'\]"),
        ("train.bf16=maybe", r"train.bf16 .*expected bool or 'auto', got 'maybe'"),
        ("data.on_duplicate=ignore", r"data.on_duplicate .*'ignore' is not one of \['error', 'merge'\]"),
    ],
)
def test_a_choice_that_does_not_exist_fails_when_the_config_loads(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(None, [override])


def test_the_config_choices_are_the_library_registries():
    """config.py restates each registry (it imports nothing above it); they must stay equal."""
    from seabed_hmc.data.manifest import _ON_DUPLICATE
    from seabed_hmc.losses import FREQUENCY_MODES, PRESETS, UNCERTAINTY_MODES
    from seabed_hmc.losses.objective import REDUCTIONS, WEIGHT_TARGETS
    from seabed_hmc.metrics import evaluate_predictions

    assert set(get_args(LossName)) == set(PRESETS)
    assert set(get_args(UncertaintyMode)) == set(UNCERTAINTY_MODES)
    assert get_args(FrequencyMode) == tuple(FREQUENCY_MODES)
    assert get_args(WeightTarget) == tuple(WEIGHT_TARGETS) and get_args(Reduction) == tuple(REDUCTIONS)
    assert set(get_args(OnDuplicate)) == set(_ON_DUPLICATE)
    hierarchy = Hierarchy.from_paths(["a > b", "a > c"], sep=" > ")
    scores = evaluate_predictions(np.full((2, 3), 0.5), np.ones((2, 3)), None, hierarchy, np.ones(3))
    assert set(get_args(SelectionMetric)) <= set(scores)


def test_tile_config_from_a_file_with_flags_on_top(tmp_path):
    from seabed_hmc.config import TileConfig, load_tile_config

    file = tmp_path / "tiles.yaml"
    file.write_text(
        "tile_size: 5e2\nroi: [0, 0, 10, 10]\nscale: [0, 6000, 0, 6000, 0, 6000]\nbatch_size: 8\n"
    )
    settings = load_tile_config(file, {"batch_size": 16, "stride": None, "units": "crs"})
    assert settings == TileConfig(
        tile_size=500.0, roi=[0.0, 0.0, 10.0, 10.0], scale=[0.0, 6000.0] * 3, batch_size=16, units="crs"
    )
    assert settings.scale_pairs == ((0.0, 6000.0),) * 3
    assert load_tile_config() == TileConfig()
    with pytest.raises(ConfigError, match="roi"):
        load_tile_config(None, {"roi": [0, 0, 10]})
    with pytest.raises(ConfigError, match="'pixels', 'crs'"):
        load_tile_config(None, {"units": "metres"})
    with pytest.raises(ConfigError, match="scale"):
        TileConfig(scale=[0.0, 1.0, 2.0])


def test_the_config_reference_lists_every_key_with_its_default():
    """docs/config.md stays true: every key of a run config, of predict-tiles' settings and of a grid
    file is in its tables, with the default the code has."""
    import dataclasses
    import re

    from seabed_hmc.config import TileConfig
    from seabed_hmc.limited_data.grid import AblationConfig

    text = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    documented = {k: read_yaml(v) for k, v in re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", text, re.M)}

    def defaults(cls, prefix=""):
        for f in dataclasses.fields(cls):
            if f.name == "source":
                continue  # set by the loader, not a key
            value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(value) and prefix + f.name != "synthetic":
                yield from defaults(type(value), f"{prefix}{f.name}.")
            else:
                yield prefix + f.name, value

    expected = dict(defaults(RunConfig)) | dict(defaults(TileConfig)) | dict(defaults(AblationConfig))
    assert sorted(set(expected) - set(documented)) == []  # keys the reference does not list
    assert sorted(set(documented) - set(expected)) == []  # keys the code does not have
    wrong = {k: (documented[k], v) for k, v in expected.items() if documented[k] != v}
    assert wrong == {}


@pytest.mark.parametrize("name", ["ccr_benthic", "points", "quickstart"])
def test_the_shipped_run_configs_load(name):
    config = load_config(Path(__file__).parents[1] / "configs" / f"{name}.yaml")
    assert config.out and (config.data.manifest or config.data.image_folder)
