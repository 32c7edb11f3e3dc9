"""The limited-data ablation grid: fractions (or k per leaf) x loss configurations x encoders x seeds.

One YAML file describes the grid (see ``configs/ablation_quick.yaml``)::

    run: ccr_benthic.yaml          # the base run config: a path (next to this file, or from the working
                                   # folder) or an inline mapping of sections
    set: [train.epochs=40]         # overrides for every cell
    subsets: {fractions: [0.05, 0.1, 0.25, 0.5, 1.0], min_positives: 1}   # or {per_leaf: [1, 5, 20]}
    configurations:                # name -> overrides (a list of key=value, or a mapping)
      control: [loss.name=control]
      rare_node_bbma: [loss.name=rare_node, loss.uncertainty=bbma]
    encoders:
      pretrained: [encoder.weights=mobilenetv2_imagenet, encoder.freeze=true]
    seeds: [0, 1, 2, 3, 4]
    control: control               # the baseline the statistics compare against
    synthetic: null                # {images: 300, size: 64}: the demo's synthetic seafloor set in OUT/data

``run_ablation(config, out)`` writes ``OUT/results.csv`` (one row per finished cell, written atomically
after each), ``OUT/subsets/seed{S}.json`` (the chosen training rows and image paths per level, and the
nodes that could not keep the minimum), ``OUT/ablation.yaml`` (the grid as run) and ``OUT/failed.csv``
for cells that raised (they are retried on the next run).  A re-run skips finished cells; a cell whose
settings changed since it was recorded is an error, not silently reused.  Prepared data are shared by the
cells of a seed, and frozen encoders use the on-disk feature cache, so each encoder sees the images once
per seed; no checkpoints are written for cells (the best epoch is kept in memory).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm  # not tqdm.auto: it iterates a DataLoader twice (two worker sets)

from seabed_hmc.atomic import write_text_atomic
from seabed_hmc.config import (
    ConfigError,
    RunConfig,
    _build,
    _set_dotted,
    config_from_dict,
    config_to_dict,
    parse_override,
    read_yaml,
)
from seabed_hmc.engine.data_and_model import PreparedData, prepare_data
from seabed_hmc.limited_data.subsets import Subsets, fraction_subsets, per_leaf_subsets
from seabed_hmc.losses import node_frequencies
from seabed_hmc.reporting import append_row

log = logging.getLogger("seabed_hmc")
KEY = ["encoder", "configuration", "level", "seed"]


@dataclass
class SubsetConfig:
    fractions: list[float] | None = None  # e.g. [0.05, 0.1, 0.25, 0.5, 1.0]
    per_leaf: list[int] | None = None  # or: k positive examples per leaf node
    min_positives: int = 1  # fraction mode: positives every node keeps, where possible
    # Small subsets take fewer optimizer steps per epoch.  1 keeps train.epochs at every level; a value
    # above 1 multiplies the epochs by (full training rows / subset rows), at most by this factor, so
    # small subsets are not simply under-trained.
    max_epoch_scale: float = 1.0


@dataclass
class SyntheticConfig:
    images: int = 300
    size: int = 64
    seed: int = 0


@dataclass
class AblationConfig:
    run: Any = None  # a run-config path or an inline mapping
    set: list[str] = field(default_factory=list)
    subsets: SubsetConfig = field(default_factory=SubsetConfig)
    configurations: dict[str, Any] = field(default_factory=dict)
    encoders: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    control: str = "control"
    synthetic: SyntheticConfig | None = None
    source: str = ""  # the file it was read from (set by the loader)


def load_ablation_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> AblationConfig:
    """Read and check a grid YAML; ``overrides`` are ``key=value`` on the grid itself (``seeds=[0,1]``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ablation config {path} does not exist")
    try:
        tree = read_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (run, subsets, configurations, ...)")
    for text in overrides:
        _set_dotted(tree, *parse_override(text))
    config = _build(AblationConfig, tree, "", f" in {path}")
    config.source = str(path)
    subsets = config.subsets
    if (subsets.fractions is None) == (subsets.per_leaf is None):
        raise ConfigError(f"{path}: set exactly one of subsets.fractions and subsets.per_leaf")
    for key in ("configurations", "encoders"):
        if not getattr(config, key):
            raise ConfigError(f"{path}: {key} is empty; name at least one (with its overrides)")
    if config.control not in config.configurations:
        raise ConfigError(
            f"{path}: control {config.control!r} is not one of the configurations "
            f"{list(config.configurations)}; the statistics compare every configuration against it"
        )
    if not config.seeds:
        raise ConfigError(f"{path}: seeds is empty")
    return config


def _override_list(value: Any, where: str) -> list[str]:
    """Overrides given as a list of ``key=value`` strings or as a mapping of dotted keys."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={json.dumps(v)}" for k, v in value.items()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{where}: expected a list of key=value strings or a mapping, got {value!r}")


def _base_tree(config: AblationConfig) -> dict:
    run = config.run
    if isinstance(run, dict):
        return copy.deepcopy(run)
    if not isinstance(run, str):
        raise ConfigError(f"run in {config.source}: give a run-config path or a mapping, got {run!r}")
    candidates = [Path(config.source).parent / run, Path(run)]
    for candidate in candidates:
        if candidate.exists():
            tree = read_yaml(candidate.read_text(encoding="utf-8")) or {}
            if not isinstance(tree, dict):
                raise ConfigError(f"{candidate}: the top level must be a mapping of sections")
            return tree
    raise FileNotFoundError(
        f"run config {run!r} named in {config.source} was not found (looked in "
        f"{', '.join(str(c) for c in candidates)})"
    )


@dataclass(frozen=True)
class Cell:
    encoder: str
    configuration: str
    level: float
    seed: int
    config: RunConfig
    digest: str

    @property
    def key(self) -> tuple:
        return (self.encoder, self.configuration, float(self.level), int(self.seed))


def _non_default(values: dict, defaults: dict) -> dict:
    """The entries of a nested settings dict that differ from the defaults."""
    changed = {}
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            inner = _non_default(value, default)
            if inner:
                changed[key] = inner
        elif key not in defaults or value != default:
            changed[key] = value
    return changed


def _digest(config: RunConfig, subsets: SubsetConfig) -> str:
    """A short hash of everything that decides a cell's result except its key (out and progress aside).

    Only settings that differ from their defaults enter it, so a new setting added to the package with
    a default that keeps the old behaviour does not invalidate the cells already finished."""
    record = _non_default(config_to_dict(config), config_to_dict(RunConfig()))
    record.pop("out", None)
    record.get("train", {}).pop("progress", None)
    record["subsets"] = _non_default(dataclasses.asdict(subsets), dataclasses.asdict(SubsetConfig()))
    return hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _levels(config: AblationConfig) -> list[float]:
    subsets = config.subsets
    return sorted(subsets.fractions) if subsets.fractions is not None else sorted(subsets.per_leaf)


def build_cells(config: AblationConfig, out: Path) -> list[Cell]:
    """Every cell's resolved run config, checked up front (a typo fails before any training)."""
    base = _base_tree(config)
    shared = _override_list(config.set, f"set in {config.source}")
    if config.synthetic is not None:
        data = out / "data"
        shared += [f"data.manifest={data / 'manifest.csv'}", f"data.hierarchy={data / 'hierarchy.csv'}"]
    cells = []
    for seed in config.seeds:
        for encoder, encoder_overrides in config.encoders.items():
            for name, overrides in config.configurations.items():
                tree = copy.deepcopy(base)
                texts = [
                    *shared,
                    *_override_list(encoder_overrides, f"encoders.{encoder} in {config.source}"),
                    *_override_list(overrides, f"configurations.{name} in {config.source}"),
                    f"train.seed={seed}",
                    "train.progress=false",
                ]
                for text in texts:
                    _set_dotted(tree, *parse_override(text))
                try:
                    run = config_from_dict(tree, f"{config.source} (encoder {encoder}, configuration {name})")
                except ConfigError as error:
                    raise ConfigError(str(error)) from None
                for level in _levels(config):
                    cell_config = dataclasses.replace(
                        run, out=str(cell_folder(out, encoder, name, level, seed))
                    )
                    digest = _digest(run, config.subsets)
                    cells.append(Cell(encoder, name, float(level), int(seed), cell_config, digest))
    return cells


def cell_folder(out: str | Path, encoder: str, configuration: str, level: float, seed: int) -> Path:
    """Where a grid cell writes its run (``OUT/cells/ENCODER/CONFIGURATION/LEVEL/seedS``)."""
    return Path(out) / "cells" / encoder / configuration / f"{float(level):g}" / f"seed{int(seed)}"


def _finished(results: Path, cells: list[Cell]) -> set[tuple]:
    if not results.exists():
        return set()
    table = pd.read_csv(results)
    recorded = {
        (r.encoder, r.configuration, float(r.level), int(r.seed)): r.config_digest
        for r in table.itertuples(index=False)
    }
    for cell in cells:
        digest = recorded.get(cell.key)
        if digest is not None and digest != cell.digest:
            raise ConfigError(
                f"{results} holds cell {cell.key} run with different settings (digest {digest}, now "
                f"{cell.digest}); write to a new --out folder, or delete those rows to re-run them"
            )
    return set(recorded)


def _subsets(config: AblationConfig, data: PreparedData, seed: int) -> Subsets:
    train = data.splits["train"]
    targets, mask = data.table.targets[train], data.table.mask[train]
    if config.subsets.fractions is not None:
        return fraction_subsets(
            targets, mask, data.hierarchy, config.subsets.fractions, seed, config.subsets.min_positives
        )
    return per_leaf_subsets(targets, mask, data.hierarchy, config.subsets.per_leaf, seed)


def parse_only(texts: list[str] | tuple[str, ...]) -> dict[str, set]:
    """``["level=1", "seed=0,1,2"]`` -> {"level": {1.0}, "seed": {0, 1, 2}}: a filter on cells."""
    kinds = {"encoder": str, "configuration": str, "level": float, "seed": int}
    only: dict[str, set] = {}
    for text in texts:
        key, _, values = text.partition("=")
        key = key.strip()
        if key not in kinds or not values:
            raise ConfigError(f"--only {text!r}: expected KEY=V1,V2 with KEY one of {list(kinds)}")
        try:
            only.setdefault(key, set()).update(kinds[key](v.strip()) for v in values.split(","))
        except ValueError:
            raise ConfigError(f"--only {text!r}: {key} values must be {kinds[key].__name__}") from None
    return only


def _selected(cell: Cell, only: dict[str, set]) -> bool:
    return all(value in only[key] for key, value in zip(KEY, cell.key, strict=True) if key in only)


def run_ablation(
    config: AblationConfig, out: str | Path, progress: bool = True, only: dict[str, set] | None = None
) -> pd.DataFrame:
    """Run every unfinished cell (or those ``only`` selects, e.g. the full-data column first); returns
    the results table (also in ``OUT/results.csv``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if config.synthetic is not None and not (out / "data" / "manifest.csv").exists():
        from seabed_hmc.data.synthetic import make_synthetic_seafloor

        make_synthetic_seafloor(
            out / "data", config.synthetic.images, config.synthetic.size, config.synthetic.seed
        )
    cells = build_cells(config, out)
    record = {k: v for k, v in dataclasses.asdict(config).items() if k != "source"}
    write_text_atomic(out / "ablation.yaml", yaml.safe_dump(record, sort_keys=False))
    results = out / "results.csv"
    done = _finished(results, cells)
    todo = [cell for cell in cells if cell.key not in done and _selected(cell, only or {})]
    log.info("%d cells, %d already finished in %s", len(cells), len(cells) - len(todo), results)
    prepared: dict[tuple, tuple[PreparedData, Subsets, np.ndarray]] = {}
    failures = 0
    bar = tqdm(todo, desc="cells", disable=not progress)
    for attempted, cell in enumerate(bar):
        if attempted == 3 and failures == 3:
            raise RuntimeError(
                f"the first 3 cells all failed (see {out / 'failed.csv'}); the grid stopped, since the "
                "cause is probably common to every cell: fix it and re-run"
            )
        bar.set_postfix_str(f"{cell.encoder} {cell.configuration} {cell.level:g} seed {cell.seed}")
        try:
            key = (json.dumps(dataclasses.asdict(cell.config.data), sort_keys=True), cell.seed)
            if key not in prepared:
                data = prepare_data(cell.config.data, cell.seed)
                subsets = _subsets(config, data, cell.seed)
                _save_subsets(out, cell.seed, subsets, data, config)
                train = data.splits["train"]
                reference, _ = node_frequencies(
                    data.hierarchy, data.table.targets[train], data.table.mask[train]
                )
                prepared = {key: (data, subsets, reference)}  # one dataset in memory at a time
            data, subsets, reference = prepared[key]
            row = run_cell(cell, data, subsets, reference, config.subsets.max_epoch_scale)
            append_row(results, row)
        except Exception as error:  # one broken cell must not end a long grid: record it, go on
            failures += 1
            log.error("cell %s failed: %s", cell.key, error)
            append_row(
                out / "failed.csv",
                {
                    **dict(zip(KEY, cell.key, strict=True)),
                    "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc(limit=3),
                },
            )
    if failures:
        log.warning("%d cells failed (see %s); re-run to retry them", failures, out / "failed.csv")
    return pd.read_csv(results) if results.exists() else pd.DataFrame()


def run_cell(
    cell: Cell, data: PreparedData, subsets: Subsets, reference: np.ndarray, max_epoch_scale: float = 1.0
) -> dict:
    """Train one cell on its subset; the row of the results table (test metrics of the best epoch)."""
    from seabed_hmc.engine.train import train

    rows = subsets.indices[cell.level] if cell.level in subsets.indices else None
    if rows is None:
        raise KeyError(f"no subset at level {cell.level:g} for seed {cell.seed}")
    full = len(data.splits["train"])
    scale = min(max(max_epoch_scale, 1.0), full / max(len(rows), 1))
    config = cell.config
    if scale > 1:
        train_settings = dataclasses.replace(config.train, epochs=math.ceil(config.train.epochs * scale))
        config = dataclasses.replace(config, train=train_settings)
    start = time.perf_counter()
    result = train(config, data=data, train_subset=rows, reference_counts=reference, save_checkpoints=False)
    metrics = result.get("test", result["val"])
    row: dict[str, Any] = dict(zip(KEY, cell.key, strict=True))
    row |= {
        "mode": subsets.mode,
        "train_size": len(rows),
        "target_size": subsets.target_sizes[cell.level],
        "nodes_below_minimum": len(subsets.short_nodes.get(cell.level, [])),
        "epochs": config.train.epochs,
        "best_epoch": result["best_epoch"],
        "evaluated_on": "test" if "test" in result else "val",
    }
    row |= {k: v for k, v in metrics.items() if "_depth_" not in k}
    depths = {k.removeprefix("recall_depth_"): v for k, v in metrics.items() if k.startswith("recall_depth_")}
    row["recall_by_depth"] = json.dumps(depths)
    # the same decision-dependent numbers under the rule fit on the cell's validation split
    decided = result.get(f"{row['evaluated_on']}_decided", {})
    row["decision"] = result.get("decision", "")
    row |= {f"decided_{k}": v for k, v in decided.items() if "_depth_" not in k}
    row |= {"seconds": round(time.perf_counter() - start, 2), "config_digest": cell.digest}
    return row


def _save_subsets(out: Path, seed: int, subsets: Subsets, data: PreparedData, config: AblationConfig) -> None:
    folder = out / "subsets"
    folder.mkdir(exist_ok=True)
    train = data.splits["train"]
    paths = data.table.frame["image"].iloc[train].astype(str).tolist()
    record = {"seed": seed, "min_positives": config.subsets.min_positives} | subsets.to_dict(paths)
    write_text_atomic(folder / f"seed{seed}.json", json.dumps(record, indent=1))
