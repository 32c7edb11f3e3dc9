"""Run the HMC benchmarks: datasets x methods x seeds, one CSV row per finished run.

    python scripts/hmc_benchmark.py --data ../shared/data/hmc_benchmarks/HMC_data \
        --datasets cellcycle_FUN --methods control --seeds 0 1 2 --out results/hmc.csv

Finished (dataset, method, seed, heads) rows already in the CSV are skipped, so a killed study resumes
where it stopped.  Each row is appended under a file lock and the file is replaced atomically, so
several jobs (``--jobs``) or several invocations can share one CSV; a run that two invocations both
picked is written once (the first row is kept).  ``--rerun`` makes finished runs again and replaces
their rows in place (to add a metric column to old rows); the runs are deterministic, and a rerun
whose AU(PRC) differs from the replaced row's is reported.  Per-dataset hyper-parameters come
from ``configs/hmc_benchmarks.yaml``; ``--datasets`` also takes the groups FUN, GO, others and all.
``--set KEY=VALUE`` overrides one setting for every run of the invocation (e.g. ``--set
weight_decay=2e-6``); the overrides are recorded in the row's ``overrides`` column, which is part of
the resume key, so such runs sit beside the default-setting ones in the same CSV.

A run also resumes from inside: training saves its state to ``--checkpoints`` (default
``runs/hmc_checkpoints/``) every ``--checkpoint-every`` seconds (default 600), and a run started
again after a kill goes on from its last save, bit for bit the run it would have been; the file is
removed once the row is written.  So a run longer than the time a machine is held can be finished
in pieces: start the same command again.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from seabed_hmc.config import ConfigError, parse_override, read_yaml
from seabed_hmc.engine.checkpoint import CheckpointError, load_checkpoint
from seabed_hmc.reporting import append_row
from seabed_hmc_studies import ROOT, SHARED_DATA
from seabed_hmc_studies.hmc.datasets import available_hmc_datasets, load_hmc_dataset
from seabed_hmc_studies.hmc.runs import METHODS, heads_for, run_one

DEFAULT_CONFIG = ROOT / "configs" / "hmc_benchmarks.yaml"
DEFAULT_DATA = SHARED_DATA / "hmc_benchmarks" / "HMC_data"
KEY = ["dataset", "method", "seed", "heads", "overrides"]
GROUPS = {
    "FUN": lambda name: name.endswith("_FUN"),
    "GO": lambda name: name.endswith("_GO"),
    "others": lambda name: not name.endswith(("_FUN", "_GO")),
}


def load_config(path: Path) -> dict:
    with open(path) as handle:
        config = read_yaml(handle)
    for key in ("defaults", "datasets"):
        if key not in (config or {}):
            raise SystemExit(f"{path}: missing top-level key {key!r}")
    return config


def dataset_settings(config: dict, name: str, heads: int | None, overrides: dict | None = None) -> dict:
    if name not in config["datasets"]:
        raise SystemExit(
            f"dataset {name!r} has no entry under 'datasets' in the config; add its hyper-parameters"
        )
    settings = {**config["defaults"], **config["datasets"][name]}
    if heads is not None:
        settings["heads"] = heads
    for key, value in (overrides or {}).items():
        if key not in settings:
            known = ", ".join(sorted(settings))
            raise SystemExit(f"--set {key}: {name} has no setting {key!r}; the settings are: {known}")
        settings[key] = value
    return settings


def parse_overrides(pairs: list[str]) -> dict:
    """``["weight_decay=2e-6", ...]`` as a dict, each value read as the run config's ``--set`` reads it."""
    overrides = {}
    for pair in pairs:
        try:
            key, value = parse_override(pair, example="weight_decay=2e-6")
        except ConfigError as error:
            raise SystemExit(str(error)) from None
        overrides[key] = value
    return overrides


def overrides_text(overrides: dict) -> str:
    """The canonical text of the overrides, as stored in the ``overrides`` column ("" for none)."""
    return ";".join(f"{key}={overrides[key]}" for key in sorted(overrides))


def expand_datasets(names: list[str], config: dict, data: Path) -> list[str]:
    available = set(available_hmc_datasets(data))
    chosen: list[str] = []
    for name in names:
        if name == "all" or name in GROUPS:
            test = GROUPS.get(name, lambda _: True)
            chosen += [d for d in config["datasets"] if test(d) and d in available]
        else:
            chosen.append(name)
    return list(dict.fromkeys(chosen))


