"""Decisions: from coherent probabilities to predicted node sets, with per-node thresholds fit on a
labelled split (DESIGN.md layer 5).

A fixed 0.5 hides the rare, deep nodes the model ranks well (``docs/results/decisions.md``).  A
:class:`Decision` holds one threshold per node and the rule that makes the predicted set coherent:

Policies (what the thresholds are):

* ``fixed``: one threshold for every node (0.5 unless given): the behaviour before decisions existed.
* ``f1``: each node's threshold maximises its F1 on the fit split.
* ``precision``: each node's threshold is the lowest whose fit-split precision is at least P (the
  auto-accept rule of CoralNet); a node that never reaches P is never predicted (threshold
  :data:`NEVER`).
* ``depth``: one threshold per depth, maximising the F1 pooled over that depth's nodes and samples.

A threshold is never fit on a handful of examples: a node with fewer than ``min_positives`` positives
in the fit split borrows, in this order, the threshold fitted for its depth (pooled over the depth's
nodes by the same policy, when they hold at least ``min_positives`` positives together), the global one
(pooled over all evaluated nodes) or the fixed 0.5; :attr:`Decision.sources` says which for each
node.  The depth comes first because the max-constraint puts ancestors on another probability scale
than their rare descendants (a parent is never below any child), while nodes of one depth share one.

Rules (how the set is made coherent, closed under ancestors):

* ``closure``: a node that passes its threshold brings its ancestors with it.
* ``gated``: a node is predicted only when it passes and all its parents are predicted.

With one threshold for all nodes both rules give the same set as ``probabilities >= threshold`` (the
probabilities are coherent).  The answer for a sample is its deepest predicted nodes; a sample with no
evaluated node predicted abstains (:func:`outcomes`).

The thresholds search the fit split's own scores: a threshold ``t`` predicts ``score >= t``, and sits
halfway between the lowest score it admits and the next lower score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from seabed_hmc.calibration import Calibration, fit_calibration
from seabed_hmc.config import DECISION_POLICIES, DECISION_RULES
from seabed_hmc.hierarchy import Hierarchy

POLICIES, RULES = DECISION_POLICIES, DECISION_RULES
NEVER = 2.0  # a threshold above every probability: the node is never predicted
ABSTAIN = "abstain"


# ---------------------------------------------------------------------------------- one node's search
def best_f1_threshold(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of ``scores >= threshold`` against ``truth``; ``(NEVER, 0.0)``
    without positives.

    The search runs over the distinct scores (``score >= s``); ties go to the highest.  Every threshold
    between that score and the next lower one predicts the same on the fit data, and the one returned
    is their midpoint (:func:`_midway`): placed at a positive's score, the threshold would drop every
    new positive scored a hair lower (measured on the CCR patches: ``docs/results/decisions.md``)."""
    order, cut_scores, true_positives, predicted = _cuts(scores, truth)
    positives = int(np.count_nonzero(truth))
    if positives == 0 or len(cut_scores) == 0:
        return NEVER, 0.0
    f1 = 2 * true_positives / (predicted + positives)
    best = int(np.flatnonzero(f1 == f1.max())[0])  # cuts run from the highest threshold down
    return _midway(cut_scores, best), float(f1[best])


def lowest_threshold_with_precision(scores: np.ndarray, truth: np.ndarray, target: float) -> float:
    """The lowest threshold whose precision on the fit data is at least ``target`` (searched over the
    distinct scores, returned midway to the next lower one as in :func:`best_f1_threshold`);
    :data:`NEVER` when no threshold reaches it."""
    _, cut_scores, true_positives, predicted = _cuts(scores, truth)
    reaching = np.flatnonzero(true_positives / np.maximum(predicted, 1) >= target - 1e-12)
    reaching = reaching[true_positives[reaching] > 0]
    return _midway(cut_scores, int(reaching[-1])) if len(reaching) else NEVER


def _midway(cut_scores: np.ndarray, index: int) -> float:
    """Halfway between the distinct score at ``index`` and the next lower one (the score itself when
    it is the lowest): the same predictions on the fit data, the widest margin on both sides."""
    if index + 1 >= len(cut_scores):
        return float(cut_scores[index])
    return float((cut_scores[index] + cut_scores[index + 1]) / 2)


