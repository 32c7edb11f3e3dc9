"""A tool's label codes mapped to hierarchy paths.

The label map is a CSV with the columns ``label`` (the code or name the annotation tool exports) and
``path`` (a hierarchy path, levels joined by ``" > "``; a path may stop above the leaves: a coarse
label is a partial-depth label), and optionally ``label_id`` (the tool's id for the label, which
``export`` writes for BIIGLE and SQUIDLE+).  Other columns (``count``, notes) are ignored.  A row
with an empty path leaves that label unmapped, so the template written for unmapped labels can be
filled in part.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from seabed_hmc.atomic import write_text_atomic
from seabed_hmc.hierarchy import Hierarchy


class LabelMapError(ValueError):
    """A label map that cannot be used as it is (the message names the file and the row)."""


def read_label_map(path: str | Path, hierarchy: Hierarchy | None = None) -> dict[str, str]:
    """``{label: path}`` from a label-map CSV; every path checked against ``hierarchy`` when given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map {path} does not exist")
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    missing = [c for c in ("label", "path") if c not in table.columns]
    if missing:
        raise LabelMapError(
            f"{path}: a label map needs the columns label and path; missing {', '.join(missing)}"
        )
    mapping: dict[str, tuple[str, int]] = {}
    for index, (label, target) in enumerate(zip(table["label"], table["path"], strict=True)):
        row, label, target = index + 2, label.strip(), target.strip()
        if not label or not target:
            continue
        if hierarchy is not None and target not in hierarchy:
            raise LabelMapError(
                f"{path} row {row}: {target!r} (for label {label!r}) is not a node of the hierarchy"
                f"{f' from {hierarchy.source}' if hierarchy.source else ''}; correct the path or add the node"
            )
        if label in mapping and mapping[label][0] != target:
            raise LabelMapError(
                f"{path} rows {mapping[label][1]} and {row}: label {label!r} maps to both "
                f"{mapping[label][0]!r} and {target!r}; keep one"
            )
        mapping[label] = (target, row)
    return {label: target for label, (target, _) in mapping.items()}


def read_label_ids(path: str | Path) -> dict[str, str] | None:
    """``{label: the tool's label id}`` from the label map's optional ``label_id`` column (None without
    one): the ids BIIGLE and SQUIDLE+ need to take a label back."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if "label_id" not in table.columns:
        return None
    return {
        label.strip(): key.strip()
        for label, key in zip(table["label"], table["label_id"], strict=True)
        if label.strip() and key.strip()
    }


def map_labels(
    labels: pd.Series, mapping: dict[str, str] | None, hierarchy: Hierarchy | None
) -> tuple[pd.Series, Counter]:
    """Each label's hierarchy path ("" where none) and the count of each unmapped label.

    With a ``mapping`` a label maps through it; without one, a label is its own path, and must be a
    node of ``hierarchy`` when one is given."""
    if mapping is not None:
        paths = labels.map(lambda label: mapping.get(label, ""))
    elif hierarchy is not None:
        paths = labels.map(lambda label: label if label in hierarchy else "")
    else:
        paths = labels.copy()
    unmapped = Counter(labels[paths == ""])
    return paths, unmapped


def write_map_template(path: str | Path, unmapped: Counter, mapping: dict[str, str] | None = None) -> Path:
    """A label map to fill in: the labels already mapped, then every unmapped label with its count and
    an empty path, most frequent first."""
    rows = [{"label": label, "count": "", "path": target} for label, target in (mapping or {}).items()]
    rows += [{"label": label, "count": count, "path": ""} for label, count in unmapped.most_common()]
    write_text_atomic(path, pd.DataFrame(rows, columns=["label", "count", "path"]).to_csv(index=False))
    return Path(path)
