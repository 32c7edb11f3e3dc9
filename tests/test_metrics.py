"""Metrics: hand-worked examples, agreement with scikit-learn / scipy, and mask invariance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.metrics import (
    depth_scores,
    evaluate_predictions,
    hierarchical_scores,
    macro_node_scores,
    micro_average_precision,
    node_scores,
    rare_node_average_precision,
    rare_node_recall,
    rare_nodes,
)
from seabed_hmc.significance import holm_bonferroni, paired_wilcoxon

# A (root, not evaluated) -> B -> D, A -> C -> E.   Indices: A0 B1 C2 D3 E4; depths 0 1 1 2 2.
NODES = ["A", "A > B", "A > C", "A > B > D", "A > C > E"]
PARENTS = [[], ["A"], ["A"], ["A > B"], ["A > C"]]

#                     A  B  C  D  E
TARGETS = np.array(
    [
        [1, 1, 0, 1, 0],  # s0: D (closed: A, B, D)
        [1, 1, 0, 0, 0],  # s1: B
        [1, 0, 1, 0, 0],  # s2: C
        [1, 1, 0, 0, 0],  # s3: B
    ],
    dtype=np.float32,
)
PREDICTED = np.array(
    [
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 1],
        [1, 0, 0, 0, 0],
        [1, 0, 0, 0, 0],
    ],
    dtype=bool,
)


@pytest.fixture
def tree() -> Hierarchy:
    return Hierarchy(NODES, PARENTS)


def random_tree(nodes: int, rng: np.random.Generator) -> Hierarchy:
    """A random tree: node 0 is the single (excluded) root, node i's parent is some j < i."""
    names = [f"n{i}" for i in range(nodes)]
    parents = [[]] + [[int(rng.integers(0, i))] for i in range(1, nodes)]
    return Hierarchy(names, parents)


def random_problem(samples: int, nodes: int, seed: int, decimals: int | None = None):
    """Random hierarchy, closed targets, coherent-ish probabilities and a partial mask."""
    rng = np.random.default_rng(seed)
    hierarchy = random_tree(nodes, rng)
    leaves = rng.integers(0, nodes, size=samples)
    targets, _ = hierarchy.encode([[int(i)] for i in leaves])
    targets = targets.numpy()
    probabilities = np.clip(0.6 * targets + 0.6 * rng.random((samples, nodes)), 0, 1)
    if decimals is not None:
        probabilities = np.round(probabilities, decimals)
    mask = (rng.random((samples, nodes)) > 0.2).astype(np.float32)
    return hierarchy, probabilities, targets, mask


# ---------------------------------------------------------------------------------------- node scores
def test_node_scores_hand_example(tree):
    scores = node_scores(PREDICTED, TARGETS, None, tree)
    # B: targets 1,1,0,1 / predicted 1,1,0,0 -> TP 2, FP 0, FN 1: P = 1, R = 2/3, F1 = 2(2/3)/(5/3) = 0.8
    # C: targets 0,0,1,0 / predicted 0,1,0,0 -> TP 0, FP 1, FN 1: P = R = F1 = 0
    # D: targets 1,0,0,0 / never predicted -> P = 0/0 -> 0, R = 0, F1 = 0
    # E: no positives, predicted once -> P = 0/1 = 0, R = 0/0 -> 0, F1 = 0
    # A: always on and always predicted -> 1, 1, 1 (reported, but not evaluated)
    np.testing.assert_allclose(scores.precision, [1, 1, 0, 0, 0])
    np.testing.assert_allclose(scores.recall, [1, 2 / 3, 0, 0, 0])
    np.testing.assert_allclose(scores.f1, [1, 0.8, 0, 0, 0])
    np.testing.assert_array_equal(scores.support, [4, 3, 1, 1, 0])
    np.testing.assert_array_equal(scores.true_positives, [4, 2, 0, 0, 0])
    np.testing.assert_array_equal(scores.predicted_positives, [4, 2, 1, 0, 1])
    np.testing.assert_array_equal(scores.evaluated, [False, True, True, True, True])
    np.testing.assert_array_equal(scores.supported, [False, True, True, True, False])


def test_macro_all_versus_supported(tree):
    macro = macro_node_scores(PREDICTED, TARGETS, None, tree)
    # all evaluated (B, C, D, E): P = (1+0+0+0)/4, R = (2/3)/4, F1 = 0.8/4
    # supported (B, C, D; E has no positives): P = 1/3, R = (2/3)/3 = 2/9, F1 = 0.8/3
    expected = {
        "precision_all": 0.25,
        "recall_all": 1 / 6,
        "f1_all": 0.2,
        "precision_supported": 1 / 3,
        "recall_supported": 2 / 9,
        "f1_supported": 0.8 / 3,
    }
    for key, value in expected.items():
        assert macro[key] == pytest.approx(value), key
    assert (macro["nodes_all"], macro["nodes_supported"]) == (4, 3)


