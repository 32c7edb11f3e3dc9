"""Build a :class:`Hierarchy` from the forms hierarchies come in.

One function per form, each also reachable as a static method of :class:`Hierarchy`
(``Hierarchy.from_paths(...)`` is :func:`from_paths`):

* :func:`from_paths` / :func:`from_path_file`: full paths such as ``"[BIOTA] > Biota > Sponges"``
  (BenthicNet's CATAMI CSV).  Node names are the full paths, because leaf names repeat under
  different parents ("Massive" sponges, "Massive" corals).
* :func:`from_edges`: (parent, child) pairs; a node may have several parents (a DAG).
* :func:`from_parent_table` / :func:`from_catami_json`: one row per node with its parent id
  (the original CATAMI tree, a Django fixture).
* :func:`from_folder`: a nested image folder tree (``Biota/Macroalgae/Kelp/img.jpg``).
* :func:`from_arff`: the ``hierarchical`` class attribute of the HMC benchmark ARFF files (FunCat
  paths, GO edges, Diatoms, Enron, ImCLEF07).
* :func:`load_hierarchy` (``Hierarchy.load``): picks one of the above from the file type.

Every invalid input raises :class:`HierarchyError` naming the file, the row, line or key, and what to
do; a missing file raises :class:`FileNotFoundError`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seabed_hmc.hierarchy._core import ARTIFICIAL_ROOT, DEFAULT_SEPARATOR, Hierarchy, HierarchyError
from seabed_hmc.remedies import option, remedies

if TYPE_CHECKING:
    import pandas as pd

PathLike = str | os.PathLike

#: The three Gene Ontology roots (molecular function, cellular component, biological process): the
#: children of ``root`` in the GO benchmark files, left out of evaluation like ``root`` itself.
GO_ROOTS = ("GO0003674", "GO0005575", "GO0008150")
#: The level separator of FunCat-style ARFF paths (``01/01/03``); ARFF node names keep it.
ARFF_PATH_SEPARATOR = "/"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
#: Parent cells that mean "no parent" in a text table (besides an empty cell).
_MISSING_TEXT = {"", "nan", "none", "null", "na", "<na>"}
_ARFF_HIERARCHY_LINE = re.compile(
    r"""^\s*@attribute\s+(?:'[^']*'|"[^"]*"|\S+)\s+hierarchical\b(.*)$""", re.IGNORECASE
)


# ------------------------------------------------------------------ paths
def from_paths(
    paths: Iterable[str],
    sep: str = DEFAULT_SEPARATOR,
    excluded: Iterable[str] | None = None,
    on_duplicate: str = "error",
    source: str | None = None,
) -> Hierarchy:
    """A tree from full path strings, one per node (``"[BIOTA] > Biota > Sponges > Massive"``).

    Every prefix of a path becomes a node, named by the prefix joined with ``sep``
    (``"[BIOTA] > Biota"``), so a path may be listed before, after or without its parent.  Whitespace
    around levels and a trailing comma on a row are stripped; blank rows are skipped.  Nodes are in
    order of first appearance, each after its parent.

    Args:
        paths: path strings; rows are numbered from 1 in error messages.
        sep: the level separator, matched exactly (names such as ``"High (>3m)"`` stay whole).
        excluded: nodes kept out of loss and metrics; None applies :class:`Hierarchy`'s default.
        on_duplicate: ``"error"`` (default) or ``"ignore"`` for a path listed twice.
        source: where the paths came from, for messages.

    Raises:
        HierarchyError: no paths, an empty level (``"A >  > B"``), or a duplicate path.
    """
    if isinstance(paths, str):
        raise TypeError("paths must be a list of path strings, not one string; wrap it in a list")
    rows = list(enumerate(paths, start=1))
    return _tree_from_path_rows(rows, sep, excluded, on_duplicate, source, unit="row")


