"""Metrics for hierarchical multi-label classification (METHOD.md section 9).

Every metric is computed on *evaluated* nodes only (``hierarchy.evaluated``; always-on roots carry no
information) and ignores *unknown* entries (``mask == 0``, partial labels) everywhere: an unknown entry is
neither a positive, a negative, a hit nor a miss, so changing its prediction or target changes nothing.

Conventions shared by every function:

- Arrays are ``(samples, nodes)``; numpy arrays and torch tensors are both accepted.
- ``probabilities`` are the coherent (max-constrained) ensemble means; ``predicted`` is binary (bool or
  0/1), normally ``probabilities >= threshold``.
- ``targets`` are 0/1 (as returned by :meth:`Hierarchy.encode`), ``mask`` is 0/1 with 1 = known;
  ``mask=None`` means every entry is known.
- A ratio whose denominator is zero (precision without predicted positives, recall without positives) is 0,
  the usual convention of the published results; averages that have nothing to average are ``nan``.

Everything is vectorised numpy (no loop over samples), fast for 4,000 nodes x 2,000 samples.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from seabed_hmc.hierarchy import Hierarchy

__all__ = [
    "NodeScores",
    "RareNodeRecall",
    "decision_metrics",
    "depth_scores",
    "evaluate_predictions",
    "hierarchical_scores",
    "macro_node_scores",
    "micro_average_precision",
    "node_scores",
    "rare_node_average_precision",
    "rare_node_recall",
    "rare_nodes",
    "taxonomic_distance",
]


# ---------------------------------------------------------------------------------------- input handling
def _to_numpy(array: np.ndarray | torch.Tensor | Sequence) -> np.ndarray:
    """A numpy view of a tensor (detached, on the CPU) or array-like."""
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _known(mask: np.ndarray | torch.Tensor | None, shape: tuple[int, ...]) -> np.ndarray:
    """(samples, nodes) bool: the known entries (all of them when ``mask`` is None)."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    known = _to_numpy(mask)
    if known.shape != shape:
        raise ValueError(f"mask has shape {known.shape} but the targets have shape {shape}; they must match")
    return known.astype(bool) if known.dtype == bool else known > 0.5


def _binary(array: np.ndarray, known: np.ndarray, name: str, hint: str = "") -> np.ndarray:
    """(samples, nodes) bool from a bool or 0/1 array; other values in known entries are an error."""
    if array.dtype == bool:
        return array
    invalid = known & (array != 0) & (array != 1)
    if invalid.any():
        sample, node = np.argwhere(invalid)[0]
        raise ValueError(
            f"{name} must be 0/1 (or bool) in known entries, but entry (sample {sample}, node {node}) is "
            f"{array[sample, node]!r}{hint}"
        )
    return array == 1


