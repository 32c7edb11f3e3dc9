"""max_constraint and the MCLoss inputs against brute force on random trees and DAGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seabed_hmc.constraint import argmax_descendant, max_constraint, mcloss_inputs
from seabed_hmc.hierarchy import Hierarchy
from tests.strategies import dags, trees

hierarchies = st.one_of(trees(), dags())
methods = st.sampled_from(["levels", "pairs", "auto"])


def brute_force_max(scores: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    out = np.empty_like(scores)
    for i in range(len(hierarchy)):
        out[..., i] = scores[..., hierarchy.descendants(i, include_self=True)].max(axis=-1)
    return out


def random_scores(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(
    hierarchy=hierarchies,
    seed=st.integers(0, 2**31),
    leading=st.sampled_from([(), (3,), (2, 4)]),
    method=methods,
)
def test_max_constraint_equals_brute_force(hierarchy, seed, leading, method):
    scores = random_scores(seed, (*leading, len(hierarchy)))
    result = max_constraint(torch.from_numpy(scores), hierarchy, method).numpy()
    np.testing.assert_array_equal(result, brute_force_max(scores, hierarchy))


@settings(max_examples=60, deadline=None)
@given(hierarchy=hierarchies, seed=st.integers(0, 2**31), method=methods)
def test_outputs_are_coherent(hierarchy, seed, method):
    probabilities = torch.sigmoid(torch.from_numpy(random_scores(seed, (5, len(hierarchy)))))
    result = max_constraint(probabilities, hierarchy, method)
    for child, parents in enumerate(hierarchy.parents):
        for parent in parents:
            assert torch.all(result[:, parent] >= result[:, child])
    assert torch.all(result >= probabilities)


@settings(max_examples=60, deadline=None)
@given(hierarchy=hierarchies, seed=st.integers(0, 2**31), method=methods)
def test_gradient_flows_to_the_maximising_descendant(hierarchy, seed, method):
    scores = random_scores(seed, (3, len(hierarchy)))  # continuous: no ties
    upstream = random_scores(seed + 1, scores.shape)
    x = torch.from_numpy(scores).requires_grad_(True)
    (max_constraint(x, hierarchy, method) * torch.from_numpy(upstream)).sum().backward()
    expected = np.zeros_like(scores)
    for row in range(scores.shape[0]):
        for i in range(len(hierarchy)):
            members = hierarchy.descendants(i, include_self=True)
            winner = members[int(np.argmax(scores[row, members]))]
            expected[row, winner] += upstream[row, i]
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6, atol=1e-6)


def brute_force_mcloss_inputs(logits: np.ndarray, targets: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """z_i = (1 - y_i) max_{D(i)} h_j + y_i max_{j in D(i), y_j = 1} h_j, element by element."""
    z = np.empty_like(logits)
    for index in np.ndindex(*logits.shape[:-1]):
        y = targets[index[-1]] if targets.ndim == 2 else targets
        for i in range(len(hierarchy)):
            members = hierarchy.descendants(i, include_self=True)
            if y[i] == 1:
                z[index + (i,)] = max(logits[index + (j,)] for j in members if y[j] == 1)
            else:
                z[index + (i,)] = max(logits[index + (j,)] for j in members)
    return z


def random_closed_targets(hierarchy: Hierarchy, seed: int, samples: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    labels = [[int(i) for i in np.flatnonzero(rng.random(len(hierarchy)) < 0.3)] for _ in range(samples)]
    targets, _ = hierarchy.encode(labels)
    return targets


@settings(max_examples=50, deadline=None)
@given(hierarchy=hierarchies, seed=st.integers(0, 2**31))
def test_mcloss_inputs_equal_the_formula(hierarchy, seed):
    logits = random_scores(seed, (2, 4, len(hierarchy)))  # (heads, batch, nodes)
    targets = random_closed_targets(hierarchy, seed, 4)
    z = mcloss_inputs(torch.from_numpy(logits), targets, hierarchy).numpy()
    np.testing.assert_array_equal(z, brute_force_mcloss_inputs(logits, targets.numpy(), hierarchy))


@settings(max_examples=30, deadline=None)
@given(hierarchy=hierarchies, seed=st.integers(0, 2**31))
def test_mcloss_inputs_match_the_probability_form(hierarchy, seed):
    """In probability space the METHOD.md formula max(y_j * h_j) is literal (h >= 0)."""
    logits = torch.from_numpy(random_scores(seed, (4, len(hierarchy))))
    targets = random_closed_targets(hierarchy, seed, 4)
    probabilities = torch.sigmoid(logits)
    literal = np.empty((4, len(hierarchy)), dtype=np.float32)
    p, y = probabilities.numpy(), targets.numpy()
    for b in range(4):
        for i in range(len(hierarchy)):
            members = hierarchy.descendants(i, include_self=True)
            literal[b, i] = (1 - y[b, i]) * p[b, members].max() + y[b, i] * (
                y[b, members] * p[b, members]
            ).max()
    z = torch.sigmoid(mcloss_inputs(logits, targets, hierarchy)).numpy()
    np.testing.assert_allclose(z, literal, rtol=1e-6)


def test_mcloss_gradient_of_positive_node_avoids_negative_descendants():
    # A > B (positive), A > C (negative, high score): z_A must come from B, not from C.
    h = Hierarchy(["A", "A > B", "A > C"], [[], ["A"], ["A"]], excluded=[])
    logits = torch.tensor([[0.0, 1.0, 5.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 1.0, 0.0]])
    z = mcloss_inputs(logits, targets, h)
    assert z.tolist() == [[1.0, 1.0, 5.0]]
    z[0, 0].backward()
    assert logits.grad.tolist() == [[0.0, 1.0, 0.0]]


@pytest.mark.parametrize("method", ["levels", "pairs"])
def test_hand_example_and_argmax(method):
    h = Hierarchy(["A", "A > B", "A > C", "A > B > D"], [[], ["A"], ["A"], ["A > B"]])
    scores = torch.tensor([0.1, 0.2, 0.3, 0.9])
    assert max_constraint(scores, h, method).tolist() == pytest.approx([0.9, 0.9, 0.3, 0.9])
    assert argmax_descendant(scores, h, method).tolist() == [3, 3, 2, 3]
    with pytest.raises(ValueError, match="method must be one of"):
        max_constraint(scores, h, "dense")


def test_methods_agree_with_infinities_and_nan_rows_stay_in_range():
    h = Hierarchy(["A", "A > B", "A > C", "A > B > D"], [[], ["A"], ["A"], ["A > B"]])
    scores = torch.tensor([[float("-inf"), 1.0, float("-inf"), float("-inf")], [float("nan"), 0.0, 1.0, 2.0]])
    for method in ("levels", "pairs"):
        index = argmax_descendant(scores, h, method)
        assert index.min() >= 0 and index.max() < 4
        assert max_constraint(scores, h, method)[0].tolist() == [1.0, 1.0, float("-inf"), float("-inf")]


def test_empty_batch_and_wrong_width():
    h = Hierarchy(["A", "A > B"], [[], ["A"]])
    assert max_constraint(torch.zeros(0, 2), h).shape == (0, 2)
    with pytest.raises(ValueError, match="the hierarchy has 2"):
        max_constraint(torch.zeros(3, 5), h)


def test_large_dag_runs_without_dense_memory():
    """A 3,000-node random DAG with 20 heads x 64 samples: dense would need ~46 GB."""
    rng = np.random.default_rng(0)
    n = 3000
    parents = [[]] + [
        sorted(set(rng.integers(max(0, i - 300), i, size=rng.integers(1, 4)).tolist())) for i in range(1, n)
    ]
    h = Hierarchy([f"n{i}" for i in range(n)], parents)
    x = torch.randn(20, 64, n, requires_grad=True)
    out = max_constraint(x, h, "auto")  # large: the levels method
    out.sum().backward()
    sample = rng.integers(0, n, size=20)
    for i in sample:
        members = h.descendants(int(i), include_self=True)
        assert torch.equal(out[:, :, i], x[:, :, members].max(dim=-1).values)
    assert x.grad.sum().item() == pytest.approx(20 * 64 * n)


@pytest.mark.parametrize("shape", [(4,), (1, 4), (4, 1, 4), (2, 3, 4)])
def test_inputs_are_never_modified(shape):
    h = Hierarchy(["A", "A > B", "A > C", "A > B > D"], [[], ["A"], ["A"], ["A > B"]])
    scores = torch.randn(shape)
    original = scores.clone()
    max_constraint(scores, h)
    mcloss_inputs(scores, torch.ones(shape[-1]), h)
    assert torch.equal(scores, original)
