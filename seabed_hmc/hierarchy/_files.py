"""What the hierarchy loaders share: reading CSV records and JSON, path-row cleaning, file checks."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from seabed_hmc.hierarchy._core import HierarchyError
from seabed_hmc.remedies import option, remedies

PathLike = str | os.PathLike


#: Parent cells that mean "no parent" in a text table (besides an empty cell).
_MISSING_TEXT = {"", "nan", "none", "null", "na", "<na>"}


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


def _node_name(value: Any, where: str) -> str:
    name = "" if value is None else str(value).strip()
    if not name:
        raise HierarchyError(f"{where} has an empty node name ({value!r}); every node needs a name")
    return name


def _csv_has_columns(file: Path, columns: Iterable[str]) -> bool:
    records = _read_csv_records(file, ",", "utf-8-sig")
    if not records:
        return False
    header = {field.strip() for field in records[0][1]}
    return all(column in header for column in columns)


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