def from_path_file(
    path: PathLike,
    sep: str = DEFAULT_SEPARATOR,
    column: str | int | None = None,
    header: bool | None = None,
    excluded: Iterable[str] | None = None,
    on_duplicate: str = "error",
    delimiter: str = ",",
    encoding: str = "utf-8-sig",
) -> Hierarchy:
    """A tree from a text or CSV file of full paths (see :func:`from_paths`).

    The file is read with :mod:`csv`, so quoted paths may hold the delimiter.  Trailing empty fields
    are ignored (BenthicNet's CATAMI file ends some rows with a comma), but a row with more non-empty
    fields than the header is an error: it usually means an unquoted comma inside a path.
    BenthicNet's CATAMI file lists six paths twice (lines 2-6 and 271 again among lines 304-311): load it
    with ``on_duplicate="ignore"`` (314 nodes, 4 roots).

    Args:
        path: the file.
        sep: the level separator inside a path.
        column: the path column, by header name (implies a header) or by index; default the first.
        header: whether the first row is a header.  None guesses: it is one when its field holds no
            ``sep`` while a later row's does (BenthicNet's ``catami`` header).
        excluded, on_duplicate: as in :func:`from_paths`.
        delimiter: the field delimiter.
        encoding: the text encoding (the default drops a UTF-8 byte-order mark).

    Raises:
        FileNotFoundError: the file does not exist.
        HierarchyError: unknown column, extra fields, or any :func:`from_paths` error, naming the line.
    """
    file = _existing_file(path, "path file")
    if isinstance(column, str) and header is False:
        raise ValueError(f"column={column!r} names a header column, but header=False")
    records = _read_csv_records(file, delimiter, encoding)
    if not records:
        raise HierarchyError(f"{file} has no rows; a path file needs one path per line")
    if header is None:
        header = isinstance(column, str) or _looks_like_header(records, column or 0, sep)
    header_fields: list[str] | None = None
    if header:
        header_fields = [field.strip() for field in records[0][1]]
        records = records[1:]
    index = _column_index(column, header_fields, file)
    rows = []
    for line, fields in records:
        fields = _without_trailing_empty(fields)
        if header_fields is not None and len(fields) > len(header_fields):
            raise HierarchyError(
                f"line {line} of {file} has {len(fields)} fields but the header has {len(header_fields)}; "
                "quote paths that contain the delimiter"
            )
        if header_fields is None and column is None and len(fields) > 1:
            raise HierarchyError(
                f"line {line} of {file} has {len(fields)} fields; "
                + remedies(
                    option("path_column", why="to pick the path column"),
                    "quote paths that contain the delimiter",
                )
            )
        rows.append((line, fields[index] if index < len(fields) else ""))
    return _tree_from_path_rows(rows, sep, excluded, on_duplicate, str(file), unit="line")


def _tree_from_path_rows(
    rows: Sequence[tuple[int, Any]],
    sep: str,
    excluded: Iterable[str] | None,
    on_duplicate: str,
    source: str | None,
    unit: str,
) -> Hierarchy:
    """The tree of :func:`from_paths` from (row number, path) pairs; ``unit`` is "row" or "line"."""
    _check_choice("on_duplicate", on_duplicate, ("error", "ignore"))
    if not sep:
        raise ValueError("sep must be a non-empty level separator such as ' > '")
    of_source = f" of {source}" if source else ""
    given_at: dict[str, int] = {}
    parent_of: dict[str, str | None] = {}
    for number, raw in rows:
        text = _clean_path_row(raw, f"{unit} {number}{of_source}")
        if not text:
            continue
        levels = _split_levels(text, sep, f"{unit} {number}{of_source}")
        name = sep.join(levels)
        if name in given_at:
            if on_duplicate == "error":
                raise HierarchyError(
                    f"path {name!r} is listed twice, at {unit}s {given_at[name]} and {number}{of_source}; "
                    + remedies("remove the duplicate", option("path_duplicates", "ignore"))
                )
            continue
        given_at[name] = number
        parent = None
        for depth in range(1, len(levels) + 1):
            prefix = sep.join(levels[:depth])
            parent_of.setdefault(prefix, parent)
            parent = prefix
    if not parent_of:
        where = f" in {source}" if source else ""
        raise HierarchyError(f"no paths{where} (only blank rows or none at all); give at least one path")
    parents = [[parent] if parent is not None else [] for parent in parent_of.values()]
    return Hierarchy(list(parent_of), parents, excluded=excluded, separator=sep, source=source)