def finished_keys(out: Path) -> dict[tuple, float]:
    """The runs already in ``out``: resume key -> AU(PRC)."""
    if not out.exists():
        return {}
    table = pd.read_csv(out, dtype={"overrides": str})
    if "overrides" not in table:  # tables written before the column existed: default settings
        table["overrides"] = ""
    table = table.fillna({"overrides": ""}).astype({"seed": int, "heads": int})
    return {tuple(row[:-1]): row[-1] for row in table[[*KEY, "au_prc"]].itertuples(index=False)}


@functools.lru_cache(maxsize=4)
def cached_dataset(data: str, name: str):
    return load_hmc_dataset(data, name)


def run_job(
    data: str,
    name: str,
    method: str,
    seed: int,
    settings: dict,
    threads: int,
    out: str,
    overrides: str = "",
    replace: bool = False,
    checkpoints: str | None = None,
    checkpoint_every: float = 600.0,
    scores: str | None = None,
    device: str = "cpu",
) -> dict:
    import torch

    torch.set_num_threads(threads)
    dataset = cached_dataset(data, name)
    path = None
    if checkpoints is not None:
        path = Path(checkpoints) / checkpoint_name(name, method, seed, heads_for(method, settings), overrides)
    scores_path = None
    if scores is not None:
        scores_path = Path(scores) / checkpoint_name(
            name, method, seed, heads_for(method, settings), overrides
        )
        scores_path = scores_path.with_suffix(".npz")
    row = run_one(
        dataset,
        method,
        seed,
        settings,
        checkpoint=path,
        checkpoint_every_s=checkpoint_every,
        scores=scores_path,
        device=device,
    )
    row["overrides"] = overrides
    if not append_row(Path(out), row, key=KEY, replace=replace):
        print(
            f"# {name} {method} seed {seed}: another process already wrote this run; its row kept", flush=True
        )
    if path is not None:  # the row is safe: the training state is not needed any more
        path.unlink(missing_ok=True)
    return row


def checkpoint_progress(path: Path, settings: dict) -> str:
    """How far the checkpoint at ``path`` has got, in words ("not started" when there is none)."""
    if not path.exists():
        return "not started"
    try:
        state = load_checkpoint(path)
    except CheckpointError as error:
        return f"{error}; it would start afresh"
    return (
        f"epoch {state['epoch']} of {settings['epochs']} ({state['seconds'] / 60:.0f} min of training so far)"
    )


def checkpoint_name(name: str, method: str, seed: int, heads: int, overrides: str) -> str:
    """The checkpoint file of one resume key (overrides reduced to file-name-safe characters)."""
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", overrides) if overrides else "default"
    return f"{name}__{method}__seed{seed}__heads{heads}__{tag}.pt"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the HMC_data folder")
    parser.add_argument("--datasets", nargs="+", default=["FUN"], help="names, or FUN / GO / others / all")
    parser.add_argument("--methods", nargs="+", default=["control"], choices=sorted(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--heads", type=int, default=None, help="ensemble size (overrides the config)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config setting for these runs, e.g. weight_decay=2e-6 (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "hmc.csv")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)"
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="run finished runs again and replace their rows in place (e.g. to add a new metric column); "
        "a rerun whose AU(PRC) differs from the old row's is reported",
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=ROOT / "runs" / "hmc_checkpoints",
        help="folder of the training-state files that let a killed run resume (default runs/hmc_checkpoints)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="least time between saves of the training state (default 600; 0: after every epoch)",
    )
    parser.add_argument("--no-checkpoints", action="store_true", help="do not save training states")
    parser.add_argument(
        "--scores",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="store each run's test (and held-out fit part's) probabilities there, compressed, named like "
        "its checkpoint; scripts/hmc_decisions.py re-scores decision rules from them",
    )
    parser.add_argument("--device", default="cpu", help="where the heads train: cpu (default) or cuda")
    parser.add_argument(
        "--status",
        action="store_true",
        help="run nothing: list the runs still to do and how far each one's checkpoint has got",
    )
    return parser


