"""Decisions against brute force: threshold searches, coherent sets on random DAGs, borrowing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seabed_hmc.constraint import constraint_plan, max_constraint
from seabed_hmc.decisions import (
    NEVER,
    Decision,
    best_f1_threshold,
    fit_decision,
    fixed_decision,
    lowest_threshold_with_precision,
    outcomes,
)
from seabed_hmc.hierarchy import Hierarchy
from tests.strategies import dags

scores_and_truth = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1.0]), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


def exhaustive(scores, truth):
    """(threshold, F1, precision) of ``scores >= t`` for every distinct score t, highest first."""
    rows = []
    for t in sorted(set(scores), reverse=True):
        predicted = np.asarray(scores) >= t
        hits = int(np.count_nonzero(predicted & np.asarray(truth)))
        f1 = 2 * hits / (predicted.sum() + np.count_nonzero(truth)) if np.any(truth) else 0.0
        rows.append((t, f1, hits / predicted.sum(), hits))
    return rows


@given(scores_and_truth)
def test_best_f1_threshold_equals_an_exhaustive_search(data):
    scores, truth = data
    threshold, f1 = best_f1_threshold(np.array(scores), np.array(truth))
    if not any(truth):
        assert (threshold, f1) == (NEVER, 0.0)
        return
    rows = exhaustive(scores, truth)
    best = max(row[1] for row in rows)
    assert f1 == pytest.approx(best)
    chosen = max(row[0] for row in rows if row[1] == pytest.approx(best))  # ties: the highest score
    assert threshold == midway(scores, chosen)
    assert np.array_equal(np.array(scores) >= threshold, np.array(scores) >= chosen)  # same on the fit data


@given(scores_and_truth, st.sampled_from([0.5, 0.8, 1.0]))
def test_precision_threshold_equals_an_exhaustive_search(data, target):
    scores, truth = data
    threshold = lowest_threshold_with_precision(np.array(scores), np.array(truth), target)
    reaching = [row[0] for row in exhaustive(scores, truth) if row[2] >= target and row[3] > 0]
    assert threshold == (midway(scores, min(reaching)) if reaching else NEVER)


def midway(scores, chosen: float) -> float:
    """Halfway from the chosen distinct score down to the next lower one (itself when lowest)."""
    lower = [s for s in set(scores) if s < chosen]
    return (chosen + max(lower)) / 2 if lower else chosen


def coherent(hierarchy: Hierarchy, rng) -> np.ndarray:
    logits = rng.normal(size=(1, 30, len(hierarchy))).astype(np.float32) * 2
    import torch

    constrained = max_constraint(torch.from_numpy(logits), constraint_plan(hierarchy))
    return torch.sigmoid(constrained)[0].numpy()


@settings(max_examples=60, deadline=None)
@given(dags(min_nodes=2, max_nodes=10), st.sampled_from(["closure", "gated"]), st.integers(0, 2**16))
def test_predicted_sets_are_closed_under_ancestors_on_random_dags(hierarchy, rule, seed):
    rng = np.random.default_rng(seed)
    thresholds = np.where(hierarchy.evaluated, rng.uniform(0, 1, len(hierarchy)), -np.inf)
    decision = Decision("f1", thresholds, ["fitted"] * len(hierarchy), rule)
    probabilities = coherent(hierarchy, rng)
    predicted = decision.predict(probabilities, hierarchy)
    passing = probabilities >= thresholds
    for node in range(len(hierarchy)):
        for ancestor in hierarchy.ancestors(node):
            assert not (predicted[:, node] & ~predicted[:, ancestor]).any()
    evaluated = hierarchy.evaluated
    if rule == "closure":  # every passing node is in, and nothing that no passing node explains
        assert (predicted[:, evaluated] >= passing[:, evaluated]).all()
        for sample, node in zip(*np.nonzero(predicted & evaluated[None, :]), strict=True):
            below = hierarchy.descendants(node, include_self=True)
            assert passing[sample, below].any()
    else:  # a node is in exactly when it and all its evaluated ancestors pass
        for node in np.flatnonzero(evaluated):
            chain = [a for a in hierarchy.ancestors(node, include_self=True) if evaluated[a]]
            assert (predicted[:, node] == passing[:, chain].all(axis=1)).all()


@settings(max_examples=40, deadline=None)
@given(dags(min_nodes=2, max_nodes=10), st.integers(0, 2**16))
def test_fixed_decision_is_the_plain_threshold_under_both_rules(hierarchy, seed):
    probabilities = coherent(hierarchy, np.random.default_rng(seed))
    expected = probabilities >= 0.5
    for rule in ("closure", "gated"):
        decision = fixed_decision(hierarchy)
        decision.rule = rule
        predicted = decision.predict(probabilities, hierarchy)
        assert (predicted[:, hierarchy.evaluated] == expected[:, hierarchy.evaluated]).all()


def small_tree() -> Hierarchy:
    return Hierarchy.from_paths(["A > A1", "A > A2", "B > B1", "B > B2"])


def test_borrowing_happens_exactly_below_the_positive_count():
    hierarchy = small_tree()
    rng = np.random.default_rng(0)
    samples = 200
    targets = np.zeros((samples, len(hierarchy)), dtype=np.float32)
    leaf = {name: hierarchy.index(name) for name in ("A > A1", "A > A2", "B > B1", "B > B2")}
    counts = {"A > A1": 60, "A > A2": 5, "B > B1": 4, "B > B2": 40}  # A2 at the limit, B1 one below
    row = 0
    for name, count in counts.items():
        for _ in range(count):
            targets[row, leaf[name]] = 1
            targets[row, hierarchy.parents[leaf[name]][0]] = 1
            row += 1
    probabilities = np.clip(targets * 0.6 + rng.uniform(0, 0.5, targets.shape), 0, 1)
    probabilities = coherent_from(probabilities, hierarchy)
    decision = fit_decision(probabilities, targets, None, hierarchy, "f1", min_positives=5)
    assert decision.sources[leaf["A > A2"]] == "fitted"  # exactly 5: fitted
    assert decision.sources[leaf["B > B1"]] == "depth"  # 4: borrowed from its depth
    assert decision.sources[leaf["A > A1"]] == "fitted"
    assert list(decision.positives[[leaf[n] for n in counts]]) == list(counts.values())
    depth_only = fit_decision(probabilities, targets, None, hierarchy, "depth")
    assert decision.thresholds[leaf["B > B1"]] == depth_only.thresholds[leaf["B > B1"]]
    strict = fit_decision(probabilities, targets, None, hierarchy, "f1", min_positives=66)  # A has 65
    assert set(np.array(strict.sources)[hierarchy.evaluated]) <= {"depth", "global", "fixed"}


def coherent_from(probabilities: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    out = probabilities.copy()
    for node in reversed(hierarchy.topological_order):
        for parent in hierarchy.parents[node]:
            out[:, parent] = np.maximum(out[:, parent], out[:, node])
    return out


def test_records_round_trip_and_bad_records_are_refused():
    hierarchy = small_tree()
    probabilities = coherent_from(np.random.default_rng(1).uniform(size=(50, len(hierarchy))), hierarchy)
    targets = (probabilities > 0.6).astype(np.float32)
    decision = fit_decision(
        probabilities, targets, None, hierarchy, "precision", precision=0.9, fitted_on="val: 50"
    )
    again = Decision.from_record(decision.to_record(), hierarchy)
    assert (again.predict(probabilities, hierarchy) == decision.predict(probabilities, hierarchy)).all()
    assert "precision (P >= 0.9, fit on val: 50, min 5 positives), closure" == again.describe()
    with pytest.raises(ValueError, match="policy 'median' is not one of"):
        Decision.from_record({**decision.to_record(), "policy": "median"}, hierarchy, "C.pt")
    with pytest.raises(ValueError, match="was fit for another hierarchy"):
        Decision.from_record(decision.to_record(), Hierarchy.from_paths(["A > B"]), "C.pt")
    with pytest.raises(ValueError, match="no positive for any evaluated node"):
        fit_decision(probabilities, np.zeros_like(targets), None, hierarchy)


def test_abstain_is_an_explicit_outcome():
    hierarchy = small_tree()
    predicted = np.zeros((2, len(hierarchy)), dtype=bool)
    predicted[1, [hierarchy.index("A"), hierarchy.index("A > A2")]] = True
    assert outcomes(predicted, hierarchy) == [["abstain"], ["A > A2"]]


@settings(max_examples=40, deadline=None)
@given(dags(min_nodes=2, max_nodes=9, max_parents=1), st.integers(0, 2**16))
def test_taxonomic_distance_equals_shortest_paths_on_trees(hierarchy, seed):
    """On a tree the hops through the nearest common ancestor are the shortest path in the undirected
    tree with an implicit root above the roots: checked against a breadth-first search."""
    from collections import deque

    from seabed_hmc.metrics import taxonomic_distance

    rng = np.random.default_rng(seed)
    probabilities = coherent(hierarchy, rng)
    predicted = probabilities >= rng.uniform(0.2, 0.8)
    targets = coherent(hierarchy, rng) >= 0.5
    top = len(hierarchy)
    edges = {i: set() for i in range(top + 1)}
    for child, parents in enumerate(hierarchy.parents):
        for parent in parents or (top,):
            edges[child].add(parent)
            edges[parent].add(child)

    def hops(a, b):
        seen, queue = {a: 0}, deque([a])
        while queue:
            node = queue.popleft()
            for other in edges[node] - seen.keys():
                seen[other] = seen[node] + 1
                queue.append(other)
        return seen[b]

    expected = []
    for truth_row, guess_row in zip(hierarchy.decode(targets), hierarchy.decode(predicted), strict=True):
        if not truth_row:
            continue
        guessed = [hierarchy.index(name) for name in guess_row] or [top]
        expected.append(np.mean([min(hops(hierarchy.index(t), g) for g in guessed) for t in truth_row]))
    value = taxonomic_distance(predicted, targets.astype(np.float32), None, hierarchy)
    assert value == pytest.approx(np.mean(expected)) if expected else np.isnan(value)


def test_platt_scaling_recovers_a_known_miscalibration_and_lowers_the_ece():
    from scipy.optimize import minimize

    from seabed_hmc.calibration import expected_calibration_error, fit_calibration

    hierarchy = Hierarchy.from_paths(["A", "B", "C"])  # flat: the max-constraint changes nothing here
    rng = np.random.default_rng(0)
    truth_logits = rng.normal(0, 1.5, size=(4000, len(hierarchy)))
    targets = (rng.uniform(size=truth_logits.shape) < 1 / (1 + np.exp(-truth_logits))).astype(np.float32)
    shown = 1 / (1 + np.exp(-(2.0 * truth_logits + 1.0)))  # overconfident and shifted: a = 0.5, b = -0.5
    calibration = fit_calibration(shown, targets, None, hierarchy, "platt")
    assert calibration.scale == pytest.approx(np.full(len(hierarchy), 0.5), abs=0.05)
    assert calibration.bias == pytest.approx(np.full(len(hierarchy), -0.5), abs=0.08)
    # the Newton fit equals a general-purpose minimiser of the same objective on one node
    z, y = np.log(shown[:, 0] / (1 - shown[:, 0])), targets[:, 0]

    def loss(params):
        p = 1 / (1 + np.exp(-(params[0] * z + params[1])))
        return -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)) + 5e-4 * (
            (params[0] - 1) ** 2 + params[1] ** 2
        )

    best = minimize(loss, [1.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10}).x
    assert [calibration.scale[0], calibration.bias[0]] == pytest.approx(best, abs=1e-3)
    before = expected_calibration_error(shown, targets, None, hierarchy)
    after = expected_calibration_error(calibration.apply(shown, hierarchy), targets, None, hierarchy)
    assert after < before / 3
    temperature = fit_calibration(shown, targets, None, hierarchy, "temperature")
    assert (temperature.bias == 0).all() and (temperature.scale < 1).all()


@settings(max_examples=30, deadline=None)
@given(dags(min_nodes=2, max_nodes=10), st.integers(0, 2**16))
def test_calibrated_probabilities_stay_coherent(hierarchy, seed):
    from seabed_hmc.calibration import Calibration

    rng = np.random.default_rng(seed)
    calibration = Calibration(
        "platt",
        rng.uniform(0.2, 3, len(hierarchy)),
        rng.normal(0, 1, len(hierarchy)),
        np.ones(len(hierarchy), bool),
    )
    calibrated = calibration.apply(coherent(hierarchy, rng), hierarchy)
    for node in range(len(hierarchy)):
        for ancestor in hierarchy.ancestors(node):
            assert (calibrated[:, ancestor] >= calibrated[:, node] - 1e-12).all()


def test_a_policy_that_does_not_exist_is_refused_where_it_is_written(tmp_path):
    from seabed_hmc.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"decision.policy \(--set overrides\): 'median' is not one of"):
        load_config(None, ["decision.policy=median"])
    config = tmp_path / "run.yaml"
    config.write_text("decision:\n  rule: top_down\n")
    with pytest.raises(ConfigError, match=rf"decision.rule in {config}: 'top_down' is not one of"):
        load_config(config)