def _cuts(scores: np.ndarray, truth: np.ndarray):
    """At each distinct score from the highest down: (order, the score, true positives and predicted
    count of ``scores >= that score``)."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], truth[order]
    if len(ranked) == 0:
        empty = np.zeros(0)
        return order, empty, empty, empty
    last_of_value = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    true_positives = np.cumsum(hits)[last_of_value].astype(np.float64)
    return order, ranked[last_of_value], true_positives, (last_of_value + 1).astype(np.float64)


# ------------------------------------------------------------------------------------------ the record
@dataclass
class Decision:
    """Per-node thresholds and the coherence rule; :meth:`predict` turns probabilities into sets.

    Attributes:
        policy: one of :data:`POLICIES`.
        thresholds: (nodes,) ``score >= threshold`` passes; non-evaluated nodes have -inf (always on).
        sources: per node, where its threshold came from: ``fitted``, ``depth``, ``global``, ``fixed``
            (or ``never``: the precision target is out of reach).
        rule: one of :data:`RULES`.
        positives: (nodes,) positives per node in the fit split (empty for ``fixed``).
        fitted_on: what the rule was fit on, e.g. ``"val: 340 images"`` (empty for ``fixed``).
        settings: the policy's settings (``precision``, ``min_positives``, ``threshold``).
    """

    policy: str
    thresholds: np.ndarray
    sources: list[str]
    rule: str = "closure"
    positives: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fitted_on: str = ""
    settings: dict = field(default_factory=dict)
    calibration: Calibration | None = None

    def probabilities(self, probabilities, hierarchy: Hierarchy, node_axis: int = -1) -> np.ndarray:
        """The probabilities the thresholds apply to: calibrated (and coherent) when the rule has a
        calibration, else as given."""
        scores = _numpy(probabilities)
        return scores if self.calibration is None else self.calibration.apply(scores, hierarchy, node_axis)

    def predict(
        self, probabilities: np.ndarray | torch.Tensor, hierarchy: Hierarchy, node_axis: int = -1
    ) -> np.ndarray:
        """Bool predictions closed under ancestors, shaped like the coherent ``probabilities`` whose
        ``node_axis`` holds the nodes: (samples, nodes) by default, (nodes, H, W) maps with 0."""
        return self.decide(self.probabilities(probabilities, hierarchy, node_axis), hierarchy, node_axis)

    def decide(self, probabilities: np.ndarray, hierarchy: Hierarchy, node_axis: int = -1) -> np.ndarray:
        """:meth:`predict` for probabilities already passed through :meth:`probabilities`."""
        scores = np.moveaxis(_numpy(probabilities), node_axis, 0)
        if scores.shape[0] != len(self.thresholds):
            raise ValueError(
                f"the decision has {len(self.thresholds)} node thresholds but the probabilities have "
                f"{scores.shape[0]} nodes: it was fit for another hierarchy"
            )
        thresholds = self.thresholds.reshape(-1, *([1] * (scores.ndim - 1)))
        passing = np.ascontiguousarray(scores >= thresholds)  # (nodes, ...): one block per node
        passing[~hierarchy.evaluated] = True  # always-on roots never block their children
        predicted = _gate(passing, hierarchy) if self.rule == "gated" else _close(passing, hierarchy)
        return np.moveaxis(predicted, 0, node_axis)

    def describe(self) -> str:
        """One line naming the rule, e.g. ``f1 (fit on val: 340 images, min 5 positives), closure``."""
        calibrated = "" if self.calibration is None else f", {self.calibration.method}-calibrated"
        if self.policy == "fixed":
            return f"fixed {self.settings.get('threshold', 0.5):g}{calibrated}"
        detail = f"P >= {self.settings['precision']:g}, " if self.policy == "precision" else ""
        return (
            f"{self.policy} ({detail}fit on {self.fitted_on}, min {self.settings['min_positives']} "
            f"positives), {self.rule}{calibrated}"
        )

    def to_record(self) -> dict:
        """Plain lists, numbers and strings (``torch.load(weights_only=True)``- and JSON-safe)."""
        return {
            "policy": self.policy,
            "thresholds": [float(t) for t in self.thresholds],
            "sources": list(self.sources),
            "rule": self.rule,
            "positives": [int(p) for p in self.positives],
            "fitted_on": self.fitted_on,
            "settings": dict(self.settings),
            "calibration": None if self.calibration is None else self.calibration.to_record(),
        }

    @classmethod
    def from_record(cls, record: dict, hierarchy: Hierarchy, where: str = "a decision record") -> Decision:
        """The decision a :meth:`to_record` dict describes, checked against ``hierarchy``."""
        try:
            policy, rule = record["policy"], record.get("rule", "closure")
            thresholds = np.asarray(record["thresholds"], dtype=np.float64)
        except (KeyError, TypeError) as error:
            raise ValueError(f"{where} is not a decision record (missing {error}); refit it") from None
        _check_choice("policy", policy, POLICIES, where)
        _check_choice("rule", rule, RULES, where)
        if thresholds.shape != (len(hierarchy),):
            raise ValueError(
                f"{where} has {thresholds.size} thresholds but the hierarchy has {len(hierarchy)} nodes: it "
                "was fit for another hierarchy; refit it with seabed-hmc calibrate"
            )
        return cls(
            policy,
            thresholds,
            list(record.get("sources", ["fitted"] * len(thresholds))),
            rule,
            np.asarray(record.get("positives", []), dtype=np.int64),
            str(record.get("fitted_on", "")),
            dict(record.get("settings", {})),
            None if record.get("calibration") is None else Calibration.from_record(record["calibration"]),
        )


def _check_choice(name: str, value: str, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        raise ValueError(f"{where}: {name} {value!r} is not one of {list(choices)}")


def _numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def _close(passing: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """(nodes, ...) passing nodes with all their ancestors (children before parents: reverse
    topological order, one pass)."""
    predicted = passing  # a fresh array from predict()
    for node in reversed(hierarchy.topological_order):
        for parent in hierarchy.parents[node]:
            predicted[parent] |= predicted[node]
    return predicted


def _gate(passing: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """(nodes, ...): a node stays predicted only when all its parents are (parents before children)."""
    predicted = passing
    for node in hierarchy.topological_order:
        for parent in hierarchy.parents[node]:
            predicted[node] &= predicted[parent]
    return predicted


# ------------------------------------------------------------------------------------------ fitting
def fixed_decision(hierarchy: Hierarchy, threshold: float = 0.5) -> Decision:
    """One threshold for every evaluated node: today's ``probabilities >= threshold``."""
    thresholds = np.where(hierarchy.evaluated, float(threshold), -np.inf)
    sources = ["fixed" if e else "not evaluated" for e in hierarchy.evaluated]
    return Decision("fixed", thresholds, sources, settings={"threshold": float(threshold)})


