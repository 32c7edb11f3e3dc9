"""Hierarchies from (parent, child) pairs (:func:`from_edges`, DAGs allowed) and from one row per node
with its parent id (:func:`from_parent_table`, :func:`from_catami_json`: the original CATAMI tree, a
Django fixture)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seabed_hmc.hierarchy._core import DEFAULT_SEPARATOR, Hierarchy, HierarchyError
from seabed_hmc.hierarchy._files import (
    _MISSING_TEXT,
    PathLike,
    _check_choice,
    _existing_file,
    _node_name,
    _read_csv_records,
    _read_json,
)
from seabed_hmc.remedies import option, remedies

if TYPE_CHECKING:
    import pandas as pd


def from_edges(
    pairs: Iterable[tuple[Any, Any]],
    excluded: Iterable[str] | None = None,
    source: str | None = None,
    nodes: Iterable[str] = (),
    separator: str | None = None,
) -> Hierarchy:
    """A tree or DAG from (parent, child) name pairs; a child may appear under several parents.

    Nodes are in order of first appearance (``nodes`` first, then each pair's parent and child).
    An exact duplicate edge is harmless and ignored.

    Args:
        pairs: (parent, child) pairs; names are converted to stripped strings.
        excluded: nodes kept out of loss and metrics; None applies :class:`Hierarchy`'s default.
        source: where the edges came from, for messages.
        nodes: extra nodes, e.g. roots with no children that no edge mentions.
        separator: the level separator if the names are paths (None: plain names).

    Raises:
        HierarchyError: no nodes, a malformed pair, an empty name, a self-loop (naming the edge
            number, from 1) or a cycle (naming the nodes on it).
    """
    of_source = f" of {source}" if source else ""
    parents: dict[str, list[str]] = {}
    for name in nodes:
        parents.setdefault(_node_name(name, f"node list{of_source}"), [])
    for number, pair in enumerate(pairs, start=1):
        where = f"edge {number}{of_source}"
        try:
            if isinstance(pair, str):
                raise TypeError  # "ab" would unpack into two one-letter names
            parent, child = pair
        except (TypeError, ValueError):
            raise HierarchyError(f"{where} is {pair!r}, not a (parent, child) pair") from None
        parent, child = _node_name(parent, where), _node_name(child, where)
        if parent == child:
            raise HierarchyError(f"{where} links {child!r} to itself (a self-loop); remove it")
        parents.setdefault(parent, [])
        if parent not in parents.setdefault(child, []):
            parents[child].append(parent)
    if not parents:
        where = f" in {source}" if source else ""
        raise HierarchyError(f"no edges or nodes{where}; give at least one (parent, child) pair")
    return Hierarchy(
        list(parents), list(parents.values()), excluded=excluded, separator=separator, source=source
    )


@dataclass(frozen=True)
class _TableRow:
    where: str  # "line 5", "row 3" or "record 7", for messages (the source is added there)
    id: str
    parents: tuple[str, ...]
    name: str | None


def from_parent_table(
    table: PathLike | pd.DataFrame,
    id_column: str = "id",
    parent_column: str = "parent",
    name_column: str = "name",
    naming: str = "path",
    sep: str = DEFAULT_SEPARATOR,
    excluded: Iterable[str] | None = None,
    parent_separator: str = "|",
    source: str | None = None,
) -> Hierarchy:
    """A tree or DAG from a table with one row per node: its id, its parent's id and its name.

    Args:
        table: a CSV file or a pandas DataFrame.
        id_column, parent_column, name_column: the column names.  An empty (or NaN, ``null``) parent
            makes a root; a DAG node lists several parent ids in one cell, joined by
            ``parent_separator`` (or as a list in a DataFrame).
        naming: how nodes are named: ``"path"`` (the ``sep``-joined names from the root, like
            :func:`from_paths`; needs a tree), ``"name"`` (the name column; names must be unique) or
            ``"id"`` (the ids as strings; no name column needed).
        sep: the level separator of path names.
        excluded: nodes (in the chosen naming) kept out of loss and metrics; None applies
            :class:`Hierarchy`'s default.
        parent_separator: joins several parent ids in one text cell.
        source: where the table came from, for messages (default: the file, or "the table").

    Raises:
        FileNotFoundError: the CSV file does not exist.
        HierarchyError: a missing column, an empty or duplicate id, a parent id that is no row's id,
            a cycle, several parents with ``naming="path"``, duplicate names with ``naming="name"``
            or sibling names that collide with ``naming="path"``; each names the row(s).
    """
    _check_choice("naming", naming, ("path", "name", "id"))
    columns = (id_column, parent_column, name_column if naming != "id" else None)
    if isinstance(table, (str, os.PathLike)):
        file = _existing_file(table, "parent table")
        source = source or str(file)
        cells = _csv_cells(file, columns)
    else:
        source = source or "the table"
        cells = _frame_cells(table, columns, source)
    rows = [_table_row(where, *values, source, parent_separator) for where, values in cells]
    return _hierarchy_from_table_rows(rows, naming, sep, excluded, source)


def from_catami_json(
    path: PathLike,
    naming: str = "path",
    sep: str = DEFAULT_SEPARATOR,
    excluded: Iterable[str] | None = None,
) -> Hierarchy:
    """The original CATAMI tree from its Django fixture (a JSON list of records).

    Each record is ``{"pk": 5, "fields": {"code_name": "Sponges", "parent": 2, ...}}``; the tree is
    built as by :func:`from_parent_table` with id = ``pk``, parent = ``fields.parent`` and name =
    ``fields.code_name``.  The real file (274 nodes under one root, "Not Considered", so names read
    ``"Not Considered > Biota > Sponges"``) loads with the default path naming; ``naming="name"``
    fails on it because leaf names repeat ("Massive", "Branching", "Red").

    Raises:
        FileNotFoundError: the file does not exist.
        HierarchyError: not a list of records, a record without ``pk``/``fields.code_name``/
            ``fields.parent`` (naming the record), or any :func:`from_parent_table` error.
    """
    _check_choice("naming", naming, ("path", "name", "id"))
    file = _existing_file(path, "CATAMI fixture")
    records = _read_json(file)
    if not isinstance(records, list):
        raise HierarchyError(
            f"{file} holds a {type(records).__name__}, not a list of fixture records "
            '({"pk": ..., "fields": {"code_name": ..., "parent": ...}})'
        )
    rows = []
    for number, record in enumerate(records, start=1):
        where = f"record {number}"
        if not isinstance(record, Mapping) or not isinstance(record.get("fields"), Mapping):
            raise HierarchyError(
                f"{where} of {file} has no 'fields' object; expected a Django fixture record"
            )
        fields = record["fields"]
        for key, holder in (("pk", record), ("code_name", fields), ("parent", fields)):
            if key not in holder:
                raise HierarchyError(
                    f"{where} of {file} lacks {key!r}; every record needs pk, fields.code_name and "
                    "fields.parent"
                )
        name = fields["code_name"] if naming != "id" else None
        rows.append(_table_row(where, record["pk"], fields["parent"], name, str(file), "|"))
    return _hierarchy_from_table_rows(rows, naming, sep, excluded, str(file))


def _csv_cells(file: Path, columns: tuple[str, str, str | None]) -> list[tuple[str, list[str | None]]]:
    """(where, [id, parent, name]) per data row of a CSV table; name None when not wanted."""
    records = _read_csv_records(file, ",", "utf-8-sig")
    if not records:
        raise HierarchyError(f"{file} is empty; a parent table needs a header and one row per node")
    header = [field.strip() for field in records[0][1]]
    _require_columns(header, columns, str(file))
    positions = [header.index(column) if column else None for column in columns]
    cells = []
    for line, fields in records[1:]:
        values = [
            None if position is None else (fields[position] if position < len(fields) else "")
            for position in positions
        ]
        cells.append((f"line {line}", values))
    return cells


def _frame_cells(
    frame: pd.DataFrame, columns: tuple[str, str, str | None], source: str
) -> list[tuple[str, list[Any]]]:
    """(where, [id, parent, name]) per row of a DataFrame; name None when not wanted."""
    if not hasattr(frame, "columns") or not hasattr(frame, "itertuples"):
        raise TypeError(f"table must be a CSV path or a pandas DataFrame, not {type(frame).__name__}")
    _require_columns([str(c) for c in frame.columns], columns, source)
    wanted = [column for column in columns if column]
    cells = []
    for label, *values in frame[wanted].itertuples(index=True, name=None):
        cells.append((f"row {label!r}", values if len(values) == 3 else [*values, None]))
    return cells


def _require_columns(header: list[str], columns: Iterable[str | None], source: str) -> None:
    missing = [c for c in columns if c and c not in header]
    if missing:
        raise HierarchyError(
            f"{source} has no column(s) {missing}; its columns are {header}; "
            + remedies("rename the columns to id, parent and name", option("table_columns"))
        )


def _table_row(where: str, node_id: Any, parent: Any, name: Any, source: str, joiner: str) -> _TableRow:
    """One checked row; ``name`` None means names are not wanted (``naming="id"``)."""
    key = _id_key(node_id)
    if key is None:
        raise HierarchyError(f"{where} of {source} has an empty id; every row needs one")
    if isinstance(parent, (list, tuple, set, np.ndarray)):
        parents = [_id_key(p) for p in parent]
    elif isinstance(parent, str) and joiner and joiner in parent:
        parents = [_id_key(p) for p in parent.split(joiner)]
    else:
        parents = [_id_key(parent)]
    text_name = None
    if name is not None:
        text_name = "" if isinstance(name, float) and math.isnan(name) else str(name).strip()
        if not text_name:
            raise HierarchyError(
                f"{where} of {source} (id {key!r}) has an empty name; fill it in or use naming='id'"
            )
    return _TableRow(where, key, tuple(dict.fromkeys(p for p in parents if p is not None)), text_name)


def _id_key(value: Any) -> str | None:
    """An id as text, or None when missing; integral floats lose their ``.0`` (pandas NaN columns)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else str(value)
    text = str(value).strip()
    return None if text.lower() in _MISSING_TEXT else text


def _hierarchy_from_table_rows(
    rows: Sequence[_TableRow], naming: str, sep: str, excluded: Iterable[str] | None, source: str
) -> Hierarchy:
    """Check ids and parent ids, then build the hierarchy under the chosen naming."""
    if not rows:
        raise HierarchyError(f"{source} has no rows; give one row per node")
    by_id: dict[str, _TableRow] = {}
    for row in rows:
        if row.id in by_id:
            raise HierarchyError(
                f"id {row.id!r} is used twice, at {by_id[row.id].where} and {row.where} of {source}; ids "
                "must be unique (a node with several parents lists them in one cell)"
            )
        by_id[row.id] = row
    parent_ids = [[_known_parent(parent, row, by_id, source) for parent in row.parents] for row in rows]
    # Built on ids first: the core rejects cycles before any path is followed.
    by_ids = Hierarchy([row.id for row in rows], parent_ids, excluded=[], separator=None, source=source)
    if naming == "id":
        names = [row.id for row in rows]
    elif naming == "name":
        names = _unique_names(rows, source)
    else:
        names = _path_names(rows, by_ids, sep, source)
    separator = sep if naming == "path" else None
    return Hierarchy(names, by_ids.parents, excluded=excluded, separator=separator, source=source)


def _known_parent(parent: str, row: _TableRow, by_id: Mapping[str, _TableRow], source: str) -> str:
    where = f"{row.where} of {source}"
    if parent == row.id:
        raise HierarchyError(f"{where}: id {row.id!r} is its own parent; give its real parent or none")
    if parent in by_id:
        return parent
    try:  # "3.0", written by a float column, for the id "3"
        number = float(parent)
    except ValueError:
        number = math.nan
    if number.is_integer() and str(int(number)) in by_id:
        return str(int(number))
    raise HierarchyError(
        f"{where}: parent id {parent!r} of id {row.id!r} is not the id of any row; add that row or fix "
        "the id (a root's parent is empty)"
    )


def _unique_names(rows: Sequence[_TableRow], source: str) -> list[str]:
    places: dict[str, list[str]] = {}
    for row in rows:
        places.setdefault(str(row.name), []).append(row.where)
    repeated = {name: where for name, where in places.items() if len(where) > 1}
    if repeated:
        shown = "; ".join(f"{name!r} ({', '.join(where)})" for name, where in list(repeated.items())[:5])
        raise HierarchyError(
            f"naming='name' needs unique names, but {len(repeated)} name(s) repeat in {source}: {shown}; "
            "use naming='path' or naming='id'"
        )
    return [str(row.name) for row in rows]


def _path_names(rows: Sequence[_TableRow], by_ids: Hierarchy, sep: str, source: str) -> list[str]:
    several = [rows[i] for i, parents in enumerate(by_ids.parents) if len(parents) > 1]
    if several:
        shown = ", ".join(f"id {row.id!r} ({row.where})" for row in several[:3])
        raise HierarchyError(
            f"naming='path' needs a tree, but {len(several)} node(s) of {source} have several parents, "
            f"e.g. {shown}; use naming='name' or naming='id'"
        )
    names = [""] * len(rows)
    for i in by_ids.topological_order:
        parents = by_ids.parents[i]
        names[i] = f"{names[parents[0]]}{sep}{rows[i].name}" if parents else str(rows[i].name)
    first: dict[str, _TableRow] = {}
    for row, name in zip(rows, names, strict=True):
        if name in first:
            raise HierarchyError(
                f"{first[name].where} and {row.where} of {source} both give the node {name!r} (siblings "
                "with the same name); rename one, or use naming='id'"
            )
        first[name] = row
    return names