def test_non_evaluated_root_is_excluded(tree):
    with_root = macro_node_scores(PREDICTED, TARGETS, None, tree.with_excluded([]))
    # including A (P = R = F1 = 1): P = (1+1)/5 = 0.4, R = (1 + 2/3)/5 = 1/3
    assert with_root["precision_all"] == pytest.approx(0.4)
    assert with_root["recall_all"] == pytest.approx(1 / 3)
    assert with_root["nodes_all"] == 5
    assert macro_node_scores(PREDICTED, TARGETS, None, tree)["precision_all"] == pytest.approx(0.25)
    # without a hierarchy, every column counts
    assert macro_node_scores(PREDICTED, TARGETS)["nodes_all"] == 5


def test_masked_entry_is_not_counted(tree):
    mask = np.ones_like(TARGETS)
    mask[0, 1] = 0  # hide s0's B, a true positive
    scores = node_scores(PREDICTED, TARGETS, mask, tree)
    # B now: TP 1 (s1), FP 0, FN 1 (s3): P = 1, R = 1/2, F1 = 2/3
    assert scores.precision[1] == pytest.approx(1.0)
    assert scores.recall[1] == pytest.approx(0.5)
    assert scores.f1[1] == pytest.approx(2 / 3)
    assert scores.support[1] == 2


def test_node_scores_reject_probabilities(tree):
    with pytest.raises(ValueError, match="threshold"):
        node_scores(PREDICTED * 0.7, TARGETS, None, tree)
    with pytest.raises(ValueError, match="hierarchy has 5 nodes"):
        node_scores(PREDICTED[:, :4], TARGETS[:, :4], None, tree)


def test_node_scores_match_sklearn():
    hierarchy, probabilities, targets, mask = random_problem(300, 25, seed=1)
    mask[:, :10] = 1  # the first ten columns fully known
    predicted = probabilities >= 0.5
    scores = node_scores(predicted, targets, mask, hierarchy)
    precision, recall, f1, support = precision_recall_fscore_support(
        targets[:, :10].astype(int), predicted[:, :10].astype(int), average=None, zero_division=0
    )
    np.testing.assert_allclose(scores.precision[:10], precision)
    np.testing.assert_allclose(scores.recall[:10], recall)
    np.testing.assert_allclose(scores.f1[:10], f1)
    np.testing.assert_array_equal(scores.support[:10], support)
    for node in range(10, 25):  # partially known columns: sklearn on the known rows only
        known = mask[:, node] > 0
        p, r, f, _ = precision_recall_fscore_support(
            targets[known, node], predicted[known, node], average="binary", zero_division=0
        )
        assert (scores.precision[node], scores.recall[node], scores.f1[node]) == pytest.approx((p, r, f))


# ---------------------------------------------------------------------------------------- AU(PRC)
def test_micro_average_precision_hand_example():
    hierarchy = Hierarchy(["root", "x", "y"], [[], ["root"], ["root"]])
    # evaluated entries (x, y) of two samples, scores 0.9 0.8 / 0.8 0.1, truths 1 0 / 1 0.
    # thresholds: 0.9 -> TP 1, 1 entry: P = 1, R = 1/2; 0.8 (tie) -> TP 2, 3 entries: P = 2/3, R = 1;
    # AP = (1/2)(1) + (1/2)(2/3) = 5/6.  The root column (score 0, target 1) must be ignored.
    probabilities = np.array([[0.0, 0.9, 0.8], [0.0, 0.8, 0.1]])
    targets = np.array([[1, 1, 0], [1, 1, 0]])
    assert micro_average_precision(probabilities, targets, None, hierarchy) == pytest.approx(5 / 6)


