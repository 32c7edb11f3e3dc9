"""Every remedy an error suggests exists where the user is: a flag on that command, a key in a config."""

from __future__ import annotations

import ast
import dataclasses
import re
import typing
from pathlib import Path

import pandas as pd
import pytest

import seabed_hmc
from seabed_hmc.cli import CONFIG_COMMANDS, build_parser, main
from seabed_hmc.config import RunConfig, load_config
from seabed_hmc.data.synthetic import make_synthetic_seafloor
from seabed_hmc.remedies import CONFIG, OPTIONS, option, surface
from tests.test_train import tiny_config

PACKAGE = Path(seabed_hmc.__file__).parent
SECTIONS = ("data", "encoder", "head", "loss", "train")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
CONFIG_KEY = re.compile(r"\b(data|encoder|head|loss|train)\.([a-z_]+)\b")
FOREIGN_FLAGS = {"--no-deps", "--nproc_per_node"}  # pip's and torchrun's, named in install/launch hints


def command_flags() -> dict[str, set[str]]:
    """{subcommand: its option strings}, read from the real parser."""
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    return {
        name: {flag for action in sub._actions for flag in action.option_strings}
        for name, sub in commands.items()
    }


def config_keys() -> set[str]:
    hints = typing.get_type_hints(RunConfig)
    return {f"{section}.{field.name}" for section in SECTIONS for field in dataclasses.fields(hints[section])}


def message_strings() -> list[tuple[str, int, str]]:
    """(file, line, text) of every string in the package that is not a docstring."""
    found = []
    for file in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(file.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found.append((file.name, node.lineno, node.value))
    return found


def test_every_registered_flag_exists_on_the_commands_it_names():
    flags = command_flags()
    keys = config_keys()
    for name, spelled in OPTIONS.items():
        for command in spelled.commands:
            assert spelled.flag in flags[command], f"{name}: {command} has no {spelled.flag}"
        if spelled.config:
            assert spelled.config in keys, f"{name}: no config key {spelled.config}"


def test_no_message_spells_an_option_by_hand_that_does_not_exist():
    top = {flag for action in build_parser()._actions for flag in action.option_strings}
    flags = set().union(top, *command_flags().values()) | FOREIGN_FLAGS
    keys = config_keys()
    for file, line, text in message_strings():
        if file == "remedies.py":
            continue
        assert not re.search(r"\bpass [a-z_]+=", text), f"{file}:{line} spells a Python argument: {text!r}"
        for flag in FLAG.findall(text):
            assert flag in flags, f"{file}:{line} names {flag}, which no command has"
        for section, key in CONFIG_KEY.findall(text):
            if key in ("py", "pt", "csv", "yaml", "json"):  # file names such as train.py
                continue
            assert f"{section}.{key}" in keys, f"{file}:{line} names {section}.{key}, not a config key"


@pytest.mark.parametrize("where", ["python", CONFIG, "evaluate", "hierarchy", "chips", "predict"])
def test_each_surface_gets_only_its_own_spelling(where):
    flags, keys = command_flags(), config_keys()
    with surface(where):
        for name in OPTIONS:
            spelled = option(name, "x")
            if spelled is None:
                continue
            if where == CONFIG:
                assert spelled.split()[1].rstrip(":") in keys
            elif where != "python":
                assert spelled.split()[1] in flags[where]


def test_config_commands_are_commands():
    assert set(CONFIG_COMMANDS) <= set(command_flags())


@pytest.fixture(scope="module")
def seafloor(tmp_path_factory) -> Path:
    return make_synthetic_seafloor(tmp_path_factory.mktemp("seafloor"), images=24, size=32, seed=5)


def suggested_flags(error: str) -> list[str]:
    return FLAG.findall(error)


def test_evaluate_outside_root_suggests_flags_that_work(seafloor, tmp_path, capsys):
    from seabed_hmc.engine.train import train

    out = tmp_path / "run"
    train(tiny_config(seafloor, out, "loss.name=control", "train.epochs=1"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    frame = pd.read_csv(seafloor)
    frame["image"] = [str(seafloor.parent / image) for image in frame["image"]]  # absolute, elsewhere
    moved = elsewhere / "manifest.csv"
    frame.to_csv(moved, index=False)
    base = ["evaluate", "--checkpoint", str(out / "best.pt"), "--manifest", str(moved), "--workers", "0"]
    assert main(base) == 2
    error = capsys.readouterr().err
    assert "outside the root folder" in error and "root=" not in error and "allow_outside_root" not in error
    flags = suggested_flags(error)
    assert flags == ["--root", "--allow-outside-root"]
    assert all(flag in command_flags()["evaluate"] for flag in flags)
    assert main([*base, "--allow-outside-root"]) == 0
    assert main([*base, "--root", str(seafloor.parent)]) == 0
    capsys.readouterr()
    # the same mistake in a config: the remedy is a config key
    with surface(CONFIG), pytest.raises(ValueError) as raised:
        from seabed_hmc.engine.data_and_model import read_table

        read_table(load_config(None, [f"data.manifest={moved}"]).data)
    assert "set data.image_root in the config" in str(raised.value)
    assert "set data.allow_outside_root: true in the config" in str(raised.value)


def test_hierarchy_show_suggests_flags_that_work(tmp_path, capsys):
    paths = tmp_path / "paths.csv"
    paths.write_text("Biota > Kelp,common\nBiota > Sponges,rare\nBiota > Kelp,again\n")
    assert main(["hierarchy", "show", str(paths)]) == 2
    error = capsys.readouterr().err
    assert "pass --column to pick the path column" in error and "column=" not in error
    assert main(["hierarchy", "show", str(paths), "--column", "0"]) == 2
    error = capsys.readouterr().err
    assert "listed twice" in error and "pass --on-duplicate ignore" in error
    assert main(["hierarchy", "show", str(paths), "--column", "0", "--on-duplicate", "ignore"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["Biota   (not evaluated)", "  Kelp", "  Sponges"]


def test_hierarchy_show_reads_a_manifests_labels(seafloor, capsys):
    assert main(["hierarchy", "show", str(seafloor)]) == 0
    shown = capsys.readouterr().out
    assert "from the labels of manifest" in shown and "\n      Flat sand" in shown and "|" not in shown
