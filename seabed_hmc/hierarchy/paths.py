"""Hierarchies from full paths such as ``"[BIOTA] > Biota > Sponges"`` (BenthicNet's CATAMI CSV):
:func:`from_paths` and :func:`from_path_file`.  Node names are the full paths, because leaf names
repeat under different parents ("Massive" sponges, "Massive" corals)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from seabed_hmc.hierarchy._core import DEFAULT_SEPARATOR, Hierarchy, HierarchyError
from seabed_hmc.hierarchy._files import (
    PathLike,
    _check_choice,
    _clean_path_row,
    _column_index,
    _existing_file,
    _looks_like_header,
    _read_csv_records,
    _split_levels,
    _without_trailing_empty,
)
from seabed_hmc.remedies import option, remedies


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
