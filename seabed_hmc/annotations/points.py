"""Annotation exports read into one point table.

Formats (looked up in each tool's documentation; ``data_manifests/README.md`` shows small examples):

* ``coralnet``: CoralNet's annotation CSV export, one row per point: ``Name`` (the image file name),
  ``Row`` and ``Column`` (pixels from the top-left corner, counted from 0), ``Label`` (the label code;
  ``Label code`` in CoralNet's upload format, accepted too).  Optional columns (``Annotator``, ``Date
  annotated``, machine suggestions and confidences, image metadata) are kept as metadata.
* ``cpce``: CPCe ``.cpc`` files (one per image; give a file or a folder of them).  Line 1: the code
  file's path, the image's path (often on another machine's drive: only its file name is used), the
  image width and height and the display width and height, all in CPCe units; lines 2-5: the corners
  of the annotation area; line 6: the number of points N; then N lines ``x,y`` (from the left and the
  top) and N lines ``"number","ID code","Notes","notes code"``; then optional header lines.  CPCe 4
  counts 15 units per pixel (``CPCE_UNITS``); the image size it records is kept (``image_width``,
  ``image_height``) and checked against the image file when patches are cut, so a file written with
  other units is reported rather than cut in the wrong place.
* ``biigle``: BIIGLE's CSV annotation report: ``filename``, ``label_name``, ``label_hierarchy`` (the
  label's path in its label tree, ``" > "`` between levels), ``shape_name`` and ``points`` (a JSON list
  of pixel coordinates ``[x, y, ...]``).  Points are taken as they are, circles by their centre
  (``[x, y, r]``) and rectangles by the mean of their corners; other shapes are reported.  The label
  is the hierarchy path when the report has one (the label tree is then the hierarchy), else the name;
  ``label_name``, ``label_id``, ``image_latitude`` and ``image_longitude`` are kept as metadata.
* ``squidle``: a SQUIDLE+ annotation-set export (``dataframe.csv``): ``point.media.key`` (the image;
  when the key has no file extension, ``point.media.path_best``'s is added), ``point.x`` and
  ``point.y`` (the point's position as a fraction of the image's width and height, from the top-left
  corner), ``label.lineage_names`` (the label's path in its label scheme, ``" > "`` between levels:
  the scheme is then the hierarchy) or ``label.name``.  Positions become pixels when the image is
  opened (``column = floor(x * width)``); the fractions are kept as ``x_fraction`` and ``y_fraction``,
  and ``label.id``, ``label.name``, ``point.id``, ``point.pose.lat``, ``point.pose.lon`` and
  ``point.pose.dep`` as metadata.

A row that cannot be read (a missing image name, a row or column that is not a whole number or is
negative, an empty label) is reported with the file and its row number (the header is row 1) and
skipped; the table holds the rest.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import pandas as pd

POINT_COLUMNS = ("image", "row", "column", "label")
FORMATS = ("coralnet", "cpce", "biigle", "squidle")
CPCE_UNITS = 15  # CPCe 4 positions per image pixel
SIZE_COLUMNS = ("image_width", "image_height")  # an image's size as the export records it
FRACTION_COLUMNS = ("x_fraction", "y_fraction")  # a position as a share of the width and height
_SQUIDLE_KEPT = ("label.id", "label.name", "point.id", "point.pose.lat", "point.pose.lon", "point.pose.dep")
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
    fractions: bool = False  # row and column are shares of the image's height and width (0..1)

    @property
    def metadata_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c not in POINT_COLUMNS]


def read_points_export(path: str | Path, format: str = "auto") -> PointTable:
    """Read an annotation export (``format``: one of :data:`FORMATS`, or ``auto`` from its header)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"annotation export {path} does not exist")
    if format == "auto":
        format = detect_format(path)
    readers = {"coralnet": read_coralnet, "cpce": read_cpce, "biigle": read_biigle, "squidle": read_squidle}
    if format in readers:
        return readers[format](path)
    raise AnnotationFormatError(f"format {format!r} does not exist; choose from auto, {', '.join(FORMATS)}")


def detect_format(path: Path) -> str:
    """The export's format from its name (``.cpc`` files, or a folder of them) or its header."""
    if path.is_dir() or path.suffix.lower() == ".cpc":
        return "cpce"
    try:
        header = pd.read_csv(path, nrows=0, dtype=str, encoding="utf-8-sig").columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise AnnotationFormatError(f"{path}: not a CSV annotation export ({error})") from None
    if set(_CORALNET) <= set(header) and any(c in header for c in _CORALNET_LABELS):
        return "coralnet"
    if {"filename", "shape_name", "points"} <= set(header):
        return "biigle"
    if {"point.x", "point.y", "point.media.key"} <= set(header):
        return "squidle"
    raise AnnotationFormatError(
        f"{path}: cannot tell the annotation tool from its header {list(header)[:8]}; a CoralNet export "
        "has Name, Row, Column and Label, a BIIGLE report filename, shape_name and points, a SQUIDLE+ "
        "export point.media.key, point.x and point.y, and CPCe files end in .cpc; give --format"
    )


