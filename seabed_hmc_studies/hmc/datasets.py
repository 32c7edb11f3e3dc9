"""The HMC benchmarks by name and their published preprocessing.

* :func:`load_hmc_dataset` / :func:`available_hmc_datasets`: a benchmark by name (``"cellcycle_FUN"``,
  ``"derisi_GO"``, ``"diatoms"``, ``"enron"``, ``"imclef07a"``, ``"imclef07d"``) from C-HMCNN's folder
  layout, all splits sharing one :class:`Hierarchy`.
* :class:`Standardiser` and :func:`prepare_hmc_splits`: mean imputation and standardisation fitted on the
  training part, train+valid merged for FunCat and GO, train only for the others (see
  ``../shared/data/README.md`` for the protocol behind the published numbers);
  :func:`prepare_hmc_fit_splits` keeps a labelled part apart to fit decision rules on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc_studies.hmc.arff import OTHER_DATASETS, ArffData, ArffError, PathLike, read_arff

_FAMILY_FOLDERS = {"FUN": "datasets_FUN", "GO": "datasets_GO", "others": "others"}


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
