"""Checkpoints: one file with everything needed to predict, written atomically, loaded safely.

Contents (DESIGN.md): model weights, the hierarchy (node names and parents), the encoder description
and weight source, the input normalisation and size, the resolved config, the training-subset
indices and a format version; for resuming also the optimiser and scheduler states and the epoch
(every epoch re-seeds its generators from (seed, epoch), so resuming at an epoch boundary is exact).
Everything is plain tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)``
reads it: loading a checkpoint never executes code.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from seabed_hmc.atomic import atomic_path

FORMAT_VERSION = 1


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
    for inference then skips the optimiser's state, two thirds of a checkpoint's bytes)."""
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
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this seabed_hmc reads {FORMAT_VERSION}"
        )
    return state