def _read_csv(path: Path) -> pd.DataFrame:
    """An export's CSV as text columns (nothing turned into NaN), or an error naming the file."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise AnnotationFormatError(f"{path}: cannot be read as CSV ({error})") from None


def _require(raw: pd.DataFrame, path: Path, what: str, needed: tuple, either: tuple) -> None:
    """Every column of ``needed`` and at least one of ``either``, or an error naming what is found."""
    if any(c not in raw.columns for c in needed) or not set(either) & set(raw.columns):
        raise AnnotationFormatError(
            f"{path}: {what} needs {', '.join(needed)} and {' or '.join(either)}; "
            f"found {', '.join(raw.columns)}"
        )


def read_coralnet(path: str | Path) -> PointTable:
    """CoralNet's annotation CSV export (module docstring)."""
    path = Path(path)
    raw = _read_csv(path)
    label = next((c for c in _CORALNET_LABELS if c in raw.columns), None)
    missing = [c for c in _CORALNET if c not in raw.columns] + ([] if label else ["Label"])
    if missing:
        raise AnnotationFormatError(
            f"{path}: a CoralNet annotation export needs the columns Name, Row, Column and Label; "
            f"missing {', '.join(missing)} (found {', '.join(raw.columns)})"
        )
    frame = raw.rename(columns={**_CORALNET, label: "label"})
    return _checked(frame, path, "coralnet")


def _checked(frame: pd.DataFrame, path: Path, format: str, fractions: bool = False) -> PointTable:
    """Strip the text, convert row and column to integers (to floats where they are ``fractions``) and
    move unreadable rows to problems."""
    frame = frame.apply(lambda column: column.str.strip())
    problems, keep = [], []
    for index, point in frame.iterrows():
        reason = _row_problem(point, fractions)
        if reason:
            problems.append({"file": str(path), "row": index + 2, "image": point["image"], "reason": reason})
        keep.append(not reason)
    table = frame[keep].copy()
    table["row"] = table["row"].astype(float if fractions else int)
    table["column"] = table["column"].astype(float if fractions else int)
    ordered = [*POINT_COLUMNS, *[c for c in table.columns if c not in POINT_COLUMNS]]
    return PointTable(table[ordered].reset_index(drop=True), str(path), format, problems, fractions)


def _row_problem(point: pd.Series, fractions: bool = False) -> str:
    if not point["image"]:
        return "no image name"
    for key in ("row", "column"):
        if fractions:
            if not _is_fraction(point[key]):
                axis = "point.y" if key == "row" else "point.x"
                return f"{axis} {point[key]!r} is not a share of the image (a number from 0 to 1)"
        elif not point[key].isdigit():
            if " " in point[key]:  # a reason the reader left in place of the position
                return point[key]
            return f"{key} {point[key]!r} is not a pixel position (a whole number from 0)"
    if not point["label"]:
        return "no label"
    return ""


def read_cpce(path: str | Path) -> PointTable:
    """CPCe ``.cpc`` files: one file, or every ``.cpc`` in a folder (module docstring)."""
    path = Path(path)
    files = sorted(path.glob("*.cpc")) + sorted(path.glob("*.CPC")) if path.is_dir() else [path]
    if not files:
        raise AnnotationFormatError(f"{path}: no .cpc files in this folder")
    frames, problems = [], []
    for file in files:
        try:
            frames.append(_cpc_points(file))
        except AnnotationFormatError as error:  # one broken file is reported; the others are read
            problems.append({"file": str(file), "row": "", "image": "", "reason": str(error)})
    frame = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*POINT_COLUMNS, "point"])
    )
    table = _checked(frame.astype(str), path, "cpce")
    table.problems[:0] = problems
    return table