def fit_decision(
    probabilities: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    hierarchy: Hierarchy,
    policy: str = "f1",
    precision: float = 0.8,
    min_positives: int = 5,
    rule: str = "closure",
    fitted_on: str = "",
) -> Decision:
    """Fit the thresholds of ``policy`` on labelled (samples, nodes) probabilities; unknown entries
    (``mask == 0``) take no part.  See the module docstring for the policies, borrowing and rules.

    Raises:
        ValueError: an unknown policy or rule, shapes that do not match the hierarchy, or no evaluated
            node with a known positive (nothing to fit on).
    """
    _check_choice("policy", policy, POLICIES, "fit_decision")
    _check_choice("rule", rule, RULES, "fit_decision")
    if policy == "fixed":
        return fixed_decision(hierarchy)
    scores, truth = _numpy(probabilities).astype(np.float64), _numpy(targets) > 0.5
    known = np.ones_like(truth) if mask is None else _numpy(mask) > 0.5
    if scores.shape != truth.shape or scores.shape[1:] != (len(hierarchy),):
        raise ValueError(
            f"probabilities {scores.shape} and targets {truth.shape} must both be (samples, {len(hierarchy)})"
        )
    evaluated = hierarchy.evaluated
    positives = np.count_nonzero(truth & known, axis=0)
    if not positives[evaluated].any():
        raise ValueError(
            f"the fit data ({fitted_on or f'{len(scores)} samples'}) has no positive for any evaluated node: "
            "nothing to fit a decision on; use labelled images of the classes"
        )
    target = precision if policy == "precision" else None
    pooled = {"global": _pooled_threshold(scores, truth, known, evaluated, min_positives, target)}
    for depth in np.unique(hierarchy.depth[evaluated]):
        nodes = evaluated & (hierarchy.depth == depth)
        pooled[f"depth {depth}"] = _pooled_threshold(scores, truth, known, nodes, min_positives, target)
    thresholds = np.full(len(hierarchy), -np.inf)
    sources = ["not evaluated"] * len(hierarchy)
    for node in np.flatnonzero(evaluated):
        column = known[:, node]
        threshold, source = None, "fitted"
        if policy == "depth":
            threshold, source = pooled[f"depth {hierarchy.depth[node]}"], "depth"
        elif positives[node] >= min_positives and policy == "f1":
            threshold = best_f1_threshold(scores[column, node], truth[column, node])[0]
        elif positives[node] >= min_positives:
            threshold = lowest_threshold_with_precision(scores[column, node], truth[column, node], precision)
            source = "never" if threshold == NEVER else "fitted"
        if threshold is None:
            threshold, source = _borrowed(pooled, f"depth {hierarchy.depth[node]}")
        thresholds[node], sources[node] = threshold, source
    settings = {"min_positives": int(min_positives)}
    if policy == "precision":
        settings["precision"] = float(precision)
    return Decision(policy, thresholds, sources, rule, positives.astype(np.int64), fitted_on, settings)


