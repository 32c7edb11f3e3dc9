"""Annotation exports read into one point table.

Formats (looked up in each tool's documentation; ``data_manifests/README.md`` shows small examples):

* ``coralnet``: CoralNet's annotation CSV export, one row per point: ``Name`` (the image file name),
  ``Row`` and ``Column`` (pixels from the top-left corner, counted from 0), ``Label`` (the label code;
  ``Label code`` in CoralNet's upload format, accepted too).  Optional columns (``Annotator``, ``Date
  annotated``, machine suggestions and confidences, image metadata) are kept as metadata.

A row that cannot be read (a missing image name, a row or column that is not a whole number or is
negative, an empty label) is reported with the file and its row number (the header is row 1) and
skipped; the table holds the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

POINT_COLUMNS = ("image", "row", "column", "label")
FORMATS = ("coralnet",)
_CORALNET = {"Name": "image", "Row": "row", "Column": "column"}
_CORALNET_LABELS = ("Label", "Label code")


class AnnotationFormatError(ValueError):
    """An annotation export that cannot be read at all (wrong format, missing columns)."""


@dataclass
class PointTable:
    """Points as (image, row, column, label) plus metadata columns, and the rows that were skipped."""

    frame: pd.DataFrame
    source: str
    format: str
    problems: list[dict] = field(default_factory=list)

    @property
    def metadata_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c not in POINT_COLUMNS]


def read_points_export(path: str | Path, format: str = "auto") -> PointTable:
    """Read an annotation export (``format``: one of :data:`FORMATS`, or ``auto`` from its header)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation export {path} does not exist")
    if format == "auto":
        format = detect_format(path)
    if format == "coralnet":
        return read_coralnet(path)
    raise AnnotationFormatError(f"format {format!r} does not exist; choose from auto, {', '.join(FORMATS)}")


def detect_format(path: Path) -> str:
    """The export's format from its first line."""
    try:
        header = pd.read_csv(path, nrows=0, dtype=str, encoding="utf-8-sig").columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise AnnotationFormatError(f"{path}: not a CSV annotation export ({error})") from None
    if set(_CORALNET) <= set(header) and any(c in header for c in _CORALNET_LABELS):
        return "coralnet"
    raise AnnotationFormatError(
        f"{path}: cannot tell the annotation tool from its header {list(header)[:8]}; a CoralNet export "
        "has Name, Row, Column and Label; give --format"
    )


def read_coralnet(path: str | Path) -> PointTable:
    """CoralNet's annotation CSV export (module docstring)."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise AnnotationFormatError(f"{path}: cannot be read as CSV ({error})") from None
    label = next((c for c in _CORALNET_LABELS if c in raw.columns), None)
    missing = [c for c in _CORALNET if c not in raw.columns] + ([] if label else ["Label"])
    if missing:
        raise AnnotationFormatError(
            f"{path}: a CoralNet annotation export needs the columns Name, Row, Column and Label; "
            f"missing {', '.join(missing)} (found {', '.join(raw.columns)})"
        )
    frame = raw.rename(columns={**_CORALNET, label: "label"})
    return _checked(frame, path, "coralnet")


def _checked(frame: pd.DataFrame, path: Path, format: str) -> PointTable:
    """Strip the text, convert row and column to integers, and move unreadable rows to problems."""
    frame = frame.apply(lambda column: column.str.strip())
    problems, keep = [], []
    for index, point in frame.iterrows():
        reason = _row_problem(point)
        if reason:
            problems.append({"file": str(path), "row": index + 2, "image": point["image"], "reason": reason})
        keep.append(not reason)
    table = frame[keep].copy()
    table["row"] = table["row"].astype(int)
    table["column"] = table["column"].astype(int)
    ordered = [*POINT_COLUMNS, *[c for c in table.columns if c not in POINT_COLUMNS]]
    return PointTable(table[ordered].reset_index(drop=True), str(path), format, problems)


def _row_problem(point: pd.Series) -> str:
    if not point["image"]:
        return "no image name"
    for key in ("row", "column"):
        if not point[key].isdigit():
            return f"{key} {point[key]!r} is not a pixel position (a whole number from 0)"
    if not point["label"]:
        return "no label"
    return ""
