"""The CSV table writer that resumable studies (HMC benchmark, ablations) append to."""

from __future__ import annotations

import multiprocessing

import pandas as pd

from seabed_hmc.reporting import append_row

KEY = ["dataset", "method", "seed", "overrides"]


def _write(path, dataset, seeds):
    for seed in seeds:
        append_row(path, {"dataset": dataset, "method": "control", "seed": seed, "overrides": "", "au": 0.5})


def test_parallel_writers_lose_no_row(tmp_path):
    path = tmp_path / "runs.csv"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write, args=(path, f"set{w}", range(15))) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    table = pd.read_csv(path)
    assert len(table) == 45
    assert sorted(table.groupby("dataset").seed.apply(sorted).tolist()) == [list(range(15))] * 3


def test_key_keeps_the_first_row_of_a_run(tmp_path):
    path = tmp_path / "runs.csv"
    first = {"dataset": "eisen_FUN", "method": "control", "seed": 0, "overrides": "", "au": 0.30}
    assert append_row(path, first, key=KEY)
    # the same run written again (as read back: the empty override is NaN, the seed may be a float)
    assert not append_row(path, {**first, "seed": 0.0, "overrides": float("nan"), "au": 0.99}, key=KEY)
    # different override or seed: a different run
    assert append_row(path, {**first, "overrides": "decay_per_head=False"}, key=KEY)
    assert append_row(path, {**first, "seed": 1}, key=KEY)
    # without a key every row is appended
    assert append_row(path, first)
    table = pd.read_csv(path)
    assert len(table) == 4
    assert table.au.tolist() == [0.30, 0.30, 0.30, 0.30]


def test_replace_puts_the_new_row_in_the_old_ones_place(tmp_path):
    path = tmp_path / "runs.csv"
    for seed in range(3):
        append_row(
            path, {"dataset": "d", "method": "control", "seed": seed, "overrides": "", "au": 0.1}, key=KEY
        )
    again = {"dataset": "d", "method": "control", "seed": 1, "overrides": "", "au": 0.2, "rare_ap": 0.05}
    assert append_row(path, again, key=KEY, replace=True)
    table = pd.read_csv(path)
    assert table.seed.tolist() == [0, 1, 2]
    assert table.au.tolist() == [0.1, 0.2, 0.1]
    # a column only the new row has: empty for the others
    assert table.rare_ap.isna().tolist() == [True, False, True]
    # replace with a key that is not there yet: a plain append
    assert append_row(path, {**again, "seed": 3}, key=KEY, replace=True)
    assert pd.read_csv(path).seed.tolist() == [0, 1, 2, 3]
