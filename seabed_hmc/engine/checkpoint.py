"""Checkpoints: one file with everything needed to predict, written atomically, loaded safely.

A trained model's checkpoint is a :class:`ModelCheckpoint`, written by :func:`write_model` and read
by :func:`read_model` (the one place that knows its keys): model weights, the hierarchy (node names
and parents), the encoder description and weight source, the input normalisation and size, the
resolved config, the training rows and their node counts, the decision rule and a format version;
``last.pt`` also holds the optimizer and scheduler states for resuming (every epoch re-seeds its
generators from (seed, epoch), so resuming at an epoch boundary is exact).  Everything is plain
tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)`` reads it: loading a
checkpoint never executes code.  :func:`save_checkpoint` and :func:`load_checkpoint` are the raw,
untyped layer under it (the HMC study's tabular runs keep their own records with them).

Format versions: 1 (until issue 21): ``decision`` and ``metric_counts`` present only when set, the
resume state under ``optimiser``; 2: every field of :class:`ModelCheckpoint` present (``decision`` None
until one is fit), ``optimizer`` as the config spells it.  Version-1
files are migrated when read (no rule: they predict at a fixed 0.5, as they always did).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seabed_hmc.atomic import atomic_path
from seabed_hmc.config import RunConfig, config_from_dict
from seabed_hmc.hierarchy import Hierarchy

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt or from an incompatible version."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` through a temporary file and an atomic rename.

    A crash mid-write leaves the previous checkpoint intact and never a partial file under ``path``.
    """
    with atomic_path(path) as temporary:
        torch.save({"format_version": FORMAT_VERSION, **state}, temporary)


def keep_copy(source: str | Path, destination: str | Path) -> None:
    """Make ``destination`` a copy of the checkpoint ``source`` (a hard link where possible: instant).

    ``save_checkpoint`` replaces files by rename, so a linked copy keeps the old contents when the
    source is later overwritten (``best.pt`` stays the best epoch while ``last.pt`` moves on).
    """
    with atomic_path(destination) as temporary:
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; clear errors for missing or damaged files.

    ``mmap``: map the file instead of reading it (tensors are read when first used: loading a model
    for inference then skips the optimizer's state, two thirds of a checkpoint's bytes)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the run that wrote it was interrupted")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises several types for damaged zip archives
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt and cannot be read "
            f"({type(error).__name__}: {error}); use an earlier checkpoint (last.pt / best.pt) or retrain"
        ) from None
    version = state.get("format_version") if isinstance(state, dict) else None
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this seabed_hmc reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} (a newer seabed_hmc wrote it: upgrade to read it)"
        )
    return state


@dataclass
class ModelCheckpoint:
    """A trained model as its checkpoint records it (``best.pt``; ``last.pt`` adds the resume state)."""

    hierarchy: dict  # Hierarchy.to_dict()
    encoder: dict  # the encoder's description: timm name, weights, freezing, noise
    normalisation: dict  # mean, std, image_size
    config: dict  # the resolved run config (config_to_dict)
    model: dict  # the weights (state_dict)
    epoch: int = -1  # the epoch these weights are from
    metrics: dict = field(default_factory=dict)  # that epoch's validation metrics
    best_metric: float = -math.inf  # the best validation selection metric so far
    train_indices: Any = None  # rows of the image table trained on (tensor)
    train_images: list[str] | None = None  # their image paths (evaluate warns on overlap)
    train_counts: Any = None  # per-node positive counts of the training rows (tensor)
    metric_counts: Any = None  # the counts that define rare nodes in the metrics (tensor)
    image_source: str = ""  # the manifest or folder trained from
    decision: dict | None = None  # Decision.to_record(), None: fixed 0.5
    optimizer: dict | None = None  # last.pt only
    scheduler: dict | None = None  # last.pt only

    def to_state(self) -> dict[str, Any]:
        """The fields as a plain dict (shallow: the weights are not copied)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_state(cls, state: dict[str, Any], where: str) -> ModelCheckpoint:
        """The record of a loaded state, migrated from older format versions; an error names the
        file and the missing fields of a file that is not a model checkpoint."""
        state = migrate(dict(state))
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        required = {
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(state))
        if missing:
            raise CheckpointError(
                f"checkpoint {where} is not a seabed_hmc model checkpoint (no {', '.join(missing)}); "
                "give a best.pt or last.pt that seabed-hmc train wrote"
            )
        return cls(**{key: value for key, value in state.items() if key in names})

    def built_hierarchy(self, where: str) -> Hierarchy:
        return Hierarchy.from_dict(self.hierarchy, source=where)

    def run_config(self, where: str) -> RunConfig:
        """The run's resolved config; the encoder name as resolved (a short weight name implies it)."""
        config = config_from_dict(self.config, source=f"checkpoint {where}")
        config.encoder.name = self.encoder["name"]
        return config

    def reference_counts(self) -> np.ndarray | None:
        """The training counts that define the rare nodes (as the run's metrics used them)."""
        counts = self.train_counts if self.metric_counts is None else self.metric_counts
        return None if counts is None else np.asarray(counts)


