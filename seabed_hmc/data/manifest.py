"""Image tables: CSV manifests and nested image folders, read into one :class:`ImageTable`.

* :func:`read_manifest`: a CSV manifest (format in ``data_manifests/README.md``): one row per image with
  its path, its label paths (``" > "`` between levels, ``"|"`` between paths), and optionally its split,
  whether the annotation is complete, georeference columns and any extra metadata (passed through).
* :func:`~seabed_hmc.data.image_folders.scan_image_folder` (its own module): a nested folder
  (``Biota/Macroalgae/Kelp/img.jpg``), the label of an image being its folder's path.

Row numbers in messages follow the spreadsheet convention: the header is row 1, the first image row is
row 2, blank rows count (a spreadsheet shows them) and a quoted cell spanning several lines is one row.
Every invalid manifest raises :class:`ManifestError` (a ``ValueError``) naming the file, the row and the
column; an unknown label raises :class:`ManifestLabelError`, which is also a ``LabelError``.
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seabed_hmc.hierarchy import (
    DEFAULT_SEPARATOR,
    LABEL_SEPARATOR,
    Hierarchy,
    HierarchyError,
    LabelError,
    from_paths,
)
from seabed_hmc.remedies import option, remedies

PathLike = str | os.PathLike

#: The split names a manifest may use ("" = no split given).
SPLITS = ("train", "val", "test")
#: Columns with a meaning; every other column is metadata, passed through as text.
KNOWN_COLUMNS = ("image", "labels", "split", "complete", "x", "y", "crs")
REQUIRED_COLUMNS = ("image", "labels")
_SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test", "": ""}
_COMPLETE_VALUES = {"true": True, "1": True, "yes": True, "": True, "false": False, "0": False, "no": False}
_ON_DUPLICATE = ("error", "merge")
#: Column names other tools use for the required columns, offered as hints when one is missing.
_COLUMN_SYNONYMS = {
    "image": ("path", "file", "filename", "file_name", "image_path", "img", "filepath", "file_path"),
    "labels": ("label", "hierarchy_path", "class", "classes", "category", "path_label", "annotation"),
}

logger = logging.getLogger(__name__)


class ManifestError(ValueError):
    """A manifest or image folder cannot be used; the message names the file, row and column.

    ``path``, ``row`` (spreadsheet numbering, header = 1; None when not about one row) and ``column``
    (the name in the file) are kept for callers.
    """

    def __init__(
        self, message: str, path: PathLike | None = None, row: int | None = None, column: str | None = None
    ) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.row = row
        self.column = column


class ManifestLabelError(ManifestError, LabelError):
    """A manifest row (or image folder) names a label that is not a node of the hierarchy."""


@dataclass(eq=False)
class ImageTable:
    """Images with their labels, encoded against one hierarchy.

    Attributes:
        frame: one row per image: ``image`` (absolute path), ``labels`` (node names joined by ``"|"``),
            ``split`` (``"train"``, ``"val"``, ``"test"`` or ``""``), ``complete`` (bool), then the
            manifest's ``x``/``y`` (float) and ``crs`` when present, and every extra column as text.
        hierarchy: the hierarchy the labels are encoded against.
        targets: (images, nodes) float32, ancestor-closed (``hierarchy.encode``).
        mask: (images, nodes) float32, 0 where a node is unknown (incomplete annotations).
        source: the manifest file or image folder.
        problems: ``(path, reason)`` for every image of the source that was skipped (a folder scan
            skips images lying directly in the root); kept by :meth:`select` and :meth:`subset`.
    """

    frame: pd.DataFrame
    hierarchy: Hierarchy
    targets: torch.Tensor
    mask: torch.Tensor
    source: Path | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        expected = (len(self.frame), len(self.hierarchy))
        for name in ("targets", "mask"):
            shape = tuple(getattr(self, name).shape)
            if shape != expected:
                raise ValueError(
                    f"ImageTable.{name} has shape {shape}, expected (images, nodes) = {expected}"
                )

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        splits = self.frame["split"].replace("", "(none)").value_counts().to_dict()
        return (
            f"ImageTable({len(self)} images, splits {splits}, {len(self.hierarchy)} nodes, "
            f"{len(self.problems)} problem(s), source={str(self.source)!r})"
        )

    @property
    def paths(self) -> list[str]:
        """The absolute image paths, in row order."""
        return self.frame["image"].tolist()

    def select(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageTable:
        """A new table with the rows at ``indices`` (positions, in the given order; or a bool mask)."""
        index = np.asarray(indices)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise ValueError(f"a boolean selection needs {len(self)} entries, got shape {index.shape}")
            index = np.flatnonzero(index)
        elif index.size == 0:
            index = index.astype(np.int64)
        elif not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"select takes integer positions or a boolean mask, not {index.dtype} values")
        index = index.astype(np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"positions must lie in 0..{len(self) - 1}; got {index.min()}..{index.max()}")
        rows = torch.from_numpy(index)
        return ImageTable(
            frame=self.frame.iloc[index].reset_index(drop=True),
            hierarchy=self.hierarchy,
            targets=self.targets[rows],
            mask=self.mask[rows],
            source=self.source,
            problems=list(self.problems),
        )

    def subset(self, split: str) -> ImageTable:
        """The rows of one split (``"train"``, ``"val"``, ``"test"``, or ``""`` for rows without one)."""
        if split not in (*SPLITS, ""):
            raise ValueError(f"split must be one of {[*SPLITS, '']}, not {split!r}")
        return self.select((self.frame["split"] == split).to_numpy(dtype=bool))


# ------------------------------------------------------------------ manifests
@dataclass
class _Row:
    """One image row while reading: its spreadsheet row(s) and its cleaned values."""

    rows: list[int]
    image: str
    labels: list[str]
    split: str
    complete: bool
    geo: dict[str, float | str]
    extras: list[str]


def read_manifest(
    path: PathLike,
    hierarchy: Hierarchy | None = None,
    root: PathLike | None = None,
    separator: str = DEFAULT_SEPARATOR,
    allow_outside_root: bool = False,
    columns: Mapping[str, str] | None = None,
    on_duplicate: str = "error",
    encoding: str = "utf-8-sig",
) -> ImageTable:
    """Read a CSV manifest into an :class:`ImageTable` (format: ``data_manifests/README.md``).

    Args:
        path: the CSV file (comma-delimited, header row first).
        hierarchy: the hierarchy to encode against; None builds one from the union of the label paths
            (``Hierarchy.from_paths(..., sep=separator, on_duplicate="ignore")``).
        root: the folder relative image paths start from; default the manifest's folder.
        separator: the level separator of label paths, used when building the hierarchy (a given
            hierarchy resolves labels with its own separator).
        allow_outside_root: accept images that lie outside ``root`` once ``..`` is resolved (absolute
            paths included).  Symbolic links are not followed for this check: it catches mistyped or
            foreign paths, it is not a security boundary.
        columns: the file's names for the known columns, ``{known: in_file}``, for manifests written
            with other names, e.g. ``{"image": "path", "labels": "hierarchy_path"}``.
        on_duplicate: ``"error"`` when an image is listed twice, or ``"merge"``: one row with the union
            of the labels, complete only if every row says so (incomplete wins: claiming unknown nodes
            as known negatives would be wrong), the split they agree on, other cells from the first row.
        encoding: the text encoding; the default reads UTF-8 with or without a byte-order mark.  Other
            text is not guessed at: a decoding error names the line and suggests ``encoding=``.

    Image files are not opened here: use :func:`seabed_hmc.data.check_images` on ``table.paths``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ManifestError: undecodable text, no header or no rows, a missing or unnamed column, too many
            cells in a row, an empty image or labels cell, an image outside the root, an invalid
            ``complete``/``split``/``x``/``y`` value, a duplicated image, a malformed label path.
        ManifestLabelError: a label that is not a node of ``hierarchy``.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"manifest {file} does not exist (or is not a file)")
    if on_duplicate not in _ON_DUPLICATE:
        raise ValueError(f"on_duplicate must be one of {list(_ON_DUPLICATE)}, not {on_duplicate!r}")
    header, records = _read_records(file, encoding)
    header, records = _drop_unnamed_empty_columns(header, records, file)
    positions = _column_positions(header, columns, file)
    base = os.path.abspath(root if root is not None else file.parent)
    reader = _RowReader(file, header, positions, base, allow_outside_root)
    rows = _merge_duplicates([reader.read(row, fields) for row, fields in records], on_duplicate, reader)
    if hierarchy is None:
        hierarchy = _hierarchy_from_rows(rows, separator, reader)
    labels = [_resolve_labels(row, hierarchy, reader) for row in rows]
    targets, mask = hierarchy.encode(labels, [row.complete for row in rows])
    frame = pd.DataFrame(
        {
            "image": [row.image for row in rows],
            "labels": labels,
            "split": [row.split for row in rows],
            "complete": np.array([row.complete for row in rows], dtype=bool),
        }
    )
    for name in ("x", "y", "crs"):
        if name in positions:
            frame[name] = [row.geo[name] for row in rows]
    for number, name in enumerate(reader.extra_names):
        frame[name] = [row.extras[number] for row in rows]
    return ImageTable(frame=frame, hierarchy=hierarchy, targets=targets, mask=mask, source=file)