def _clean_path_row(raw: Any, where: str) -> str:
    """A row's path without surrounding whitespace or trailing commas; "" for blank or missing rows."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return ""
    if not isinstance(raw, str):
        raise HierarchyError(f"{where} is {raw!r}, not a path string")
    return raw.strip().rstrip(", \t").strip()


def _split_levels(text: str, sep: str, where: str) -> list[str]:
    """The stripped levels of a path; an empty level is an error.

    With a padded separator (``" > "``) a level that starts or ends with the bare ``">"`` is also an
    empty level in disguise: ``"A > > B"`` splits into ``"A"`` and ``"> B"``, and ``"A >"`` (stripped
    from ``"A > "``) does not split at all.
    """
    levels = [level.strip() for level in text.split(sep)]
    bare = sep.strip()
    padded = bool(bare) and bare != sep
    if any(not level or (padded and (level.startswith(bare) or level.endswith(bare))) for level in levels):
        raise HierarchyError(
            f"{where}: path {text!r} has an empty level (two separators {sep!r} in a row, or one at an "
            "end); fix the path"
        )
    return levels


def _read_csv_records(file: Path, delimiter: str, encoding: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) for every non-blank CSV record; the number is the record's last line."""
    records = []
    try:
        with open(file, newline="", encoding=encoding) as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            for fields in reader:
                if any(field.strip() for field in fields):
                    records.append((reader.line_num, fields))
    except UnicodeDecodeError as error:
        raise HierarchyError(
            f"{file} is not {encoding} text ({error}); "
            + remedies("save it as UTF-8", option("hierarchy_encoding", "latin-1"))
        ) from None
    except csv.Error as error:
        raise HierarchyError(f"{file} is not valid CSV: {error}") from None
    return records


def _looks_like_header(records: Sequence[tuple[int, list[str]]], column: int, sep: str) -> bool:
    def has_separator(fields: list[str]) -> bool:
        return column < len(fields) and sep in fields[column]

    return not has_separator(records[0][1]) and any(has_separator(f) for _, f in records[1:])


def _column_index(column: str | int | None, header: list[str] | None, file: Path) -> int:
    if column is None:
        return 0
    if isinstance(column, str):
        if header is None or column not in header:
            raise HierarchyError(f"{file} has no column {column!r}; its header is {header}")
        return header.index(column)
    if column < 0 or (header is not None and column >= len(header)):
        raise HierarchyError(f"column index {column} is out of range for {file} (header {header})")
    return column


def _without_trailing_empty(fields: list[str]) -> list[str]:
    end = len(fields)
    while end and not fields[end - 1].strip():
        end -= 1
    return fields[:end]


# ------------------------------------------------------------------ edges
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


def _node_name(value: Any, where: str) -> str:
    name = "" if value is None else str(value).strip()
    if not name:
        raise HierarchyError(f"{where} has an empty node name ({value!r}); every node needs a name")
    return name


# ------------------------------------------------------------------ tables
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


# ------------------------------------------------------------------ folders
def from_folder(
    root: PathLike,
    image_extensions: Iterable[str] | None = IMAGE_EXTENSIONS,
    sep: str = DEFAULT_SEPARATOR,
    excluded: Iterable[str] | None = None,
) -> Hierarchy:
    """A tree from a nested image folder (``Biota/Macroalgae/Kelp/img.jpg``).

    Every folder below ``root`` is a node named by its path relative to ``root``, levels joined with
    ``sep`` (``"Biota > Macroalgae > Kelp"``).  Hidden folders (name starting with ".") are skipped,
    and so, when ``image_extensions`` is given, are folders with no image anywhere below them
    (annotation or cache folders); pass ``image_extensions=None`` to keep every folder.  Folders are
    visited in sorted order; symbolic links are followed, loops are not.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        HierarchyError: ``root`` is not a folder, or has no (image-holding) subfolder.
    """
    folder = Path(root)
    if not folder.exists():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise HierarchyError(f"{folder} is a file, not a folder; from_folder needs the root of a folder tree")
    extensions = None
    if image_extensions is not None:
        extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in image_extensions)
    found, _ = _folder_nodes(folder, (), sep, extensions, {os.path.realpath(folder)})
    if not found:
        holding = f" holding images ({', '.join(extensions)})" if extensions else ""
        raise HierarchyError(
            f"{folder} has no subfolders{holding}; a folder hierarchy needs one folder per node, "
            "e.g. Biota/Macroalgae/Kelp/image.jpg"
        )
    parents = [[parent] if parent is not None else [] for parent in found.values()]
    return Hierarchy(list(found), parents, excluded=excluded, separator=sep, source=str(folder))


