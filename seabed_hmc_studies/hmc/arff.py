"""The ARFF files of the HMC benchmarks (FunCat, GO, Diatoms, Enron, ImCLEF07): :func:`read_arff` reads
one file into an :class:`ArffData` (features, labels, hierarchy, targets, mask).  The benchmarks by name
and their published preprocessing are in :mod:`seabed_hmc_studies.hmc.datasets`.

The reader covers the ARFF the benchmarks use: ``@RELATION``, ``@ATTRIBUTE`` with numeric (``numeric``,
``real``, ``integer``), nominal (``{a,b,c}``) and one ``hierarchical`` class attribute, and dense ``@DATA``
rows; keywords in any case, ``%`` comments, blank lines, CRLF line ends, and names and values in single
quotes.  No benchmark file has sparse rows (``{0 1.5, 3 2}``), string, date or relational attributes, or
double-quoted values, so those are reported as unsupported rather than guessed at.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seabed_hmc.hierarchy import Hierarchy, LabelError

PathLike = str | os.PathLike

#: The missing-value marker of ARFF.
MISSING = "?"
#: Separates the labels of one row in the class field (``01/01@02/13``).
ARFF_LABEL_SEPARATOR = "@"
NUMERIC_TYPES = ("numeric", "real", "integer")
FAMILIES = ("FUN", "GO", "others")
#: The files of the "others" benchmarks: (train, test).  Enron's training file is already train+valid.
OTHER_DATASETS = {
    "diatoms": ("Diatoms_train.arff", "Diatoms_test.arff"),
    "enron": ("Enron_corr_trainvalid.arff", "Enron_corr_test.arff"),
    "imclef07a": ("ImCLEF07A_Train.arff", "ImCLEF07A_Test.arff"),
    "imclef07d": ("ImCLEF07D_Train.arff", "ImCLEF07D_Test.arff"),
}
_QUOTE = "'"
_ATTRIBUTE_NAME = re.compile(r"""^\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s{]+)\s*(.*)$""", re.DOTALL)


class ArffError(ValueError):
    """An ARFF file cannot be read: the message names the file, the line and what is wrong.

    ``path`` and ``line`` (1-based, None when the problem is not on one line) are kept for callers.
    """

    def __init__(self, message: str, path: PathLike | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.line = line


# ------------------------------------------------------------------ one file
@dataclass(eq=False, repr=False)
class ArffData:
    """One ARFF file, read.

    Attributes:
        path: the file.
        relation: the ``@RELATION`` name ("" when absent).
        features: (rows, features) float32; NaN where the file has ``?``.  A numeric attribute is one
            column; a nominal one is one column per value (one-hot), all NaN for a missing value.
        feature_names: one per column: the attribute name, or ``"attr=value"`` for a one-hot column.
            Names may repeat: gasch1 declares ``Heat_Shock_000_minutes__hs_2`` twice (lines 12-13),
            two different columns, so repeated names are kept rather than rejected.
        labels: per row, the label strings of its class field (split at ``"@"``).
        hierarchy: the class hierarchy (the file's hierarchical attribute, or the one passed in).
        targets: (rows, nodes) float32, ancestor-closed (``hierarchy.encode(labels)``).
        mask: (rows, nodes) float32, all ones: the benchmark labels are complete.
        line_numbers: (rows,) int64, the file line of each row, for messages about rows.
    """

    path: Path
    relation: str
    features: np.ndarray
    feature_names: list[str]
    labels: list[list[str]]
    hierarchy: Hierarchy
    targets: torch.Tensor
    mask: torch.Tensor
    line_numbers: np.ndarray

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def input_dim(self) -> int:
        """Number of feature columns (after one-hot expansion of nominal attributes)."""
        return int(self.features.shape[1])

    def __repr__(self) -> str:
        return (
            f"ArffData({self.path.name}: {len(self)} rows, {self.input_dim} features, "
            f"{len(self.hierarchy)} nodes)"
        )


@dataclass(frozen=True)
class _Attribute:
    name: str
    kind: str  # "numeric", "nominal" or "hierarchical"
    values: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class _Header:
    relation: str
    attributes: tuple[_Attribute, ...]
    class_index: int
    data_start: int  # index (0-based) of the first line after @DATA


def read_arff(path: PathLike, hierarchy: Hierarchy | None = None) -> ArffData:
    """Read an HMC ARFF file: features, per-row labels, the hierarchy and the encoded targets.

    Numeric attributes become one float32 column each; nominal attributes one column per declared
    value (``"attr=value"``, 1 for the row's value, 0 elsewhere).  A missing value (``?``) is NaN; for
    a nominal attribute all its one-hot columns are NaN, so that mean imputation (:class:`Standardiser`)
    later fills them with the training frequencies of the categories, the expected one-hot vector,
    rather than inventing a category.

    Args:
        path: the ``.arff`` file.
        hierarchy: the class hierarchy to encode labels with; None reads it from the file's
            hierarchical attribute (:meth:`Hierarchy.from_arff`).  The file must have a hierarchical
            attribute either way: it says which field holds the labels.

    Raises:
        FileNotFoundError: no file at ``path``.
        ArffError: a malformed header, no ``@DATA`` line, no (or two) hierarchical attributes, an
            unsupported attribute type or sparse row, a row with the wrong number of fields, a value that
            is not a number, a nominal value not declared, a row with no labels, or a label that is not a
            node of the hierarchy; each naming the file and line.
        HierarchyError: the hierarchical attribute itself is malformed (from :meth:`Hierarchy.from_arff`).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"ARFF file {file} does not exist" + (" (it is a folder)" if file.exists() else "")
        )
    lines = _read_lines(file)
    header = _parse_header(lines, file)
    numbers, rows = _data_rows(lines, header.data_start, file)
    _check_field_counts(rows, numbers, header, file)
    fields = _parse_fields(rows, numbers, header, file)
    features, feature_names = _features(fields, numbers, header, file)
    labels = _labels(fields[header.class_index], numbers, header, file)
    if hierarchy is None:
        hierarchy = Hierarchy.from_arff(file)
    targets, mask = _encode(labels, hierarchy, numbers, file)
    return ArffData(
        path=file,
        relation=header.relation,
        features=features,
        feature_names=feature_names,
        labels=labels,
        hierarchy=hierarchy,
        targets=targets,
        mask=mask,
        line_numbers=np.asarray(numbers, dtype=np.int64),
    )


def _read_lines(file: Path) -> list[str]:
    # Universal newlines turn CRLF (the ImCLEF07 files) into "\n"; split on "\n" only, so that line
    # numbers agree with editors (str.splitlines would also split on form feeds and the like).
    with open(file, encoding="utf-8", errors="replace") as handle:
        return handle.read().split("\n")


def _parse_header(lines: Sequence[str], file: Path) -> _Header:
    relation = ""
    attributes: list[_Attribute] = []
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        number = index + 1
        keyword, rest = _split_keyword(line)
        if keyword == "@relation":
            relation = _unquote(rest.strip())
        elif keyword == "@attribute":
            attributes.append(_parse_attribute(rest, number, file))
        elif keyword == "@data":
            return _finish_header(relation, attributes, index + 1, file)
        else:
            raise ArffError(
                f"line {number} of {file}: expected @RELATION, @ATTRIBUTE or @DATA before the data, "
                f"found {line[:60]!r}",
                file,
                number,
            )
    raise ArffError(
        f"{file} has no @DATA line, so no data rows; an ARFF file needs '@DATA' after its attributes "
        "(is the file truncated?)",
        file,
    )


def _split_keyword(line: str) -> tuple[str, str]:
    parts = line.split(None, 1)
    return parts[0].lower(), parts[1] if len(parts) > 1 else ""


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _parse_attribute(text: str, number: int, file: Path) -> _Attribute:
    where = f"line {number} of {file}"
    match = _ATTRIBUTE_NAME.match(text)
    if match is None or not match.group(2).strip():
        raise ArffError(
            f"{where}: an attribute needs a name and a type, e.g. '@ATTRIBUTE x numeric'", file, number
        )
    name, spec = _unquote(match.group(1)), match.group(2).strip()
    if spec.startswith("{"):
        return _Attribute(name, "nominal", _nominal_values(spec, name, where, file, number), number)
    kind = spec.split(None, 1)[0].lower()
    if kind in NUMERIC_TYPES:
        return _Attribute(name, "numeric", (), number)
    if kind == "hierarchical":
        return _Attribute(name, "hierarchical", (), number)
    if kind in ("string", "date", "relational"):
        raise ArffError(
            f"{where}: attribute {name!r} has type {kind!r}, which this reader does not support (only "
            "numeric, real, integer, nominal {...} and hierarchical); drop or convert the attribute",
            file,
            number,
        )
    raise ArffError(
        f"{where}: attribute {name!r} has unknown type {spec.split(None, 1)[0]!r}; expected numeric, "
        "real, integer, a nominal list {a,b,c} or hierarchical",
        file,
        number,
    )


def _nominal_values(spec: str, name: str, where: str, file: Path, number: int) -> tuple[str, ...]:
    if not spec.endswith("}"):
        raise ArffError(f"{where}: the value list of attribute {name!r} does not end with '}}'", file, number)
    inner = spec[1:-1].strip()
    values = tuple(v.strip() for v in next(csv.reader([inner], quotechar=_QUOTE, skipinitialspace=True), []))
    if not values or any(not v for v in values):
        raise ArffError(
            f"{where}: attribute {name!r} has an empty nominal value list or an empty value in {spec!r}",
            file,
            number,
        )
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ArffError(f"{where}: attribute {name!r} lists {repeated} more than once", file, number)
    return values


def _finish_header(relation: str, attributes: list[_Attribute], data_start: int, file: Path) -> _Header:
    classes = [i for i, a in enumerate(attributes) if a.kind == "hierarchical"]
    if not classes:
        raise ArffError(
            f"{file} has no hierarchical class attribute ('@ATTRIBUTE class hierarchical a,a/b,...') before "
            "@DATA; is it an HMC ARFF file?",
            file,
        )
    if len(classes) > 1:
        at = ", ".join(str(attributes[i].line) for i in classes)
        raise ArffError(f"{file} has {len(classes)} hierarchical attributes (lines {at}); keep one", file)
    return _Header(relation, tuple(attributes), classes[0], data_start)


def _data_rows(lines: Sequence[str], start: int, file: Path) -> tuple[list[int], list[str]]:
    """(line numbers, stripped lines) of the data rows: blank lines and ``%`` comments skipped."""
    numbers, rows = [], []
    for index in range(start, len(lines)):
        line = lines[index].strip()
        if not line or line[0] == "%":
            continue
        if line[0] == "{":
            raise ArffError(
                f"line {index + 1} of {file}: sparse ARFF rows ('{{index value, ...}}') are not supported "
                "(no HMC benchmark file uses them); write the file in dense form",
                file,
                index + 1,
            )
        numbers.append(index + 1)
        rows.append(line)
    return numbers, rows


def _split_fields(line: str) -> list[str]:
    return next(csv.reader([line], quotechar=_QUOTE, skipinitialspace=True), [])


def _check_field_counts(rows: Sequence[str], numbers: Sequence[int], header: _Header, file: Path) -> None:
    expected = len(header.attributes)
    for number, line in zip(numbers, rows, strict=True):
        count = line.count(",") + 1 if _QUOTE not in line else len(_split_fields(line))
        if count != expected:
            raise ArffError(
                f"line {number} of {file} has {count} comma-separated fields but the header declares "
                f"{expected} attributes; fix the row (a missing value is written '?', a value holding a "
                "comma must be in single quotes)",
                file,
                number,
            )


def _parse_fields(
    rows: Sequence[str], numbers: Sequence[int], header: _Header, file: Path
) -> list[np.ndarray]:
    """One array per attribute: float64 (NaN for ``?``) for numeric ones, stripped str objects otherwise.

    The fast path is pandas' C parser; when it rejects a number, a plain Python pass over the rows
    finds the offending cell (and accepts anything ``float()`` does, e.g. ``nan``, ``1_000``).
    """
    numeric = {i for i, a in enumerate(header.attributes) if a.kind == "numeric"}
    if not rows:
        return [np.empty(0, dtype=np.float64 if a.kind == "numeric" else object) for a in header.attributes]
    try:
        frame = pd.read_csv(
            io.StringIO("\n".join(rows)),
            header=None,
            names=list(range(len(header.attributes))),
            dtype={i: (np.float64 if i in numeric else object) for i in range(len(header.attributes))},
            na_values={i: [MISSING] for i in numeric},
            keep_default_na=False,
            quotechar=_QUOTE,
            skipinitialspace=True,
            skip_blank_lines=False,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError):
        return _parse_fields_slowly(rows, numbers, header, file)
    if len(frame) != len(rows):  # a quoted newline or similar: let the exact pass decide
        return _parse_fields_slowly(rows, numbers, header, file)
    columns = []
    for i, attribute in enumerate(header.attributes):
        if attribute.kind == "numeric":
            columns.append(frame[i].to_numpy(dtype=np.float64))
        else:
            columns.append(np.asarray([str(v).strip() for v in frame[i].tolist()], dtype=object))
    return columns


def _parse_fields_slowly(
    rows: Sequence[str], numbers: Sequence[int], header: _Header, file: Path
) -> list[np.ndarray]:
    attributes = header.attributes
    numeric = [a.kind == "numeric" for a in attributes]
    columns: list[list] = [[] for _ in attributes]
    for number, line in zip(numbers, rows, strict=True):
        fields = _split_fields(line)
        if len(fields) != len(attributes):
            raise ArffError(
                f"line {number} of {file} has {len(fields)} fields but the header declares "
                f"{len(attributes)} attributes",
                file,
                number,
            )
        for i, text in enumerate(fields):
            text = text.strip()
            if not numeric[i]:
                columns[i].append(text)
            elif text == MISSING:
                columns[i].append(np.nan)
            else:
                try:
                    columns[i].append(float(text))
                except ValueError:
                    raise ArffError(
                        f"line {number} of {file}, field {i + 1} (attribute {attributes[i].name!r}): "
                        f"{text!r} is not a number; write numbers like 0.25 or -1e-3, and '?' if missing",
                        file,
                        number,
                    ) from None
    return [
        np.asarray(column, dtype=np.float64 if numeric[i] else object) for i, column in enumerate(columns)
    ]


def _features(
    fields: Sequence[np.ndarray], numbers: Sequence[int], header: _Header, file: Path
) -> tuple[np.ndarray, list[str]]:
    blocks, names = [], []
    for i, attribute in enumerate(header.attributes):
        if attribute.kind == "numeric":
            blocks.append(fields[i].astype(np.float32)[:, None])
            names.append(attribute.name)
        elif attribute.kind == "nominal":
            blocks.append(_one_hot(fields[i], attribute, numbers, file))
            names.extend(f"{attribute.name}={value}" for value in attribute.values)
    rows = len(numbers)
    features = np.concatenate(blocks, axis=1) if blocks else np.empty((rows, 0), dtype=np.float32)
    return np.ascontiguousarray(features, dtype=np.float32), names


def _one_hot(values: np.ndarray, attribute: _Attribute, numbers: Sequence[int], file: Path) -> np.ndarray:
    """(rows, values) float32 one-hot of a nominal column; a missing value is NaN in every column."""
    lookup = {value: k for k, value in enumerate(attribute.values)}
    lookup[MISSING] = -1
    codes = np.empty(len(values), dtype=np.int64)
    for row, value in enumerate(values):
        code = lookup.get(value)
        if code is None:
            raise ArffError(
                f"line {numbers[row]} of {file}: {value!r} is not a declared value of nominal attribute "
                f"{attribute.name!r} (line {attribute.line} declares {list(attribute.values)}); fix the "
                "value, or add it to the declaration",
                file,
                numbers[row],
            )
        codes[row] = code
    block = np.zeros((len(values), len(attribute.values)), dtype=np.float32)
    known = codes >= 0
    block[np.flatnonzero(known), codes[known]] = 1.0
    block[~known] = np.nan
    return block


def _labels(values: np.ndarray, numbers: Sequence[int], header: _Header, file: Path) -> list[list[str]]:
    name = header.attributes[header.class_index].name
    labels = []
    for row, value in enumerate(values):
        parts = [part.strip() for part in value.split(ARFF_LABEL_SEPARATOR)]
        if value in ("", MISSING) or not all(parts):
            problem = "is missing" if value in ("", MISSING) else f"has an empty label in {value!r}"
            raise ArffError(
                f"line {numbers[row]} of {file}: the class field ({name!r}) {problem}; every row of an HMC "
                f"file needs one or more labels joined by {ARFF_LABEL_SEPARATOR!r}",
                file,
                numbers[row],
            )
        labels.append(parts)
    return labels


def _encode(
    labels: list[list[str]], hierarchy: Hierarchy, numbers: Sequence[int], file: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """``hierarchy.encode(labels)`` with an unknown label reported by file line, not row index."""
    first_row: dict[str, int] = {}
    for row, row_labels in enumerate(labels):
        for label in row_labels:
            first_row.setdefault(label, row)
    for label, row in first_row.items():
        try:
            hierarchy.resolve_label(label)
        except LabelError as error:
            raise ArffError(
                f"line {numbers[row]} of {file}: {error}; the labels of a row must be nodes of the "
                "hierarchical attribute",
                file,
                numbers[row],
            ) from None
    targets, mask = hierarchy.encode(labels, complete=True)
    return targets.to(torch.float32), mask.to(torch.float32)
