"""Atomic file writing: the one place where a file is written under a temporary name and renamed.

A reader (or a crash) never sees a half-written file: the file appears complete under its name, or
the previous version stays.  The temporary is hidden and unique per process (``.NAME.tmpPID`` plus a
suffix some writers need, e.g. ``.npz``), sits beside the target (so the rename never crosses file
systems) and is removed when writing fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path to write to; on leaving the block without an error it replaces ``path``.

    ``suffix`` ends the temporary's name, for writers that choose a format by it or append it
    (``numpy.savez`` adds ``.npz`` to a name without it).  The parent folder is created.

        with atomic_path(out / "table.csv") as temporary:
            frame.to_csv(temporary, index=False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    temporary.unlink(missing_ok=True)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
