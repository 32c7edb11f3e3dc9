"""Atomic writing: a file appears whole under its name or the old version stays; no temporaries left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seabed_hmc.atomic import atomic_path, write_text_atomic

PACKAGE = Path(__file__).resolve().parents[1] / "seabed_hmc"


def test_a_finished_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "deep" / "table.csv"  # the folder is made
    write_text_atomic(target, "old\n")
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as temporary:
            temporary.write_text("half a ta")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_the_suffix_serves_writers_that_append_one(tmp_path):
    target = tmp_path / "scores.npz"
    with atomic_path(target, suffix=".npz") as temporary:
        assert temporary.name.startswith(".scores.npz.tmp") and temporary.suffix == ".npz"
        np.savez(temporary, a=np.arange(3))  # numpy would add .npz to a name without it
    with np.load(target) as saved:
        assert saved["a"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.npz"]


def test_only_the_atomic_module_renames_files_into_place():
    renaming = sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if "os.replace(" in path.read_text()
    )
    assert renaming == ["atomic.py"]