def _folder_nodes(
    folder: Path, levels: tuple[str, ...], sep: str, extensions: tuple[str, ...] | None, on_path: set[str]
) -> tuple[dict[str, str | None], bool]:
    """The nodes below ``folder`` in pre-order ({name: parent name}) and whether it holds images."""
    entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    has_images = extensions is None or any(
        entry.is_file() and entry.name.lower().endswith(extensions) for entry in entries
    )
    nodes: dict[str, str | None] = {}
    parent = sep.join(levels) if levels else None
    for entry in entries:
        real = os.path.realpath(entry.path)
        if entry.name.startswith(".") or not entry.is_dir() or real in on_path:
            continue
        child_levels = (*levels, entry.name)
        below, child_has_images = _folder_nodes(
            Path(entry.path), child_levels, sep, extensions, on_path | {real}
        )
        if child_has_images:
            nodes[sep.join(child_levels)] = parent
            nodes.update(below)
            has_images = True
    return nodes, has_images


# ------------------------------------------------------------------ ARFF
def from_arff(
    path_or_line: PathLike,
    kind: str = "auto",
    excluded: Iterable[str] | None = None,
) -> Hierarchy:
    """The class hierarchy of an HMC benchmark ARFF file (its ``hierarchical`` attribute line).

    The file is read line by line up to that attribute; the data section is never loaded.  The value
    list is comma-separated and comes in two kinds:

    * ``"paths"`` (FunCat, Diatoms, Enron, ImCLEF07): items like ``01/01/03``; every prefix is a
      node named by its ``/``-joined levels (``"01/01"``), parents come from prefixes whatever the
      item order, and an artificial ``root`` is the parent of all top-level nodes.
    * ``"edges"`` (Gene Ontology): items ``parent/child`` of a DAG that has its own ``root``.

    ``kind="auto"`` picks edges when an item starts with ``root/``.

    By default ``root`` is excluded, and for edges also the GO roots present (``GO_ROOTS``, the
    children of ``root``).  The evaluated node counts then equal C-HMCNN's output sizes, which leave
    out the GO roots too (cellcycle FunCat: 499 of 500 nodes; cellcycle GO: 4122 of 4126, where
    excluding ``root`` alone would leave 4125).  An explicit ``excluded`` replaces that default
    (``excluded=["root"]`` keeps the GO roots evaluated).

    Args:
        path_or_line: the ARFF file, or the ``@ATTRIBUTE ... hierarchical ...`` line itself.
        kind: ``"auto"``, ``"paths"`` or ``"edges"``.
        excluded: nodes kept out of loss and metrics; None for the default above.

    Raises:
        FileNotFoundError: the file does not exist.
        HierarchyError: no hierarchical attribute before ``@DATA``, an empty value list, an empty
            item or level, a malformed edge, a self-loop or a cycle; naming the file and line.
    """
    _check_choice("kind", kind, ("auto", "paths", "edges"))
    if isinstance(path_or_line, str) and path_or_line.lstrip().lower().startswith("@attribute"):
        where, values = "the given line", _arff_values(path_or_line, "the given line")
        source = None
    else:
        file = _existing_file(path_or_line, "ARFF file")
        line_number, values = _find_arff_hierarchy(file)
        where, source = f"line {line_number} of {file}", str(file)
    items = [item.strip() for item in values.split(",")]
    for number, item in enumerate(items, start=1):
        if not item:
            raise HierarchyError(
                f"{where}: item {number} of the hierarchy list is empty (two commas in a row?)"
            )
    if kind == "auto":
        kind = "edges" if any(item.startswith(f"{ARTIFICIAL_ROOT}/") for item in items) else "paths"
    try:
        if kind == "edges":
            return _arff_edges(items, where, excluded, source)
        return _arff_paths(items, where, excluded, source)
    except HierarchyError as error:
        if source is None or where in str(error):
            raise
        raise HierarchyError(f"{error} (hierarchy at {where})") from None


