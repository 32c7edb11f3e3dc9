"""Hierarchies from the ``hierarchical`` class attribute of the HMC benchmark ARFF files
(:func:`from_arff`: FunCat paths, GO edges, Diatoms, Enron, ImCLEF07)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from seabed_hmc.hierarchy._core import ARTIFICIAL_ROOT, Hierarchy, HierarchyError
from seabed_hmc.hierarchy._files import (
    PathLike,
    _check_choice,
    _existing_file,
)
from seabed_hmc.hierarchy.tables import from_edges
from seabed_hmc.remedies import option, remedies

#: The three Gene Ontology roots (molecular function, cellular component, biological process): the
#: children of ``root`` in the GO benchmark files, left out of evaluation like ``root`` itself.
GO_ROOTS = ("GO0003674", "GO0005575", "GO0008150")


#: The level separator of FunCat-style ARFF paths (``01/01/03``); ARFF node names keep it.
ARFF_PATH_SEPARATOR = "/"


_ARFF_HIERARCHY_LINE = re.compile(
    r"""^\s*@attribute\s+(?:'[^']*'|"[^"]*"|\S+)\s+hierarchical\b(.*)$""", re.IGNORECASE
)


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
