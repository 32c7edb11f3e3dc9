"""The HMC benchmark ARFF files (FunCat, GO, Diatoms, Enron, ImCLEF07) and their published preprocessing.

* :func:`read_arff`: one ARFF file into an :class:`ArffData` (features, labels, hierarchy, targets, mask).
* :func:`load_hmc_dataset` / :func:`available_hmc_datasets`: a benchmark by name (``"cellcycle_FUN"``,
  ``"derisi_GO"``, ``"diatoms"``, ``"enron"``, ``"imclef07a"``, ``"imclef07d"``) from C-HMCNN's folder
  layout, all splits sharing one :class:`Hierarchy`.
* :class:`Standardiser` and :func:`prepare_hmc_splits`: mean imputation and standardisation fitted on the
  training part, train+valid merged for FunCat and GO, train only for the others (see
  ``../shared/data/README.md`` for the protocol behind the published numbers).

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
from typing import NamedTuple

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
_FAMILY_FOLDERS = {"FUN": "datasets_FUN", "GO": "datasets_GO", "others": "others"}
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


# ------------------------------------------------------------------ benchmark datasets
@dataclass(eq=False, repr=False)
class HMCDataset:
    """One HMC benchmark: its splits, read, sharing one hierarchy.

    Attributes:
        name: the canonical name (``"cellcycle_FUN"``, ``"derisi_GO"``, ``"diatoms"``...).
        family: ``"FUN"``, ``"GO"`` or ``"others"``.
        train, valid, test: the splits; ``valid`` is None for the others (Enron's training file is
            already train+valid).
        hierarchy: the one hierarchy object of all splits (``train.hierarchy is test.hierarchy``).
    """

    name: str
    family: str
    train: ArffData
    valid: ArffData | None
    test: ArffData
    hierarchy: Hierarchy

    @property
    def input_dim(self) -> int:
        return self.train.input_dim

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{split} {len(data)}"
            for split, data in (("train", self.train), ("valid", self.valid), ("test", self.test))
            if data is not None
        )
        return (
            f"HMCDataset({self.name!r}, {self.family}: {sizes} rows, {self.input_dim} features, "
            f"{len(self.hierarchy)} nodes)"
        )


@dataclass(frozen=True)
class _DatasetFiles:
    name: str
    family: str
    train: Path
    valid: Path | None
    test: Path

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.train, self.valid, self.test) if p is not None)


def _benchmark_root(root: PathLike) -> Path:
    """The folder holding ``datasets_FUN``/``datasets_GO``/``others``; its parent is accepted too."""
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"HMC benchmark folder {folder} does not exist (or is not a folder)")
    if (
        not any((folder / sub).is_dir() for sub in _FAMILY_FOLDERS.values())
        and (folder / "HMC_data").is_dir()
    ):
        return folder / "HMC_data"
    return folder


def _dataset_files(root: Path, name: str) -> _DatasetFiles:
    key = name.strip().lower()
    if key in OTHER_DATASETS:
        train, test = OTHER_DATASETS[key]
        return _DatasetFiles(key, "others", root / "others" / train, None, root / "others" / test)
    for family in ("FUN", "GO"):
        suffix = f"_{family.lower()}"
        if key.endswith(suffix) and len(key) > len(suffix):
            canonical = f"{key[: -len(suffix)]}_{family}"
            folder = root / _FAMILY_FOLDERS[family] / canonical
            split = {s: folder / f"{canonical}.{s}.arff" for s in ("train", "valid", "test")}
            return _DatasetFiles(canonical, family, split["train"], split["valid"], split["test"])
    raise ValueError(
        f"{name!r} is not an HMC benchmark name; use '<name>_FUN', '<name>_GO' or one of "
        f"{sorted(OTHER_DATASETS)}; found under {root}: {available_hmc_datasets(root)}"
    )


def available_hmc_datasets(root: PathLike) -> list[str]:
    """The benchmark names under ``root`` whose split files are all present: FunCat, GO, then others.

    ``root`` is C-HMCNN's ``HMC_data`` folder (or its parent).
    """
    folder = _benchmark_root(root)
    names = []
    for family in ("FUN", "GO"):
        family_folder = folder / _FAMILY_FOLDERS[family]
        if family_folder.is_dir():
            candidates = sorted(p.name for p in family_folder.iterdir() if p.name.endswith(f"_{family}"))
            names.extend(candidates)
    names.extend(sorted(OTHER_DATASETS))
    return [name for name in names if all(p.is_file() for p in _dataset_files(folder, name).paths)]


def load_hmc_dataset(root: PathLike, name: str) -> HMCDataset:
    """Read every split of an HMC benchmark, sharing one hierarchy (the training file's).

    Args:
        root: C-HMCNN's ``HMC_data`` folder (``datasets_FUN/<name>_FUN/<name>_FUN.{train,valid,test}.arff``,
            ``datasets_GO/...``, ``others/...``), or the folder that contains it.
        name: ``"<name>_FUN"``, ``"<name>_GO"``, ``"diatoms"``, ``"enron"``, ``"imclef07a"`` or
            ``"imclef07d"``, in any case.

    Raises:
        FileNotFoundError: ``root`` or a split file is missing (naming the expected path and the
            datasets that are available under ``root``).
        ValueError: ``name`` is not a benchmark name.
        ArffError: a split declares a different hierarchy or different attributes than the training file,
            or any :func:`read_arff` error.
    """
    folder = _benchmark_root(root)
    files = _dataset_files(folder, name)
    for path in files.paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"HMC dataset {files.name!r}: expected {path}, which does not exist; datasets available "
                f"under {folder}: {available_hmc_datasets(folder) or 'none'}"
            )
    train = read_arff(files.train)
    valid = _read_matching_split(files.valid, train) if files.valid is not None else None
    test = _read_matching_split(files.test, train)
    return HMCDataset(files.name, files.family, train, valid, test, train.hierarchy)


def _read_matching_split(path: Path, train: ArffData) -> ArffData:
    """A split read with the training hierarchy, after checking it declares the same one and features."""
    declared = Hierarchy.from_arff(path)
    if declared != train.hierarchy:
        raise ArffError(
            f"{path} declares a different hierarchy ({declared!r}) from {train.path} "
            f"({train.hierarchy!r}); all splits of a dataset must share one hierarchical attribute",
            path,
        )
    data = read_arff(path, hierarchy=train.hierarchy)
    if data.feature_names != train.feature_names:
        differ = next(
            (
                i
                for i, (a, b) in enumerate(zip(data.feature_names, train.feature_names, strict=False))
                if a != b
            ),
            min(len(data.feature_names), len(train.feature_names)),
        )
        mine = data.feature_names[differ] if differ < len(data.feature_names) else "nothing"
        theirs = train.feature_names[differ] if differ < len(train.feature_names) else "nothing"
        raise ArffError(
            f"{path} has {data.input_dim} feature columns, {train.path} has {train.input_dim}; they first "
            f"differ at column {differ + 1} ({mine!r} vs {theirs!r}); all splits must declare the same "
            "attributes (and nominal values) in the same order",
            path,
        )
    return data


# ------------------------------------------------------------------ preprocessing
@dataclass(frozen=True, eq=False)
class Standardiser:
    """Mean imputation then standardisation, fitted on training features only.

    ``fit`` takes per column the mean and the (population, ddof=0) standard deviation over the
    non-missing values; a constant column gets scale 1, a column missing in every training row mean 0
    and scale 1 (so it becomes all zeros).  ``transform`` fills NaN with the training mean, then computes
    ``(x - mean) / scale``.

    This equals scikit-learn's ``StandardScaler().fit(x_train)`` and
    ``SimpleImputer(strategy="mean").fit(x_train)`` both fitted on the raw training features (NaN
    included; StandardScaler ignores NaN when fitting) and applied as ``scaler.transform(imputer
    .transform(x))``, the published preprocessing, with one difference: scikit-learn's imputer drops a
    column missing in every training row, which would shift the column count between datasets; here
    it is kept, as zeros.  (Fitting the scaler after imputation instead would shrink the standard
    deviation of columns with missing values.)

    Attributes:
        mean: (features,) float64, the imputation value and the centre.
        scale: (features,) float64, the divisor (never 0).
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray | torch.Tensor) -> Standardiser:
        """Fit on (rows, features) training features, NaN for missing values."""
        x = _as_matrix(features)
        if x.shape[0] == 0:
            raise ValueError("cannot fit a standardiser on zero training rows")
        present = ~np.isnan(x)
        counts = present.sum(axis=0)
        filled = np.where(present, x, 0.0)
        mean = np.divide(filled.sum(axis=0), counts, out=np.zeros(x.shape[1]), where=counts > 0)
        deviations = np.where(present, x - mean, 0.0)
        variance = np.divide((deviations**2).sum(axis=0), counts, out=np.zeros(x.shape[1]), where=counts > 0)
        scale = np.sqrt(variance)
        # Exact test for constant columns: a float mean of equal values can be an ulp off, leaving a
        # variance of 1e-34 whose square root would blow the column up.
        constant = np.where(present, x, -np.inf).max(axis=0) == np.where(present, x, np.inf).min(axis=0)
        scale[constant | (scale == 0) | (counts == 0)] = 1.0
        return cls(mean=mean, scale=scale)

    def transform(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """(rows, features) float32: NaN imputed with the training mean, then standardised."""
        x = _as_matrix(features)
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"features have {x.shape[1]} columns but the standardiser was fitted on {self.mean.shape[0]}"
            )
        x = np.where(np.isnan(x), self.mean, x)
        return ((x - self.mean) / self.scale).astype(np.float32)


