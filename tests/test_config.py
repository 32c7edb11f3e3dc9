"""Typed configs: YAML loading, --set overrides, errors naming the key and the file."""

from __future__ import annotations

import pytest
import yaml

from seabed_hmc.config import (
    ConfigError,
    RunConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
    save_config,
)


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