@pytest.mark.parametrize("decimals", [None, 1])
def test_micro_average_precision_matches_sklearn(decimals):
    hierarchy, probabilities, targets, mask = random_problem(400, 30, seed=2, decimals=decimals)
    if decimals is not None:
        assert np.unique(probabilities).size <= 11  # many ties
    selected = (mask > 0) & hierarchy.evaluated[None, :]
    expected = average_precision_score(targets[selected], probabilities[selected], average="micro")
    assert micro_average_precision(probabilities, targets, mask, hierarchy) == pytest.approx(
        expected, abs=1e-12
    )
    as_tensors = micro_average_precision(
        torch.from_numpy(probabilities.astype(np.float32)),
        torch.from_numpy(targets),
        torch.from_numpy(mask),
        hierarchy,
    )
    expected32 = average_precision_score(targets[selected], probabilities.astype(np.float32)[selected])
    assert as_tensors == pytest.approx(expected32, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.integers(0, 4), min_size=2, max_size=30),
    truth_seed=st.integers(0, 2**32 - 1),
)
def test_micro_average_precision_matches_sklearn_property(scores, truth_seed):
    truth = np.random.default_rng(truth_seed).integers(0, 2, size=len(scores))
    truth[0] = 1
    hierarchy = Hierarchy(["root"] + [f"n{i}" for i in range(len(scores))], [[]] + [["root"]] * len(scores))
    probabilities = np.concatenate([[0.5], np.asarray(scores) / 4])[None, :]
    targets = np.concatenate([[1], truth])[None, :]
    expected = average_precision_score(truth, probabilities[0, 1:])
    assert micro_average_precision(probabilities, targets, None, hierarchy) == pytest.approx(
        expected, abs=1e-12
    )


def test_micro_average_precision_without_positives_is_nan(tree):
    targets = np.zeros_like(TARGETS)
    targets[:, 0] = 1  # only the non-evaluated root is on
    assert math.isnan(micro_average_precision(np.full(TARGETS.shape, 0.3), targets, None, tree))