def _as_matrix(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a (rows, features) matrix, got shape {x.shape}")
    return x


class HMCSplits(NamedTuple):
    """The protocol's tensors; unpacks as ``x_train, y_train, mask_train, x_test, y_test, mask_test``.

    ``x_*`` are (rows, features) float32, standardised; ``y_*`` and ``mask_*`` are (rows, nodes) float32.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    mask_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mask_test: torch.Tensor


def prepare_hmc_splits(dataset: HMCDataset) -> HMCSplits:
    """Training and test tensors as in the published protocol (C-HMCNN).

    FunCat and GO train on train+valid merged, the others on train only (Enron's training file is
    already train+valid).  A :class:`Standardiser` is fitted on that training part and applied to both.
    """
    parts = [dataset.train]
    if dataset.family in ("FUN", "GO") and dataset.valid is not None:
        parts.append(dataset.valid)
    x_train = np.concatenate([part.features for part in parts], axis=0)
    standardiser = Standardiser.fit(x_train)
    return HMCSplits(
        x_train=torch.from_numpy(standardiser.transform(x_train)),
        y_train=torch.cat([part.targets for part in parts]),
        mask_train=torch.cat([part.mask for part in parts]),
        x_test=torch.from_numpy(standardiser.transform(dataset.test.features)),
        y_test=dataset.test.targets,
        mask_test=dataset.test.mask,
    )


FIT_PARTS = ("none", "held_out")
FIT_FRACTION = 0.2  # of the training rows, for the sets without a validation file


class FitPart(NamedTuple):
    """Labelled rows kept out of training to fit a decision rule on: features, targets, mask, and
    where they came from (``"valid"``, or ``"a seeded fifth of train"``)."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    source: str


def prepare_hmc_fit_splits(dataset: HMCDataset, fraction: float = FIT_FRACTION) -> tuple[HMCSplits, FitPart]:
    """The protocol's tensors with a labelled part kept apart for fitting decision rules.

    FunCat and GO keep their validation file apart (the published protocol merges it into training);
    the others, which have no validation file, keep a fifth of the training rows apart, drawn with a
    fixed seed so every method and seed of a dataset shares the same part.  The standardiser is fitted
    on the rows that train, as in :func:`prepare_hmc_splits`.
    """
    if dataset.family in ("FUN", "GO") and dataset.valid is not None:
        train, fit, source = dataset.train, dataset.valid, "valid"
        x_train, y_train, m_train = train.features, train.targets, train.mask
        x_fit, y_fit, m_fit = fit.features, fit.targets, fit.mask
    else:
        rows = len(dataset.train)
        order = np.random.default_rng(0).permutation(rows)
        kept = max(1, round(rows * fraction))
        if kept >= rows:
            raise ValueError(f"{dataset.name}: {rows} training rows are too few to keep {fraction:.0%} apart")
        fit_rows, train_rows = np.sort(order[:kept]), np.sort(order[kept:])
        source = f"a seeded {fraction:.0%} of train ({kept} rows)"
        part = dataset.train
        x_train, y_train, m_train = part.features[train_rows], part.targets[train_rows], part.mask[train_rows]
        x_fit, y_fit, m_fit = part.features[fit_rows], part.targets[fit_rows], part.mask[fit_rows]
    standardiser = Standardiser.fit(x_train)
    splits = HMCSplits(
        x_train=torch.from_numpy(standardiser.transform(x_train)),
        y_train=y_train,
        mask_train=m_train,
        x_test=torch.from_numpy(standardiser.transform(dataset.test.features)),
        y_test=dataset.test.targets,
        mask_test=dataset.test.mask,
    )
    return splits, FitPart(torch.from_numpy(standardiser.transform(x_fit)), y_fit, m_fit, source)
