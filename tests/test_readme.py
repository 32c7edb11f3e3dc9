"""The README's commands stay valid: each ``seabed-hmc`` line parses with the command-line parser and
each ``make`` target exists (``scripts/check_readme.py`` runs them all)."""

from __future__ import annotations

import re
import shlex

import pytest

from seabed_hmc.cli import build_parser
from seabed_hmc_studies.readme import README, ROOT, readme_commands

COMMANDS = readme_commands(README)


def test_the_readme_has_the_two_commands_and_the_main_jobs():
    assert COMMANDS[:2] == ["make demo", "make test"]
    jobs = {shlex.split(c)[1] for c in COMMANDS if c.startswith("seabed-hmc ")}
    assert {"train", "evaluate", "predict", "ablate", "chips", "predict-tiles"} <= jobs


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("seabed-hmc ")])
def test_each_seabed_hmc_command_parses(command):
    words = shlex.split(command)
    build_parser().parse_args(words[1:])  # argparse exits (SystemExit) on an unknown flag or command
    for word in words:  # inputs inside the project exist (outputs under runs/ are made by earlier lines)
        if re.match(r"(configs|data_manifests)/", word):
            assert (ROOT / word).exists(), f"README names {word}, which does not exist"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("make ")])
def test_each_make_target_exists(command):
    targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
    assert shlex.split(command)[1] in targets