def test_micro_average_precision_rejects_nan_scores(tree):
    probabilities = np.full(TARGETS.shape, 0.3)
    probabilities[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        micro_average_precision(probabilities, TARGETS, None, tree)
    mask = np.ones_like(TARGETS)
    mask[1, 2] = 0  # a NaN in an unknown entry is ignored
    assert micro_average_precision(probabilities, TARGETS, mask, tree) == pytest.approx(
        average_precision_score(TARGETS[:, 1:][mask[:, 1:] > 0], np.full(15, 0.3))
    )


# ---------------------------------------------------------------------------------------- per depth
def test_depth_scores_hand_example(tree):
    table = depth_scores(PREDICTED, TARGETS, None, tree)
    assert table["depth"].tolist() == [1, 2]  # the root (depth 0) is not evaluated
    depth1, depth2 = table.iloc[0], table.iloc[1]
    # depth 1 = B, C: P = (1+0)/2, R = (2/3+0)/2, F1 = (0.8+0)/2; both supported
    assert (depth1.nodes_all, depth1.nodes_supported) == (2, 2)
    assert (depth1.precision_all, depth1.recall_all, depth1.f1_all) == pytest.approx((0.5, 1 / 3, 0.4))
    assert depth1.recall_supported == pytest.approx(1 / 3)
    # depth 2 = D, E: all zeros; only D has support
    assert (depth2.nodes_all, depth2.nodes_supported) == (2, 1)
    assert (depth2.precision_all, depth2.recall_all, depth2.f1_all) == (0, 0, 0)
    assert depth2.recall_supported == 0


def test_depth_without_supported_nodes_is_nan(tree):
    mask = np.ones_like(TARGETS)
    mask[0, 3] = 0  # D's only positive becomes unknown; E has none: depth 2 has no supported node
    table = depth_scores(PREDICTED, TARGETS, mask, tree)
    assert table.iloc[1].nodes_supported == 0
    assert math.isnan(table.iloc[1].recall_supported)
    assert table.iloc[1].recall_all == 0


# ---------------------------------------------------------------------------------------- rare nodes
def test_rare_node_selection_breaks_ties_by_index(tree):
    #                  A    B  C   D  E
    counts = np.array([100, 3, 20, 3, 3])
    # K = 4 evaluated nodes, ceil(4/3) = 2 rare: B, D, E tie at 3 -> the two lowest indices, B and D
    np.testing.assert_array_equal(rare_nodes(tree, counts), [1, 3])
    result = rare_node_recall(PREDICTED, TARGETS, None, tree, counts)
    # recall B = 2/3, D = 0 -> (2/3 + 0)/2
    assert result.recall == pytest.approx(1 / 3)
    assert result.nodes_supported == 2
    # fraction 1: all four, E has no test positive so it is left out: (2/3 + 0 + 0)/3
    everything = rare_node_recall(PREDICTED, TARGETS, None, tree, counts, fraction=1.0)
    np.testing.assert_array_equal(everything.nodes, [1, 3, 4, 2])
    assert everything.recall == pytest.approx(2 / 9)
    assert everything.nodes_supported == 3


def test_rare_node_recall_without_support_is_nan(tree):
    counts = np.array([100, 50, 40, 30, 1])  # E is the rarest
    result = rare_node_recall(PREDICTED, TARGETS, None, tree, counts, fraction=0.25)
    np.testing.assert_array_equal(result.nodes, [4])
    assert math.isnan(result.recall) and result.nodes_supported == 0


def test_rare_node_average_precision_ranks_without_a_threshold(tree):
    counts = np.array([100, 50, 40, 3, 3])  # D and E rarest: ceil(4/3) = 2 rare nodes
    # nothing crosses 0.5 at D, so recall is 0, but D's one positive (s0) is ranked first: AP 1
    probabilities = np.array(
        [
            [1.0, 0.9, 0.1, 0.40, 0.2],
            [1.0, 0.8, 0.1, 0.10, 0.3],
            [1.0, 0.1, 0.9, 0.20, 0.1],
            [1.0, 0.7, 0.1, 0.30, 0.4],
        ]
    )
    assert rare_node_recall(probabilities >= 0.5, TARGETS, None, tree, counts).recall == 0
    assert rare_node_average_precision(probabilities, TARGETS, None, tree, counts) == 1.0
    # ranked last of four: AP = precision at the only positive = 1/4; E has no positive, left out
    worse = probabilities.copy()
    worse[0, 3] = 0.05
    assert rare_node_average_precision(worse, TARGETS, None, tree, counts) == pytest.approx(0.25)
    # hide s1 and s3 at D: the positive is ranked last of the two known entries, AP = 1/2
    mask = np.ones_like(TARGETS)
    mask[[1, 3], 3] = 0
    assert rare_node_average_precision(worse, TARGETS, mask, tree, counts) == pytest.approx(0.5)
    # no rare node with a known positive: nan, as for rare-node recall
    assert math.isnan(
        rare_node_average_precision(probabilities, TARGETS, None, tree, [100, 50, 40, 30, 1], 0.25)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rare_node_average_precision_matches_sklearn(seed):
    hierarchy, probabilities, targets, mask = random_problem(120, 30, seed=seed, decimals=1)  # ties
    counts = np.random.default_rng(seed).integers(0, 40, size=30)
    chosen = rare_nodes(hierarchy, counts)
    expected = []
    for node in chosen:
        rows = mask[:, node] > 0
        if targets[rows, node].any():
            expected.append(average_precision_score(targets[rows, node], probabilities[rows, node]))
    assert len(expected) >= 5
    result = rare_node_average_precision(probabilities, targets, mask, hierarchy, counts)
    assert result == pytest.approx(np.mean(expected), abs=1e-12)


def test_rare_node_count_is_not_inflated_by_rounding():
    hierarchy = Hierarchy(["root"] + [f"n{i}" for i in range(300)], [[]] + [["root"]] * 300)
    assert rare_nodes(hierarchy, np.arange(301)).size == 100  # (1/3) * 300 -> 100, not 101
    assert rare_nodes(hierarchy, np.arange(301), fraction=0.101).size == 31  # ceil(30.3)


# ---------------------------------------------------------------------------------------- hierarchical
def test_hierarchical_scores_close_predictions_and_targets(tree):
    targets = np.array(
        [
            [0, 0, 0, 1, 0],  # s0: D only, not closed: closure gives B, D among evaluated nodes
            [1, 1, 0, 0, 0],  # s1: B
            [1, 0, 1, 0, 0],  # s2: C
            [1, 1, 0, 0, 0],  # s3: B
        ]
    )
    predicted = np.array(
        [
            [0, 0, 0, 1, 0],  # D -> {B, D}: overlap 2, |P| 2, |T| 2
            [0, 0, 0, 0, 1],  # E -> {C, E} vs {B}: overlap 0, |P| 2, |T| 1
            [0, 0, 1, 0, 0],  # C vs C: 1, 1, 1
            [1, 1, 0, 0, 0],  # B vs B: 1, 1, 1
        ]
    )
    # hP = 4/6, hR = 4/5, hF = 2 (2/3)(4/5) / (2/3 + 4/5) = 8/11
    result = hierarchical_scores(predicted, targets, None, tree)
    assert result["hierarchical_precision"] == pytest.approx(2 / 3)
    assert result["hierarchical_recall"] == pytest.approx(0.8)
    assert result["hierarchical_f1"] == pytest.approx(8 / 11)
    # hiding s1's C and E (unknown) removes that sample's wrong predictions: hP = 4/4, hR = 4/5
    mask = np.ones_like(targets)
    mask[1, [2, 4]] = 0
    masked = hierarchical_scores(predicted, targets, mask, tree)
    assert masked["hierarchical_precision"] == pytest.approx(1.0)
    assert masked["hierarchical_recall"] == pytest.approx(0.8)


def test_hierarchical_scores_without_predictions_are_zero(tree):
    result = hierarchical_scores(np.zeros_like(PREDICTED), TARGETS, None, tree)
    assert result == {"hierarchical_precision": 0.0, "hierarchical_recall": 0.0, "hierarchical_f1": 0.0}


# ---------------------------------------------------------------------------------------- headline + mask
def test_evaluate_predictions_is_flat_json_and_consistent():
    hierarchy, probabilities, targets, mask = random_problem(200, 20, seed=3)
    counts = np.arange(20)[::-1]
    result = evaluate_predictions(probabilities, targets, mask, hierarchy, train_counts=counts)
    json.dumps(result)
    assert all(type(value) in (int, float) for value in result.values())
    predicted = probabilities >= 0.5
    assert result["au_prc"] == micro_average_precision(probabilities, targets, mask, hierarchy)
    assert result["f1_all"] == macro_node_scores(predicted, targets, mask, hierarchy)["f1_all"]
    assert result["rare_node_recall"] == rare_node_recall(predicted, targets, mask, hierarchy, counts).recall
    assert result["rare_nodes"] == 7  # ceil(19 / 3)
    assert result["rare_node_ap"] == rare_node_average_precision(
        probabilities, targets, mask, hierarchy, counts
    )
    table = depth_scores(predicted, targets, mask, hierarchy)
    for row in table.itertuples():
        assert result[f"recall_depth_{row.depth}"] == row.recall_all
    assert "rare_node_recall" not in evaluate_predictions(probabilities, targets, mask, hierarchy)


def test_masked_entries_change_nothing():
    hierarchy, probabilities, targets, mask = random_problem(150, 20, seed=4)
    counts = np.random.default_rng(0).integers(0, 50, size=20)
    before = evaluate_predictions(probabilities, targets, mask, hierarchy, train_counts=counts)
    rng = np.random.default_rng(5)
    hidden = mask == 0
    changed_probabilities = np.where(hidden, rng.random(mask.shape), probabilities)
    changed_targets = np.where(hidden, np.nan, targets)  # unknown targets may be anything, even NaN
    after = evaluate_predictions(changed_probabilities, changed_targets, mask, hierarchy, train_counts=counts)
    np.testing.assert_equal(after, before)  # exact equality, NaN == NaN
    flipped = np.where(hidden, 1 - targets, targets)
    np.testing.assert_equal(
        evaluate_predictions(probabilities, flipped, mask, hierarchy, train_counts=counts), before
    )


# ---------------------------------------------------------------------------------------- significance
def test_paired_wilcoxon_matches_scipy():
    method = np.array([0.61, 0.58, 0.66, 0.70, 0.55, 0.63, 0.60, 0.68])
    control = np.array([0.57, 0.59, 0.60, 0.64, 0.50, 0.62, 0.55, 0.61])
    for alternative in ("two-sided", "greater"):
        result = paired_wilcoxon(method, control, alternative)
        expected = stats.wilcoxon(method, control, alternative=alternative)
        assert result.statistic == pytest.approx(expected.statistic)
        assert result.p_value == pytest.approx(expected.pvalue)
    assert result.n == 8 and result.dropped == 0 and result.note == ""
    assert result.mean_difference == pytest.approx(np.mean(method - control))
    assert result.median_difference == pytest.approx(np.median(method - control))


def test_paired_wilcoxon_edge_cases():
    dropped = paired_wilcoxon([0.5, np.nan, 0.7, 0.9], [0.4, 0.3, np.nan, 0.8])
    assert (dropped.n, dropped.dropped) == (2, 2)
    assert dropped.mean_difference == pytest.approx(0.1)
    single = paired_wilcoxon([0.5, np.nan], [0.4, 0.2])
    assert single.n == 1 and math.isnan(single.p_value) and "at least 2" in single.note
    same = paired_wilcoxon([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same.p_value == 1.0 and same.median_difference == 0
    empty = paired_wilcoxon([], [])
    assert empty.n == 0 and math.isnan(empty.mean_difference)
    with pytest.raises(ValueError, match="paired"):
        paired_wilcoxon([1, 2, 3], [1, 2])


def test_holm_bonferroni_known_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    adjusted = holm_bonferroni([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    # capped at 1; NaN stays NaN and does not count in m (m = 2): 0.5*2 = 1.0, 0.6*1 -> max 1.0
    np.testing.assert_allclose(holm_bonferroni([0.5, np.nan, 0.6]), [1.0, np.nan, 1.0])