def _prepare(
    predicted: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    hierarchy: Hierarchy | None,
    predicted_name: str = "predicted",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs: ``(first, targets, known, evaluated)``; ``first`` is returned as given (numpy).

    ``targets`` and ``known`` are bool (samples, nodes); ``evaluated`` is bool (nodes,).
    """
    first = _to_numpy(predicted)
    target_values = _to_numpy(targets)
    if target_values.ndim != 2:
        raise ValueError(f"targets must be (samples, nodes), got shape {target_values.shape}")
    if first.shape != target_values.shape:
        raise ValueError(
            f"{predicted_name} has shape {first.shape} but targets have shape {target_values.shape}; "
            "both must be (samples, nodes)"
        )
    nodes = target_values.shape[1]
    if hierarchy is None:
        evaluated = np.ones(nodes, dtype=bool)
    else:
        if len(hierarchy) != nodes:
            raise ValueError(
                f"the arrays have {nodes} node columns but the hierarchy has {len(hierarchy)} nodes; "
                "pass the hierarchy the targets were encoded with"
            )
        evaluated = np.asarray(hierarchy.evaluated, dtype=bool)
    known = _known(mask, target_values.shape)
    return first, _binary(target_values, known, "targets"), known, evaluated


def _predictions(predicted: np.ndarray, known: np.ndarray) -> np.ndarray:
    hint = "; threshold probabilities first (probabilities >= 0.5) or use evaluate_predictions"
    return _binary(predicted, known, "predicted", hint)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return _ratio(2 * precision * recall, precision + recall)


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


# ---------------------------------------------------------------------------------------- node scores
@dataclass(frozen=True)
class NodeScores:
    """Per-node scores; every field is a (nodes,) array over ALL columns, in node index order.

    Attributes:
        precision: TP / (TP + FP), 0 where the node has no predicted positive among known entries.
        recall: TP / (TP + FN), 0 where the node has no positive among known entries.
        f1: 2PR / (P + R), 0 where P + R = 0.
        support: number of known entries with target 1 (TP + FN), as in scikit-learn.
        true_positives: number of known entries predicted 1 with target 1.
        predicted_positives: number of known entries predicted 1 (TP + FP).
        evaluated: bool, whether the node counts in averages (all True without a hierarchy).
    """

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    true_positives: np.ndarray
    predicted_positives: np.ndarray
    evaluated: np.ndarray

    @property
    def supported(self) -> np.ndarray:
        """(nodes,) bool: evaluated nodes with at least one known positive."""
        return self.evaluated & (self.support > 0)


def node_scores(
    predicted: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
    hierarchy: Hierarchy | None = None,
) -> NodeScores:
    """Per-node precision, recall, F1 and counts over known entries.

    Args:
        predicted: (samples, nodes) binary predictions (bool or 0/1).
        targets: (samples, nodes) 0/1 targets.
        mask: (samples, nodes), 1 = known; None = all known.  Unknown entries are not counted at all.
        hierarchy: gives ``evaluated`` (which nodes averages use); None = every node is evaluated.

    Returns:
        A :class:`NodeScores` of (nodes,) arrays; undefined ratios (0/0) are 0.
    """
    predicted_values, truth, known, evaluated = _prepare(predicted, targets, mask, hierarchy)
    positive = _predictions(predicted_values, known) & known
    truth = truth & known
    true_positives = np.count_nonzero(positive & truth, axis=0)
    predicted_positives = np.count_nonzero(positive, axis=0)
    support = np.count_nonzero(truth, axis=0)
    precision = _ratio(true_positives, predicted_positives)
    recall = _ratio(true_positives, support)
    return NodeScores(
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall),
        support=support,
        true_positives=true_positives,
        predicted_positives=predicted_positives,
        evaluated=evaluated,
    )


def _macro(scores: NodeScores, nodes: np.ndarray) -> dict[str, float | int]:
    """Macro precision/recall/F1 over the nodes selected by the bool array ``nodes``, all and supported."""
    selected = nodes & scores.evaluated
    supported = selected & (scores.support > 0)
    result: dict[str, float | int] = {}
    for name, chosen in (("all", selected), ("supported", supported)):
        for metric in ("precision", "recall", "f1"):
            result[f"{metric}_{name}"] = _mean_or_nan(getattr(scores, metric)[chosen])
    result["nodes_all"] = int(selected.sum())
    result["nodes_supported"] = int(supported.sum())
    return result


def macro_node_scores(
    predicted: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
    hierarchy: Hierarchy | None = None,
) -> dict[str, float | int]:
    """Macro (unweighted mean over nodes) precision, recall and F1 of :func:`node_scores`.

    Two averages are reported: over every evaluated node (``*_all``, the published convention: a node
    without test positives has recall 0 and, unless it is predicted, precision 0) and over evaluated
    nodes with at least one known test positive (``*_supported``; nan when there is none).

    Returns:
        ``{"precision_all", "recall_all", "f1_all", "precision_supported", "recall_supported",
        "f1_supported"}`` (floats) and ``{"nodes_all", "nodes_supported"}`` (ints).
    """
    scores = node_scores(predicted, targets, mask, hierarchy)
    return _macro(scores, np.ones_like(scores.evaluated))


# ---------------------------------------------------------------------------------------- AU(PRC)
def _average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Average precision of a 1-D score vector, with scikit-learn's handling of ties.

    Sorted by decreasing score, each distinct score is one threshold n (tied entries enter together);
    AP = sum_n (R_n - R_{n-1}) P_n with R_0 = 0.  nan when there is no positive.
    """
    positives = int(np.count_nonzero(truth))
    if positives == 0:
        return math.nan
    # the order inside a run of tied scores does not matter, so the faster unstable sort is fine
    order = np.argsort(scores)[::-1]
    sorted_scores = scores[order]
    hits = np.cumsum(truth[order].astype(np.int64))
    # the last entry of each run of equal scores closes a threshold
    ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    true_positives = hits[ends]
    precision = true_positives / (ends + 1.0)
    recall = true_positives / positives
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def micro_average_precision(
    probabilities: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    hierarchy: Hierarchy,
) -> float:
    """Micro-averaged average precision, the C-HMCNN AU(PRC).

    All known entries of evaluated nodes are flattened into one ranking of (sample, node) scores;
    the result equals scikit-learn's ``average_precision_score(y_true.ravel(), y_score.ravel())`` on
    those entries (ties: one precision/recall point per distinct score).

    Args:
        probabilities: (samples, nodes) coherent probabilities (scores; any monotone score works).
        targets: (samples, nodes) 0/1.  mask: (samples, nodes) 1 = known, or None.
        hierarchy: selects the evaluated nodes.

    Returns:
        The AP in [0, 1]; nan (no exception) when no known evaluated entry is positive.
    """
    scores, truth, known, evaluated = _prepare(probabilities, targets, mask, hierarchy, "probabilities")
    selected = known & evaluated[None, :]
    chosen_scores = scores[selected]
    if not np.issubdtype(chosen_scores.dtype, np.floating):
        chosen_scores = chosen_scores.astype(np.float64)
    if np.isnan(chosen_scores).any():
        raise ValueError(
            f"probabilities contain {int(np.isnan(chosen_scores).sum())} NaN value(s) in known evaluated "
            "entries; check the model outputs (a diverged run?) before computing AU(PRC)"
        )
    return _average_precision(chosen_scores, truth[selected])


# ---------------------------------------------------------------------------------------- per depth
def depth_scores(
    predicted: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    hierarchy: Hierarchy,
) -> pd.DataFrame:
    """Macro node precision, recall and F1 per depth of the hierarchy.

    Depth is ``hierarchy.depth`` (longest path from a root; roots are depth 0, so with an excluded
    single root the first evaluated level is depth 1).

    Returns:
        A DataFrame with one row per depth present among evaluated nodes (ascending) and columns
        ``depth, nodes_all, nodes_supported, precision_all, recall_all, f1_all, precision_supported,
        recall_supported, f1_supported`` (supported = evaluated nodes with known test positives; the
        supported averages are nan at a depth without any).
    """
    return _depth_table(node_scores(predicted, targets, mask, hierarchy), hierarchy)


def _depth_table(scores: NodeScores, hierarchy: Hierarchy) -> pd.DataFrame:
    depth = np.asarray(hierarchy.depth)
    rows = []
    for level in np.unique(depth[scores.evaluated]):
        rows.append({"depth": int(level), **_macro(scores, depth == level)})
    columns = ["depth", "nodes_all", "nodes_supported"] + [
        f"{metric}_{name}" for name in ("all", "supported") for metric in ("precision", "recall", "f1")
    ]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------- rare nodes
@dataclass(frozen=True)
class RareNodeRecall:
    """Result of :func:`rare_node_recall`.

    Attributes:
        recall: macro recall over the rare nodes with test support (nan when none has support).
        nodes: (rare,) int indices of the rare nodes, rarest first (ties by node index).
        nodes_supported: how many rare nodes have at least one known test positive.
    """

    recall: float
    nodes: np.ndarray
    nodes_supported: int


def rare_nodes(
    hierarchy: Hierarchy, train_counts: np.ndarray | torch.Tensor, fraction: float = 1 / 3
) -> np.ndarray:
    """Indices of the ceil(fraction x K) evaluated nodes with the fewest training positives.

    ``train_counts`` is (nodes,): training samples with y = 1 per node.  Ties are broken by node index
    (stable sort), so the selection is deterministic; the result is ordered rarest first.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    counts = _to_numpy(train_counts).reshape(-1)
    if counts.size != len(hierarchy):
        raise ValueError(
            f"train_counts has {counts.size} entries but the hierarchy has {len(hierarchy)} nodes"
        )
    candidates = hierarchy.evaluated_indices
    # round first so that e.g. (1/3) * 300 = 100.00000000000001 does not become 101
    how_many = math.ceil(round(fraction * candidates.size, 9))
    order = np.argsort(counts[candidates], kind="stable")
    return candidates[order[:how_many]]


def rare_node_recall(
    predicted: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    hierarchy: Hierarchy,
    train_counts: np.ndarray | torch.Tensor,
    fraction: float = 1 / 3,
) -> RareNodeRecall:
    """Macro recall over the rare nodes (the lowest ``fraction`` of training frequency).

    Rare nodes are chosen by :func:`rare_nodes` from the TRAINING counts.  Recall is undefined for a
    node without known test positives, so such rare nodes are left out of the average (rather than
    counted as 0); ``nodes_supported`` says how many remained.  nan if none has test support.
    """
    return _rare_recall(node_scores(predicted, targets, mask, hierarchy), hierarchy, train_counts, fraction)


def _rare_recall(scores: NodeScores, hierarchy: Hierarchy, train_counts, fraction: float) -> RareNodeRecall:
    chosen = rare_nodes(hierarchy, train_counts, fraction)
    with_support = chosen[scores.support[chosen] > 0]
    return RareNodeRecall(
        recall=_mean_or_nan(scores.recall[with_support]),
        nodes=chosen,
        nodes_supported=int(with_support.size),
    )


def rare_node_average_precision(
    probabilities: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    hierarchy: Hierarchy,
    train_counts: np.ndarray | torch.Tensor,
    fraction: float = 1 / 3,
) -> float:
    """Macro average precision over the rare nodes: the threshold-free counterpart of
    :func:`rare_node_recall`.

    For each rare node (chosen by :func:`rare_nodes` from the TRAINING counts) with at least one known
    test positive, the AP of its column over the known test entries (scikit-learn's
    ``average_precision_score`` with its tie handling); the mean over those nodes.  It tells methods
    apart where recall at a threshold is 0 for all of them: a method that ranks a rare node's positives
    higher scores higher even if none crosses 0.5.  nan when no rare node has test support.
    """
    scores, truth, known, _ = _prepare(probabilities, targets, mask, hierarchy, "probabilities")
    chosen = rare_nodes(hierarchy, train_counts, fraction)
    per_node = []
    for node in chosen:
        rows = known[:, node]
        if not truth[rows, node].any():
            continue  # AP is undefined without a positive, as recall is
        column = scores[rows, node].astype(np.float64)
        if np.isnan(column).any():
            raise ValueError(
                f"probabilities contain NaN for rare node {hierarchy.nodes[node]!r}; check the model "
                "outputs (a diverged run?)"
            )
        per_node.append(_average_precision(column, truth[rows, node]))
    return _mean_or_nan(np.asarray(per_node, dtype=np.float64))


# ---------------------------------------------------------------------------------------- hierarchical
def _ancestor_matrix(hierarchy: Hierarchy) -> sparse.csr_matrix:
    """Sparse (nodes, nodes) 0/1 matrix with entry [i, a] = 1 when a is in A(i) (self included)."""
    node, ancestor = hierarchy.ancestor_pairs
    size = len(hierarchy)
    values = np.ones(node.size, dtype=np.float32)
    return sparse.csr_matrix((values, (node, ancestor)), shape=(size, size))


def _close_upwards(on: np.ndarray, ancestors: sparse.csr_matrix) -> np.ndarray:
    """(samples, nodes) bool: the nodes in ``on`` together with all their ancestors."""
    reached = sparse.csr_matrix(on, dtype=np.float32) @ ancestors
    return reached.toarray() > 0


def hierarchical_scores(
    predicted: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    hierarchy: Hierarchy,
) -> dict[str, float]:
    """Set-based hierarchical precision, recall and F1, micro over samples.

    For each sample, P̂ = predicted nodes plus their ancestors and T̂ = true nodes plus their ancestors,
    both restricted to evaluated nodes and known entries; then hP = Σ|P̂∩T̂| / Σ|P̂|,
    hR = Σ|P̂∩T̂| / Σ|T̂| and hF = 2 hP hR / (hP + hR), each 0 where undefined.  Only known entries
    are closed upwards, so an unknown entry's prediction has no effect (coherent predictions lose
    nothing by this: their unknown positives' ancestors are predicted anyway).

    Returns:
        ``{"hierarchical_precision", "hierarchical_recall", "hierarchical_f1"}``.
    """
    predicted_values, truth, known, evaluated = _prepare(predicted, targets, mask, hierarchy)
    positive = _predictions(predicted_values, known) & known
    ancestors = _ancestor_matrix(hierarchy)
    counted = known & evaluated[None, :]
    predicted_closed = _close_upwards(positive, ancestors) & counted
    true_closed = _close_upwards(truth & known, ancestors) & counted
    overlap = np.count_nonzero(predicted_closed & true_closed)
    precision = float(_ratio(overlap, np.count_nonzero(predicted_closed)))
    recall = float(_ratio(overlap, np.count_nonzero(true_closed)))
    return {
        "hierarchical_precision": precision,
        "hierarchical_recall": recall,
        "hierarchical_f1": float(_f1(np.float64(precision), np.float64(recall))),
    }


# ---------------------------------------------------------------------------------------- taxonomy
@functools.lru_cache(maxsize=8)  # per hierarchy (hashable), not per evaluation: runs call it every epoch
def _hops_to_ancestors(hierarchy: Hierarchy) -> tuple[list[dict[int, int]], list[int]]:
    """Per node, {ancestor (self included): fewest parent links up to it}, and the links up to the
    implicit root above the hierarchy's roots (1 + the fewest to a root)."""
    hops: list[dict[int, int]] = [{} for _ in range(len(hierarchy))]
    for node in hierarchy.topological_order:
        hops[node][node] = 0
        for parent in hierarchy.parents[node]:
            for ancestor, steps in hops[parent].items():
                if steps + 1 < hops[node].get(ancestor, math.inf):
                    hops[node][ancestor] = steps + 1
    to_top = [
        1 + min(s for a, s in hops[n].items() if not hierarchy.parents[a]) for n in range(len(hierarchy))
    ]
    return hops, to_top


def taxonomic_distance(
    predicted: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    hierarchy: Hierarchy,
) -> float:
    """Mean over samples of the hops between the true and the predicted deepest nodes (the score of the
    FathomNet 2025 hierarchical challenge; 0 is a perfect answer).

    Per sample, each true deepest evaluated node is matched with its nearest predicted deepest node and
    the hops are averaged; hops(a, b) = the fewest links from a up to a common ancestor and down to b.
    Nodes with no common ancestor, and an abstaining sample (no evaluated node predicted), count the
    links through an implicit root above the hierarchy's roots.  Samples without a true node are left
    out; nan when none is left.  Unknown entries (``mask == 0``) are neither true nor predicted.
    """
    hops, depth_to_top = _hops_to_ancestors(hierarchy)
    predicted_values, truth_values, known, _ = _prepare(predicted, targets, mask, hierarchy)
    truth = hierarchy.decode(truth_values & known)
    guess = hierarchy.decode(_predictions(predicted_values, known) & known)
    distances = []
    for true_names, guessed_names in zip(truth, guess, strict=True):
        if not true_names:
            continue
        true_nodes = [hierarchy.index(name) for name in true_names]
        guessed = [hierarchy.index(name) for name in guessed_names]
        per_truth = []
        for node in true_nodes:
            options = [depth_to_top[node]]  # up to the implicit root: abstaining
            for other in guessed:
                common = hops[node].keys() & hops[other].keys()
                through = min((hops[node][c] + hops[other][c] for c in common), default=math.inf)
                options.append(min(through, depth_to_top[node] + depth_to_top[other]))
            per_truth.append(min(options) if not guessed else min(options[1:]))
        distances.append(float(np.mean(per_truth)))
    return float(np.mean(distances)) if distances else math.nan


# ---------------------------------------------------------------------------------------- headline
def decision_metrics(
    predicted: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    hierarchy: Hierarchy,
    train_counts: np.ndarray | torch.Tensor | None = None,
) -> dict[str, float | int]:
    """The numbers that depend on the decisions (binary ``predicted``), as a flat dict: macro node
    P/R/F1 (all and supported), hierarchical P/R/F1, per-depth recall, the taxonomic distance and, with
    ``train_counts``, rare-node precision, recall and F1 (macro over the rare nodes with test support)."""
    predicted = _to_numpy(predicted).astype(bool)
    per_node = node_scores(predicted, targets, mask, hierarchy)
    result: dict[str, float | int] = _macro(per_node, np.ones_like(per_node.evaluated))
    result.update(hierarchical_scores(predicted, targets, mask, hierarchy))
    for row in _depth_table(per_node, hierarchy).itertuples(index=False):
        result[f"recall_depth_{row.depth}"] = float(row.recall_all)
        result[f"recall_supported_depth_{row.depth}"] = float(row.recall_supported)
    if train_counts is not None:
        rare = _rare_recall(per_node, hierarchy, train_counts, 1 / 3)
        with_support = rare.nodes[per_node.support[rare.nodes] > 0]
        result["rare_node_recall"] = rare.recall
        result["rare_node_precision"] = _mean_or_nan(per_node.precision[with_support])
        result["rare_node_f1"] = _mean_or_nan(per_node.f1[with_support])
        result["rare_nodes"] = int(rare.nodes.size)
        result["rare_nodes_supported"] = rare.nodes_supported
    result["taxonomic_distance"] = taxonomic_distance(predicted, targets, mask, hierarchy)
    return result


def evaluate_predictions(
    probabilities: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    hierarchy: Hierarchy,
    train_counts: np.ndarray | torch.Tensor | None = None,
    threshold: float = 0.5,
) -> dict[str, float | int]:
    """The headline numbers of one evaluation at one ``threshold``, as a flat JSON-serialisable dict.

    Args:
        probabilities: (samples, nodes) coherent probabilities; prediction = probability >= threshold.
        targets, mask: (samples, nodes) 0/1 (mask None = all known).
        hierarchy: the hierarchy the targets were encoded with.
        train_counts: (nodes,) training positives per node; enables the rare-node numbers.

    Returns:
        Python floats (nan where undefined) for ``au_prc`` and, with ``train_counts``, ``rare_node_ap``
        (:func:`rare_node_average_precision`): threshold-free; and :func:`decision_metrics` of
        ``probabilities >= threshold``.  Python ints for the node counts.
    """
    scores = _to_numpy(probabilities)
    result: dict[str, float | int] = {"au_prc": micro_average_precision(scores, targets, mask, hierarchy)}
    result.update(decision_metrics(scores >= threshold, targets, mask, hierarchy, train_counts))
    if train_counts is not None:
        result["rare_node_ap"] = rare_node_average_precision(scores, targets, mask, hierarchy, train_counts)
    return {key: (int(value) if isinstance(value, int) else float(value)) for key, value in result.items()}
