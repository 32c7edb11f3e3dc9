"""Build a :class:`Hierarchy` from the forms hierarchies come in.

One function per form, each also reachable as a static method of :class:`Hierarchy`
(``Hierarchy.from_paths(...)`` is :func:`from_paths`):

The forms live in their own modules (``paths``, ``tables``, ``arff``; shared file helpers in
``_files``) and are re-exported here; :func:`from_folder` and :func:`load_hierarchy` live here.

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

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from seabed_hmc.hierarchy._core import DEFAULT_SEPARATOR, Hierarchy, HierarchyError
from seabed_hmc.hierarchy._files import (
    PathLike,
    _csv_has_columns,
    _read_json,
)
from seabed_hmc.hierarchy.arff import ARFF_PATH_SEPARATOR, GO_ROOTS, from_arff
from seabed_hmc.hierarchy.paths import from_path_file, from_paths
from seabed_hmc.hierarchy.tables import from_catami_json, from_edges, from_parent_table

__all__ = [
    "ARFF_PATH_SEPARATOR",
    "GO_ROOTS",
    "IMAGE_EXTENSIONS",
    "from_arff",
    "from_catami_json",
    "from_edges",
    "from_folder",
    "from_parent_table",
    "from_path_file",
    "from_paths",
    "load_hierarchy",
]


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


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


def load_hierarchy(path: PathLike, **kwargs: Any) -> Hierarchy:
    """A hierarchy from a file or folder, the loader picked by its type (also ``Hierarchy.load``).

    * a folder: :func:`from_folder`;
    * ``.arff``: :func:`from_arff`;
    * ``.json``: a ``Hierarchy.to_dict()`` record (keys ``nodes`` and ``parents``; ``excluded=`` may
      override its exclusions) or a CATAMI-style fixture list (:func:`from_catami_json`);
    * ``.csv`` / ``.txt``: :func:`from_parent_table` when the header has the id (``id`` or ``node``)
      and parent (``parent``, or ``parent_id`` as in a BIIGLE label-tree export) columns
      (``id_column``/``parent_column`` if given), else :func:`from_path_file`.

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
        parents = [kwargs["parent_column"]] if "parent_column" in kwargs else ["parent", "parent_id"]
        ids = [kwargs["id_column"]] if "id_column" in kwargs else ["id", "node"]
        for id_column, parent in ((i, p) for i in ids for p in parents):
            if _csv_has_columns(target, (id_column, parent)):
                options = {**kwargs, "id_column": id_column, "parent_column": parent}
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