def _pooled_threshold(
    scores, truth, known, nodes, min_positives: int, precision: float | None
) -> float | None:
    """The threshold over every known entry of ``nodes`` together: F1-best, or the lowest reaching
    ``precision`` when given; None below ``min_positives`` positives."""
    values, hits = scores[:, nodes][known[:, nodes]], truth[:, nodes][known[:, nodes]]
    if np.count_nonzero(hits) < min_positives:
        return None
    if precision is not None:
        return lowest_threshold_with_precision(values, hits, precision)
    return best_f1_threshold(values, hits)[0]


def _borrowed(pooled: dict, depth: str) -> tuple[float, str]:
    if pooled[depth] is not None:
        return pooled[depth], "depth"
    if pooled["global"] is not None:
        return pooled["global"], "global"
    return 0.5, "fixed"


# ------------------------------------------------------------------------------------------ answers
def outcomes(predicted: np.ndarray, hierarchy: Hierarchy) -> list[list[str]]:
    """For each sample the deepest predicted evaluated nodes (by name), or ``["abstain"]`` when no
    evaluated node is predicted."""
    return [deepest or [ABSTAIN] for deepest in hierarchy.decode(predicted)]


def fit_configured(
    settings,
    probabilities: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    hierarchy: Hierarchy,
    fitted_on: str,
) -> Decision:
    """:func:`fit_decision` with a :class:`~seabed_hmc.config.DecisionConfig`'s settings; with
    ``settings.calibration`` the probabilities are calibrated first (fit on the same data) and the
    thresholds fit on the calibrated ones."""
    calibration = None
    if settings.calibration != "none":
        scores, truth = _numpy(probabilities), _numpy(targets)
        known = None if mask is None else _numpy(mask)
        calibration = fit_calibration(
            scores, truth, known, hierarchy, settings.calibration, settings.min_positives
        )
        probabilities = calibration.apply(scores, hierarchy)
    if settings.policy == "fixed":
        decision = fixed_decision(hierarchy, settings.threshold)
        decision.rule = settings.rule
    else:
        decision = fit_decision(
            probabilities,
            targets,
            mask,
            hierarchy,
            settings.policy,
            settings.precision,
            settings.min_positives,
            settings.rule,
            fitted_on,
        )
    decision.calibration = calibration
    return decision


def stored_decision(record: dict | None, hierarchy: Hierarchy, where: str) -> Decision:
    """The decision a checkpoint stores (its ``decision`` record); ``fixed 0.5`` when it stores none
    (a checkpoint written before decisions existed behaves as it always did)."""
    if record is None:
        return fixed_decision(hierarchy)
    return Decision.from_record(record, hierarchy, where)