def main() -> None:
    args = _parser().parse_args()

    if args.checkpoint_every < 0:
        raise SystemExit(f"--checkpoint-every {args.checkpoint_every}: give seconds >= 0")
    if not args.data.is_dir():
        raise SystemExit(
            f"--data {args.data} is not a folder; point it at ../shared/data/hmc_benchmarks/HMC_data"
        )
    config = load_config(args.config)
    datasets = expand_datasets(args.datasets, config, args.data)
    overrides = parse_overrides(args.set)
    tag = overrides_text(overrides)
    done = finished_keys(args.out)
    jobs = [
        (name, method, seed, settings)
        for seed in args.seeds
        for name in datasets
        for settings in [dataset_settings(config, name, args.heads, overrides)]
        for method in args.methods
        if args.rerun or (name, method, seed, heads_for(method, settings), tag) not in done
    ]
    skipped = len(args.seeds) * len(datasets) * len(args.methods) - len(jobs)
    print(f"# {' '.join(sys.argv)}", flush=True)
    print(f"# {len(jobs)} runs to do, {skipped} already in {args.out}", flush=True)
    if args.status:
        _print_status(jobs, args.checkpoints, tag)
        return
    if args.rerun:
        print(f"# --rerun: {len(done)} finished rows in {args.out} may be replaced", flush=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    start = time.perf_counter()
    checkpoints = None if args.no_checkpoints else str(args.checkpoints)
    submit_args = [
        (
            str(args.data),
            name,
            method,
            seed,
            settings,
            threads,
            str(args.out),
            tag,
            args.rerun,
            checkpoints,
            args.checkpoint_every,
            None if args.scores is None else str(args.scores),
            args.device,
        )
        for name, method, seed, settings in jobs
    ]
    if args.jobs == 1:  # in this process: no start-up cost, plain tracebacks
        outcomes = ((job, run_or_report(job)) for job in submit_args)
    else:
        pool = ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn"))
        futures = {pool.submit(run_job, *job): job for job in submit_args}
        outcomes = ((futures[f], outcome(f)) for f in as_completed(futures))
    for job, row in outcomes:
        _, name, method, seed, *_ = job
        before = None if isinstance(row, Exception) else done.get((name, method, seed, row["heads"], tag))
        _print_outcome(job, row, before, start)


def _print_status(jobs: list, checkpoints: Path, tag: str) -> None:
    """The runs still to do and how far each one's checkpoint has got."""
    for name, method, seed, settings in jobs:
        heads = heads_for(method, settings)
        progress = checkpoint_progress(
            checkpoints / checkpoint_name(name, method, seed, heads, tag), settings
        )
        print(f"{name:14s} {method:18s} seed {seed}  heads {heads:2d}  {progress}")


def _print_outcome(job: tuple, row: dict | Exception, before: float | None, start: float) -> None:
    """One line per finished run; a failure is reported and the study goes on; a rerun whose AU(PRC)
    differs from the row it replaces (``before``) is noted."""
    _, name, method, seed, *_ = job
    if isinstance(row, Exception):  # report and go on: one failed run must not stop the study
        print(f"FAILED {name} {method} seed {seed}: {type(row).__name__}: {row}", flush=True)
        return
    print(
        f"{name:14s} {method:18s} seed {seed}  AU(PRC) {row['au_prc']:.4f}  "
        f"F1 {row['f1_all']:.4f}  rare recall {row['rare_node_recall']:.4f}  {row['seconds']:.0f} s"
        f"  [{time.perf_counter() - start:.0f} s elapsed]"
        + (f"  (resumed at epoch {row['resumed_from_epoch']})" if row.get("resumed_from_epoch") else ""),
        flush=True,
    )
    if before is not None and not math.isclose(before, row["au_prc"], rel_tol=0, abs_tol=1e-9):
        print(
            f"# NOTE {name} {method} seed {seed}: the rerun's AU(PRC) {row['au_prc']:.6f} differs from "
            f"the replaced row's {before:.6f} (not bit-reproducible on this machine?)",
            flush=True,
        )


def run_or_report(job: tuple) -> dict | Exception:
    try:
        return run_job(*job)
    except Exception as error:
        return error


def outcome(future) -> dict | Exception:
    try:
        return future.result()
    except Exception as error:
        return error


if __name__ == "__main__":
    main()
