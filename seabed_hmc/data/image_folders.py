"""Image tables from nested image folders: the label of an image is its folder's path.

:func:`scan_image_folder` reads ``ROOT/Biota/Macroalgae/Kelp/img.jpg`` into the same
:class:`~seabed_hmc.data.manifest.ImageTable` a CSV manifest gives; the hierarchy defaults to
``Hierarchy.from_folder`` of the same folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from seabed_hmc.data.manifest import ImageTable, ManifestError, ManifestLabelError, PathLike
from seabed_hmc.hierarchy import DEFAULT_SEPARATOR, Hierarchy, from_folder
from seabed_hmc.hierarchy.loaders import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)


def scan_image_folder(
    root: PathLike,
    hierarchy: Hierarchy | None = None,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    separator: str = DEFAULT_SEPARATOR,
    inner_folders_complete: bool = False,
) -> ImageTable:
    """An :class:`ImageTable` from a nested image folder (``Biota/Macroalgae/Kelp/img.jpg``).

    The label of an image is its folder's path relative to ``root``, levels joined with ``separator``
    (``"Biota > Macroalgae > Kelp"``): the node names of ``Hierarchy.from_folder(root)``, the default
    hierarchy.  Hidden files and folders (name starting with ".") and files without one of
    ``extensions`` (any case) are ignored, as ``from_folder`` does.  Images lying directly in ``root``
    have no label: they are skipped and listed in ``table.problems`` with the reason.  Every image gets
    split ``""``.

    Args:
        root: the top folder (its subfolders are the top-level nodes).
        hierarchy: the hierarchy to encode against; every image folder must name one of its nodes.
        extensions: the image file extensions.
        separator: joins folder levels into node names.
        inner_folders_complete: whether an image in a folder that has subfolders (a node with children,
            e.g. ``Biota/Macroalgae/img.jpg``) is completely annotated.  Default False: such an image
            was usually not identified further, so the nodes below its folder are unknown (mask 0).
            Images in leaf folders are complete.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ManifestError: ``root`` is not a folder, or no image lies in a subfolder.
        ManifestLabelError: a folder is not a node of the given ``hierarchy``.
    """
    folder = Path(os.path.abspath(root))
    if not folder.exists():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise ManifestError(f"{folder} is a file, not a folder of class folders", path=folder)
    suffixes = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    images: list[tuple[str, tuple[str, ...]]] = []
    problems: list[tuple[str, str]] = []
    _scan(folder, (), suffixes, {os.path.realpath(folder)}, images, problems)
    if not images:
        raise ManifestError(
            f"{folder} has no images ({', '.join(suffixes)}) inside class folders; arrange them as "
            f"ROOT/Biota/Macroalgae/Kelp/image.jpg ({len(problems)} file(s) skipped)",
            path=folder,
        )
    if problems:
        logger.warning("%s: %d file(s) skipped, e.g. %s: %s", folder, len(problems), *problems[0])
    if hierarchy is None:
        hierarchy = from_folder(folder, image_extensions=suffixes, sep=separator)
    labels, complete = [], []
    for path, levels in images:
        label = separator.join(levels)
        if label not in hierarchy:
            raise ManifestLabelError(
                f"{folder}: folder {os.sep.join(levels)!r} (holding {path}) is not a node of the hierarchy"
                f"{f' from {hierarchy.source}' if hierarchy.source else ''}; rename the folder or add the "
                f"node {label!r}",
                path=folder,
            )
        labels.append(label)
        complete.append(inner_folders_complete or not hierarchy.children[hierarchy.index(label)])
    targets, mask = hierarchy.encode(labels, complete)
    frame = pd.DataFrame(
        {
            "image": [path for path, _ in images],
            "labels": labels,
            "split": [""] * len(images),
            "complete": np.array(complete, dtype=bool),
        }
    )
    return ImageTable(frame, hierarchy, targets, mask, source=folder, problems=problems)


def _scan(
    folder: Path,
    levels: tuple[str, ...],
    suffixes: tuple[str, ...],
    on_path: set[str],
    images: list[tuple[str, tuple[str, ...]]],
    problems: list[tuple[str, str]],
) -> None:
    """Collect (image path, folder levels) below ``folder`` in sorted order; root images are problems."""
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            real = os.path.realpath(entry.path)
            if real in on_path:
                problems.append((entry.path, "folder link loops back to a folder above it; not followed"))
                continue
            _scan(Path(entry.path), (*levels, entry.name), suffixes, on_path | {real}, images, problems)
        elif entry.is_file() and entry.name.lower().endswith(suffixes):
            if levels:
                images.append((entry.path, levels))
            else:
                problems.append(
                    (
                        entry.path,
                        "lies directly in the root folder, so it has no label; move it into its class folder",
                    )
                )