def _read_records(file: Path, encoding: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The stripped header and (spreadsheet row, fields) of every non-blank record after it."""
    raw = file.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ManifestError(
            f"{file} is not {encoding} text: byte {raw[error.start]:#04x} on line {line} cannot be decoded. "
            + remedies(
                "Save the manifest as UTF-8 (spreadsheets: 'CSV UTF-8')",
                option("manifest_encoding", "cp1252", "(Windows) or 'latin-1'"),
            ),
            path=file,
        ) from None
    try:
        table = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise ManifestError(f"{file} is not valid CSV: {error}", path=file) from None
    if not table or not any(cell.strip() for cell in table[0]):
        raise ManifestError(
            f"{file} is empty or its first row is blank; a manifest starts with a header row naming its "
            "columns (at least 'image' and 'labels')",
            path=file,
            row=1,
        )
    records = [
        (row, fields) for row, fields in enumerate(table[1:], start=2) if any(f.strip() for f in fields)
    ]
    if not records:
        raise ManifestError(f"{file} has a header but no image rows", path=file)
    return [name.strip() for name in table[0]], records


def _drop_unnamed_empty_columns(
    header: list[str], records: list[tuple[int, list[str]]], file: Path
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Drop columns with neither a name nor values (a trailing comma); reject named-less data."""
    unnamed = [i for i, name in enumerate(header) if not name]
    for i in unnamed:
        holding = next((row for row, fields in records if i < len(fields) and fields[i].strip()), None)
        if holding is not None:
            raise ManifestError(
                f"{file}: column {i + 1} has no name in the header (row 1) but holds values (first at row "
                f"{holding}); name the column, or delete it",
                path=file,
                row=holding,
            )
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        raise ManifestError(
            f"{file}: the header (row 1) repeats column(s) {repeated}; rename them", path=file
        )
    if not unnamed:
        return header, records
    keep = [i for i in range(len(header)) if i not in unnamed]
    return (
        [header[i] for i in keep],
        [(row, [fields[i] if i < len(fields) else "" for i in keep]) for row, fields in records],
    )


def _column_positions(header: list[str], columns: Mapping[str, str] | None, file: Path) -> dict[str, int]:
    """{known column: position in the header}, honouring the ``columns`` mapping."""
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(KNOWN_COLUMNS))
    if unknown:
        raise ValueError(f"columns= keys must be among {list(KNOWN_COLUMNS)}; got {unknown}")
    index = {name: i for i, name in enumerate(header)}
    positions: dict[str, int] = {}
    for known in KNOWN_COLUMNS:
        name = columns.get(known, known)
        if name in index:
            positions[known] = index[name]
        elif known in columns:
            raise ManifestError(
                f"{file}: the column mapping reads {known!r} from {name!r}, but the header (row 1) has no "
                f"such column; its columns are {header}",
                path=file,
                column=name,
            )
        if known in columns and known in index and columns[known] != known:
            raise ManifestError(
                f"{file}: the column mapping reads {known!r} from {columns[known]!r}, but the file also has "
                f"a column named {known!r}; rename or drop one of them",
                path=file,
                column=known,
            )
    for known in REQUIRED_COLUMNS:
        if known not in positions:
            synonyms = [name for name in header if name.lower() in _COLUMN_SYNONYMS[known]]
            close = synonyms or difflib.get_close_matches(known, header, n=1, cutoff=0.6)
            perhaps = f" (perhaps {known}={close[0]})" if close else ""
            raise ManifestError(
                f"{file} has no {known!r} column; its header (row 1) is {header}. "
                + remedies(
                    "Add the column", option("columns", why=f"to name the column that holds it{perhaps}")
                ),
                path=file,
                row=1,
                column=known,
            )
    return positions