def _cpc_points(file: Path) -> pd.DataFrame:
    """The points of one ``.cpc`` file, positions converted to pixels (as text, checked later)."""
    try:
        lines = [next(csv.reader([line])) for line in file.read_text(encoding="latin-1").splitlines()]
    except (csv.Error, StopIteration) as error:
        raise AnnotationFormatError(f"{file}: not a CPCe .cpc file ({error})") from None

    def fields(number: int, count: int) -> list[str]:
        if number > len(lines):
            raise AnnotationFormatError(f"{file}: ends at line {len(lines)}; a .cpc file needs line {number}")
        if len(lines[number - 1]) != count:
            raise AnnotationFormatError(
                f"{file} line {number}: {len(lines[number - 1])} comma-separated values, {count} expected"
            )
        return [value.strip() for value in lines[number - 1]]

    first = fields(1, 6)
    count = fields(6, 1)[0]
    if not count.isdigit() or int(count) < 1:
        raise AnnotationFormatError(f"{file} line 6: {count!r} should be the number of points")
    count = int(count)
    image = PureWindowsPath(first[1]).name  # the drive and folders of the annotator's machine are dropped
    rows = []
    for index in range(count):
        x, y = fields(7 + index, 2)
        number, code, notes, _ = fields(7 + count + index, 4)
        rows.append(
            {
                "image": image,
                "row": _pixel(y),
                "column": _pixel(x),
                "label": code,
                "point": number,
                "notes": notes,
                "image_width": _pixel(first[2]),
                "image_height": _pixel(first[3]),
                "cpc_file": file.name,
            }  # fmt: skip
        )
    return pd.DataFrame(rows)


def _pixel(value: str) -> str:
    """A CPCe position as a whole pixel (as text; a value that is not a number stays as it is)."""
    try:
        return str(round(float(value) / CPCE_UNITS))
    except ValueError:
        return value


def read_biigle(path: str | Path) -> PointTable:
    """BIIGLE's CSV annotation report (module docstring)."""
    path = Path(path)
    raw = _read_csv(path)
    _require(raw, path, "a BIIGLE annotation report", ("filename", "shape_name", "points"),
             ("label_hierarchy", "label_name"))  # fmt: skip
    hierarchy = raw["label_hierarchy"] if "label_hierarchy" in raw else pd.Series("", index=raw.index)
    names = raw["label_name"] if "label_name" in raw else hierarchy
    centres = [
        _shape_centre(shape, points) for shape, points in zip(raw["shape_name"], raw["points"], strict=True)
    ]
    frame = pd.DataFrame(
        {
            "image": raw["filename"],
            "row": [c[1] for c in centres],
            "column": [c[0] for c in centres],
            "label": hierarchy.where(hierarchy.str.strip() != "", names),
        }
    )
    for column in ("label_name", "label_id", "shape_name", "image_latitude", "image_longitude"):
        if column in raw:
            frame[column] = raw[column]
    return _checked(frame, path, "biigle")


def _shape_centre(shape: str, text: str) -> tuple[str, str]:
    """(x, y) as whole pixels in text, or a reason in both places for a shape that is not used."""
    try:
        values = [float(v) for v in json.loads(text)]
    except (ValueError, TypeError) as error:
        return (f"points {text!r} are not a JSON list of numbers ({error})",) * 2
    shape = shape.strip().lower()
    if shape in ("point", "circle") and len(values) >= 2:
        x, y = values[0], values[1]
    elif shape == "rectangle" and len(values) == 8:
        x, y = sum(values[0::2]) / 4, sum(values[1::2]) / 4
    else:
        return (f"a {shape or 'shapeless'} annotation (only points, circles and rectangles are used)",) * 2
    return str(round(x)), str(round(y))


def _is_fraction(text: str) -> bool:
    try:
        return 0 <= float(text) <= 1
    except ValueError:
        return False


def read_squidle(path: str | Path) -> PointTable:
    """A SQUIDLE+ annotation-set export (module docstring)."""
    path = Path(path)
    raw = _read_csv(path)
    _require(raw, path, "a SQUIDLE+ annotation export", ("point.media.key", "point.x", "point.y"),
             ("label.lineage_names", "label.name"))  # fmt: skip
    empty = pd.Series("", index=raw.index)
    lineage, names = raw.get("label.lineage_names", empty), raw.get("label.name", empty)
    keys, best = raw["point.media.key"].str.strip(), raw.get("point.media.path_best", empty)
    frame = pd.DataFrame(
        {
            "image": [_with_suffix(k, b) for k, b in zip(keys, best, strict=True)],
            "row": raw["point.y"],
            "column": raw["point.x"],
            "label": lineage.where(lineage.str.strip() != "", names),
            "x_fraction": raw["point.x"],
            "y_fraction": raw["point.y"],
        }
    )
    for column in _SQUIDLE_KEPT:
        if column in raw:
            frame[column] = raw[column]
    return _checked(frame, path, "squidle", fractions=True)


def _with_suffix(key: str, path_best: str) -> str:
    """The media key as a file name: the key, with ``path_best``'s extension when it has none."""
    if not key or PurePosixPath(key).suffix:
        return key
    return key + PurePosixPath(path_best.split("?")[0]).suffix
