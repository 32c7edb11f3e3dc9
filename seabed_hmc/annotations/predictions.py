"""The CSV ``predict`` writes, read back for export: the points, the decisions and the per-node
probabilities and ensemble spread, and the labels of the tool the points came from, ranked.

``predict`` writes ``image``, the manifest's columns (for patches from ``import-points``: ``labels``
as ``true_labels``, ``source_image``, ``row``, ``column`` and the export's metadata), ``predicted``
(the decision's paths, ``"|"`` between them, ``abstain`` when none passed), ``decision``, ``error``
(why an image could not be predicted), and ``p[NODE]`` and ``spread[NODE]`` per evaluated node.

A tool's label is ranked by its *exclusive* score: the probability of its node less the largest
probability of a labelled node below it (the max-constraint makes a node at least as probable as any
descendant, so a parent's own score is what its children do not explain).  For a label on a leaf this
is its probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seabed_hmc.annotations.cover import ABSTAIN
from seabed_hmc.hierarchy import DEFAULT_SEPARATOR as SEP
from seabed_hmc.hierarchy import LABEL_SEPARATOR, Hierarchy, from_paths

TRUE_LABELS = "true_labels"  # predict's name for the manifest's labels (engine.inference.TRUE_LABELS)
POINT_COLUMNS = ("source_image", "row", "column")  # where import-points records a patch's point


class ExportError(ValueError):
    """Predictions that cannot be exported as asked (the message says what is missing)."""


@dataclass
class Predictions:
    """Predicted rows of a ``predict`` CSV, with their probabilities, and the rows that failed."""

    frame: pd.DataFrame
    failed: pd.DataFrame
    nodes: list[str]
    probabilities: np.ndarray  # (rows, nodes)
    spread: np.ndarray  # (rows, nodes): the ensemble's standard deviation
    hierarchy: Hierarchy
    source: str

    @property
    def has_points(self) -> bool:
        return all(c in self.frame.columns for c in POINT_COLUMNS)

    @property
    def has_truth(self) -> bool:
        return TRUE_LABELS in self.frame.columns and (self.frame[TRUE_LABELS] != "").any()


def read_predictions(path: str | Path, split: str | None = None) -> Predictions:
    """A ``predict`` CSV (module docstring); with ``split``, only the rows of that split."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path} does not exist")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    nodes = [c[2:-1] for c in frame.columns if c.startswith("p[") and c.endswith("]")]
    missing = [c for c in ("image", "predicted", "error") if c not in frame.columns]
    if missing or not nodes:
        raise ExportError(
            f"{path} is not a predict output: it needs image, predicted, error and p[NODE] columns "
            f"(missing {', '.join(missing) or 'the p[NODE] columns'}); run seabed-hmc predict first"
        )
    if split is not None:
        if "split" not in frame.columns:
            raise ExportError(f"{path} has no split column to take the {split!r} rows from")
        frame = frame[frame["split"].str.strip().str.lower() == split.lower()]
        if not len(frame):
            raise ExportError(f"{path} has no {split!r} rows")
    failed = frame[frame["error"] != ""]
    frame = frame[frame["error"] == ""].reset_index(drop=True)
    probabilities = frame[[f"p[{n}]" for n in nodes]].astype(float).to_numpy()
    spread_columns = [f"spread[{n}]" for n in nodes]
    spread = (
        frame[spread_columns].astype(float).to_numpy()
        if all(c in frame.columns for c in spread_columns)
        else np.zeros_like(probabilities)
    )
    return Predictions(frame, failed, nodes, probabilities, spread, from_paths(nodes), str(path))


@dataclass
class Candidates:
    """The labels a tool can receive, each with the node it stands for (several labels may share one)."""

    labels: list[str]
    paths: list[str]
    ids: dict[str, str]  # label -> the tool's label id, where known

    def label_of(self, path: str) -> str:
        """The label for ``path``, or for its nearest ancestor that has one ("" when none has); of
        several labels on one node, the first."""
        first = dict(zip(reversed(self.paths), reversed(self.labels), strict=True))
        node = path
        while node and node not in first:
            node = node.rpartition(SEP)[0]
        return first.get(node, "")


def candidates(
    predictions: Predictions, mapping: dict[str, str] | None, ids: dict[str, str] | None
) -> Candidates:
    """The tool's labels: the label map's (labels on nodes the model does not predict are left out),
    else the pairs of the original label (column ``label``) and its path seen in the predictions,
    else (no pairs, or every label its own path) every node as its own label."""
    frame, nodes = predictions.frame, set(predictions.nodes)
    if mapping is None and {"label", TRUE_LABELS} <= set(frame.columns):
        pairs = frame[["label", TRUE_LABELS]].drop_duplicates()
        # labels that are their own paths (a BIIGLE label tree, SQUIDLE+ lineages): every node is one
        if not pairs["label"].duplicated().any() and not (pairs["label"] == pairs[TRUE_LABELS]).all():
            mapping = dict(zip(pairs["label"], pairs[TRUE_LABELS], strict=True))
    if mapping is None:
        mapping = {node: node for node in predictions.nodes}
    kept = {label: path for label, path in mapping.items() if path in nodes}
    if not kept:
        raise ExportError("no label of the label map is on a node this model predicts")
    if ids is None:
        ids = {}
        for column in ("label_id", "label.id"):
            if {column, "label"} <= set(frame.columns):
                ids = dict(zip(frame["label"], frame[column], strict=True))
    return Candidates(list(kept), list(kept.values()), {k: str(v) for k, v in ids.items() if k in kept})


def exclusive_scores(predictions: Predictions, chosen: Candidates) -> np.ndarray:
    """(rows, labels): each label's node probability less the largest of the labelled nodes below it."""
    column = {node: index for index, node in enumerate(predictions.nodes)}
    own = predictions.probabilities[:, [column[p] for p in chosen.paths]]
    scores = own.copy()
    for j, path in enumerate(chosen.paths):
        below = [k for k, other in enumerate(chosen.paths) if other.startswith(path + SEP)]
        if below:
            scores[:, j] = own[:, j] - own[:, below].max(axis=1)
    return np.clip(scores, 0.0, 1.0)


def decided_paths(predictions: Predictions) -> list[str]:
    """Per row, the deepest path of the decision (the most probable among equally deep ones), or ""
    where the decision abstained."""
    column = {node: index for index, node in enumerate(predictions.nodes)}
    out = []
    for row, entry in enumerate(predictions.frame["predicted"]):
        paths = [p.strip() for p in entry.split(LABEL_SEPARATOR) if p.strip() and p.strip() != ABSTAIN]
        paths = [p for p in paths if p in column]
        if not paths:
            out.append("")
            continue
        depth = max(p.count(SEP) for p in paths)
        deepest = [p for p in paths if p.count(SEP) == depth]
        out.append(max(deepest, key=lambda p: predictions.probabilities[row, column[p]]))
    return out