class _RowReader:
    """Cleans and checks the cells of one manifest row; knows the file and its column names."""

    def __init__(
        self, file: Path, header: list[str], positions: dict[str, int], base: str, allow_outside_root: bool
    ) -> None:
        self.file = file
        self.header = header
        self.positions = positions
        self.base = base
        self.allow_outside_root = allow_outside_root
        taken = set(positions.values())
        self.extra_positions = [i for i in range(len(header)) if i not in taken]
        self.extra_names = [header[i] for i in self.extra_positions]

    def error(self, row: int | list[int], known: str | None, message: str) -> ManifestError:
        column = self.header[self.positions[known]] if known in self.positions else known
        rows = row if isinstance(row, list) else [row]
        where = f"row {rows[0]}" if len(rows) == 1 else f"rows {', '.join(map(str, rows))}"
        column_text = f", column {column!r}" if column else ""
        return ManifestError(f"{self.file}, {where}{column_text}: {message}", self.file, rows[0], column)

    def read(self, row: int, fields: list[str]) -> _Row:
        if len(fields) > len(self.header) and any(f.strip() for f in fields[len(self.header) :]):
            raise self.error(
                row,
                None,
                f"{len(fields)} cells but the header has {len(self.header)} columns; quote cells that "
                'contain commas ("a, b")',
            )
        fields = fields + [""] * (len(self.header) - len(fields))

        def cell(known: str) -> str:
            return fields[self.positions[known]].strip() if known in self.positions else ""

        geo: dict[str, float | str] = {name: self._number(row, name, cell(name)) for name in ("x", "y")}
        geo["crs"] = cell("crs")
        return _Row(
            rows=[row],
            image=self._image_path(row, cell("image")),
            labels=self._labels(row, cell("labels")),
            split=self._split(row, cell("split")),
            complete=self._complete(row, cell("complete")),
            geo=geo,
            extras=[fields[i] for i in self.extra_positions],
        )

    def _image_path(self, row: int, text: str) -> str:
        if not text:
            raise self.error(row, "image", "the image path is empty; every row needs its image file")
        full = os.path.normpath(os.path.join(self.base, text))
        if not self.allow_outside_root and os.path.commonpath([self.base, full]) != self.base:
            raise self.error(
                row,
                "image",
                f"image path {text!r} resolves to {full}, outside the root folder {self.base}; "
                + remedies(
                    "fix the path",
                    option("root", why="(the folder image paths start from)"),
                    option("allow_outside_root"),
                ),
            )
        return full

    def _labels(self, row: int, text: str) -> list[str]:
        labels = [part.strip() for part in text.split(LABEL_SEPARATOR) if part.strip()]
        if not labels:
            raise self.error(
                row,
                "labels",
                "no label; give the image's hierarchy path (levels joined by ' > ', several paths by '|')",
            )
        return labels

    def _split(self, row: int, text: str) -> str:
        value = _SPLIT_VALUES.get(text.lower())
        if value is None:
            raise self.error(
                row, "split", f"split {text!r} is not one of {list(SPLITS)} (or empty for no split)"
            )
        return value

    def _complete(self, row: int, text: str) -> bool:
        value = _COMPLETE_VALUES.get(text.lower())
        if value is None:
            raise self.error(
                row,
                "complete",
                f"{text!r} is not true/false (also 1/0, yes/no; empty = true); false means the annotation "
                "stops short of the deepest level",
            )
        return value

    def _number(self, row: int, name: str, text: str) -> float:
        if not text:
            return math.nan
        try:
            return float(text)
        except ValueError:
            raise self.error(row, name, f"{text!r} is not a number (leave it empty if unknown)") from None