def migrate(state: dict[str, Any]) -> dict[str, Any]:
    """A model checkpoint's state brought to :data:`FORMAT_VERSION`."""
    if state.get("format_version") == 1:
        state.setdefault("decision", None)
        state.setdefault("metric_counts", state.get("train_counts"))
        if "optimiser" in state:  # the config's word (train.optimizer) since version 2
            state["optimizer"] = state.pop("optimiser")
        state["format_version"] = 2
    return state


def read_model(path: str | Path, mmap: bool = False) -> ModelCheckpoint:
    """A model checkpoint (``best.pt``, ``last.pt`` or ``seabed-hmc calibrate``'s ``--out``), typed."""
    return ModelCheckpoint.from_state(load_checkpoint(path, mmap=mmap), str(path))


def write_model(record: ModelCheckpoint, path: str | Path) -> None:
    """Write a model checkpoint atomically (:func:`save_checkpoint`)."""
    save_checkpoint(record.to_state(), path)


class Checkpoints:
    """``last.pt`` (everything to resume) and ``best.pt`` (the best epoch's weights), written at most
    every ``minutes`` (0: every epoch) and at the end, so that large heads do not spend their epochs
    writing files: 20 heads of 1,280 units hold 67M parameters, 800 MB with the optimizer's state, and
    on an H200 writing it every epoch took 1.21 s against 0.12 s of training steps
    (``scripts/bench_head_epoch.py --device cuda``).  A best epoch between two writes is kept in memory
    (a copy of its weights) until the next write; an interrupted run resumes from the last write, with
    the best checkpoint of that moment."""

    def __init__(self, out: Path, minutes: float) -> None:
        self.out, self.seconds = out, 60.0 * minutes
        self.written_at = time.monotonic()
        self.best: dict | None = None

    def due(self) -> bool:
        return self.seconds <= 0 or time.monotonic() - self.written_at >= self.seconds

    def note_best(self, epoch: int, model, metrics: dict, best_metric: float, copy: bool) -> None:
        """Remember the best epoch; ``copy`` its weights unless this epoch is written anyway."""
        weights = clone_weights(model.state_dict()) if copy else None
        self.best = {"epoch": epoch, "model": weights, "metrics": metrics, "best_metric": best_metric}

    def write(self, state: ModelCheckpoint) -> None:
        """``last.pt`` from ``state``; ``best.pt`` too when a best epoch is pending."""
        write_model(state, self.out / "last.pt")
        if self.best is not None:
            if self.best["epoch"] == state.epoch:
                keep_copy(self.out / "last.pt", self.out / "best.pt")
            else:  # weights only: best.pt is for inference, last.pt for resuming
                best = dataclasses.replace(state, optimizer=None, scheduler=None, **self.best)
                write_model(best, self.out / "best.pt")
            self.best = None
        self.written_at = time.monotonic()


def clone_weights(state: dict) -> dict:
    """A detached copy of a state dict's tensors (weights kept while training moves on)."""
    return {key: value.detach().clone() for key, value in state.items()}