def _find_arff_hierarchy(file: Path) -> tuple[int, str]:
    with open(file, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.lstrip().lower()
            if stripped.startswith("@data"):
                raise HierarchyError(
                    f"{file} reaches @DATA at line {number} without a hierarchical class attribute "
                    "('@ATTRIBUTE class hierarchical a,a/b,...'); is it an HMC ARFF file?"
                )
            if stripped.startswith("@attribute") and _ARFF_HIERARCHY_LINE.match(line):
                return number, _arff_values(line, f"line {number} of {file}")
    raise HierarchyError(
        f"{file} has no hierarchical class attribute ('@ATTRIBUTE class hierarchical a,a/b,...'); "
        "is it an HMC ARFF file?"
    )


def _arff_values(line: str, where: str) -> str:
    match = _ARFF_HIERARCHY_LINE.match(line)
    if match is None:
        raise HierarchyError(
            f"{where} is not a hierarchical attribute; expected '@ATTRIBUTE class hierarchical a,a/b,...'"
        )
    values = match.group(1).strip()
    if not values:
        raise HierarchyError(f"{where}: the hierarchical attribute lists no classes")
    return values


def _arff_paths(
    items: Sequence[str], where: str, excluded: Iterable[str] | None, source: str | None
) -> Hierarchy:
    parent_of: dict[str, str] = {ARTIFICIAL_ROOT: ""}
    for number, item in enumerate(items, start=1):
        levels = item.split(ARFF_PATH_SEPARATOR)
        if any(not level for level in levels):
            raise HierarchyError(f"{where}: item {number} ({item!r}) has an empty level; fix the path")
        if levels[0] == ARTIFICIAL_ROOT:
            raise HierarchyError(
                f"{where}: item {number} ({item!r}) uses the reserved name {ARTIFICIAL_ROOT!r} as a path "
                "level; "
                + remedies(
                    "fix the path", option("arff_kind", "edges", "if the items are parent/child edges")
                )
            )
        parent = ARTIFICIAL_ROOT
        for depth in range(1, len(levels) + 1):
            prefix = ARFF_PATH_SEPARATOR.join(levels[:depth])
            parent_of.setdefault(prefix, parent)
            parent = prefix
    parents = [[parent] if parent else [] for parent in parent_of.values()]
    excluded = [ARTIFICIAL_ROOT] if excluded is None else excluded
    return Hierarchy(
        list(parent_of), parents, excluded=excluded, separator=ARFF_PATH_SEPARATOR, source=source
    )


def _arff_edges(
    items: Sequence[str], where: str, excluded: Iterable[str] | None, source: str | None
) -> Hierarchy:
    pairs = []
    for number, item in enumerate(items, start=1):
        terms = item.split(ARFF_PATH_SEPARATOR)
        if len(terms) != 2 or not all(terms):
            raise HierarchyError(
                f"{where}: item {number} ({item!r}) is not a parent/child edge"
                + "; "
                + remedies("fix the item", option("arff_kind", "paths", "if the items are paths"))
            )
        if terms[0] == terms[1]:
            raise HierarchyError(f"{where}: item {number} ({item!r}) links a node to itself; remove it")
        pairs.append((terms[0], terms[1]))
    if excluded is None:
        named = {name for pair in pairs for name in pair}
        excluded = [name for name in (ARTIFICIAL_ROOT, *GO_ROOTS) if name in named] or None
    return from_edges(pairs, excluded=excluded, source=source)


# ------------------------------------------------------------------ dispatch
def load_hierarchy(path: PathLike, **kwargs: Any) -> Hierarchy:
    """A hierarchy from a file or folder, the loader picked by its type (also ``Hierarchy.load``).

    * a folder: :func:`from_folder`;
    * ``.arff``: :func:`from_arff`;
    * ``.json``: a ``Hierarchy.to_dict()`` record (keys ``nodes`` and ``parents``; ``excluded=`` may
      override its exclusions) or a CATAMI-style fixture list (:func:`from_catami_json`);
    * ``.csv`` / ``.txt``: :func:`from_parent_table` when the header has the id (``id`` or ``node``)
      and parent columns (``id_column``/``parent_column`` if given), else :func:`from_path_file`.

    Keyword arguments go to the chosen loader.

    Raises:
        FileNotFoundError: nothing at ``path``.
        HierarchyError: an unknown file type, an unrecognised JSON layout, or the loader's errors.
    """
    target = Path(path)
    if not target.exists():
        raise FileNotFoundError(f"hierarchy file or folder {target} does not exist")
    if target.is_dir():
        return from_folder(target, **kwargs)
    suffix = target.suffix.lower()
    if suffix == ".arff":
        return from_arff(target, **kwargs)
    if suffix == ".json":
        return _load_json_hierarchy(target, **kwargs)
    if suffix in (".csv", ".txt"):
        parent = kwargs.get("parent_column", "parent")
        for id_column in [kwargs["id_column"]] if "id_column" in kwargs else ["id", "node"]:
            if _csv_has_columns(target, (id_column, parent)):
                options = {**kwargs, "id_column": id_column}
                if "naming" not in options and not _csv_has_columns(
                    target, (options.get("name_column", "name"),)
                ):
                    options["naming"] = "id"  # no name column: the ids are the names
                return from_parent_table(target, **options)
        return from_path_file(target, **kwargs)
    raise HierarchyError(
        f"cannot tell how to read {target}: unknown file type {suffix!r}; give a .csv/.txt path file or "
        "parent table, a .json (Hierarchy.to_dict or CATAMI fixture), an .arff file or an image folder, "
        "or call one of the Hierarchy.from_* loaders"
    )


def _load_json_hierarchy(file: Path, **kwargs: Any) -> Hierarchy:
    data = _read_json(file)
    if isinstance(data, Mapping) and {"nodes", "parents"} <= set(data):
        unexpected = set(kwargs) - {"excluded"}
        if unexpected:
            raise TypeError(f"a Hierarchy.to_dict() JSON takes only excluded=, not {sorted(unexpected)}")
        hierarchy = Hierarchy.from_dict(data, source=str(file))
        if kwargs.get("excluded") is not None:
            hierarchy = hierarchy.with_excluded(kwargs["excluded"])
        return hierarchy
    if isinstance(data, list) and data and isinstance(data[0], Mapping) and "fields" in data[0]:
        return from_catami_json(file, **kwargs)
    keys = sorted(data)[:10] if isinstance(data, Mapping) else type(data).__name__
    raise HierarchyError(
        f"{file} is neither a Hierarchy.to_dict() record (keys 'nodes' and 'parents') nor a CATAMI "
        f"fixture (a list of records with 'fields'); found {keys}"
    )


def _csv_has_columns(file: Path, columns: Iterable[str]) -> bool:
    records = _read_csv_records(file, ",", "utf-8-sig")
    if not records:
        return False
    header = {field.strip() for field in records[0][1]}
    return all(column in header for column in columns)


# ------------------------------------------------------------------ helpers
def _existing_file(path: PathLike, what: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{what} {file} does not exist")
    if file.is_dir():
        raise HierarchyError(f"{file} is a folder, not a {what}; for an image folder tree use from_folder")
    return file


def _read_json(file: Path) -> Any:
    try:
        with open(file, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise HierarchyError(f"{file} is not valid JSON: {error.msg} at line {error.lineno}") from None


def _check_choice(argument: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{argument} must be one of {list(choices)}, not {value!r}")