def _merge_duplicates(rows: list[_Row], on_duplicate: str, reader: _RowReader) -> list[_Row]:
    """One row per image: an error for a repeated image, or the rows merged (``on_duplicate="merge"``)."""
    first: dict[str, _Row] = {}
    for row in rows:
        kept = first.get(row.image)
        if kept is None:
            first[row.image] = row
            continue
        if on_duplicate == "error":
            raise reader.error(
                [kept.rows[0], row.rows[0]],
                "image",
                f"both list the image {row.image}; give each image one row with its labels joined by '|' "
                f"({LABEL_SEPARATOR.join(kept.labels + row.labels)!r})"
                + (f", or {option('on_duplicate', 'merge')}" if option("on_duplicate") else ""),
            )
        if row.split != kept.split:
            raise reader.error(
                [*kept.rows, *row.rows],
                "split",
                f"the image {row.image} is listed in splits {kept.split!r} and {row.split!r}; an image "
                "belongs to one split",
            )
        kept.rows.extend(row.rows)
        kept.labels.extend(label for label in row.labels if label not in kept.labels)
        kept.complete = kept.complete and row.complete
    return list(first.values())


def _hierarchy_from_rows(rows: list[_Row], separator: str, reader: _RowReader) -> Hierarchy:
    """The tree of every label path in the manifest; a malformed path is reported at its row."""
    first_row: dict[str, int] = {}
    for row in rows:
        for label in row.labels:
            first_row.setdefault(label, row.rows[0])
    try:
        return from_paths(list(first_row), sep=separator, on_duplicate="ignore", source=str(reader.file))
    except HierarchyError as error:
        for label, row in first_row.items():
            try:
                from_paths([label], sep=separator)
            except HierarchyError:
                raise reader.error(
                    row,
                    "labels",
                    f"label path {label!r} has an empty level (two separators {separator!r} in a row, or "
                    "one at an end); fix the path",
                ) from None
        raise ManifestError(f"{reader.file}: the label paths do not form a hierarchy: {error}") from None


def _resolve_labels(row: _Row, hierarchy: Hierarchy, reader: _RowReader) -> str:
    """The row's labels as node names joined by "|" (each checked against the hierarchy)."""
    names = []
    for label in row.labels:
        try:
            name = hierarchy.nodes[hierarchy.resolve_label(label)]
        except LabelError as error:
            base = reader.error(row.rows, "labels", str(error))
            raise ManifestLabelError(str(base), base.path, base.row, base.column) from None
        if name not in names:
            names.append(name)
    return LABEL_SEPARATOR.join(names)


# ------------------------------------------------------------------ image folders
