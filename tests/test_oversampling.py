"""HROS (hierarchical random oversampling): hand-computed examples and properties on random hierarchies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc_studies.hmc.oversampling import hros_indices
from tests.strategies import dags, samples

FAST = settings(max_examples=60, deadline=None)


def flat(*children: str, extra: dict[str, str] | None = None) -> Hierarchy:
    """``root`` over ``children``, plus ``extra`` {child: parent} links; root is excluded."""
    links = {"root": None, **dict.fromkeys(children, "root"), **(extra or {})}
    return Hierarchy(list(links), [[p] if p else [] for p in links.values()])


def counts_of(indices: np.ndarray, targets: torch.Tensor, h: Hierarchy, mask=None) -> dict[str, int]:
    known = targets if mask is None else targets * mask
    totals = known[torch.as_tensor(indices)].sum(dim=0)
    return {h.nodes[i]: int(totals[i]) for i in h.evaluated_indices}


# ------------------------------------------------------------------ hand examples
def test_a_rare_leaf_is_cloned_until_its_ratio_reaches_the_mean() -> None:
    # A: 12 samples (0-11); B: 8 samples (12-19), of which 18 and 19 also carry B1.
    # counts A 12, B 8, B1 2 -> IR 1, 1.5, 6 -> MeanIR 8.5/3 = 2.83; minority {B1}.
    # Each B1 clone adds to B and B1; IR(B1) = 12/3 = 4, then 12/4 = 3, then 12/5 = 2.4 <= 2.83: 3 clones.
    h = flat("A", "B", extra={"B1": "B"})
    targets, _ = h.encode(["A"] * 12 + ["B"] * 6 + ["B1"] * 2)
    indices = hros_indices(targets, h, budget=0.5, seed=0)
    assert indices[:20].tolist() == list(range(20))
    assert len(indices) == 23 and set(indices[20:].tolist()) <= {18, 19}
    assert counts_of(indices, targets, h) == {"A": 12, "B": 11, "B1": 5}
    # with the default 10% budget: floor(2.0) = 2 clones, the loop stops on the budget
    small = hros_indices(targets, h, seed=0)
    assert len(small) == 22 and counts_of(small, targets, h)["B1"] == 4


def test_minority_nodes_take_turns_in_order_of_increasing_count() -> None:
    # A 16, B 2, C 3 (n = 21) -> IR 1, 8, 5.33 -> MeanIR 4.78; minority B, C.
    # Round 1: B (count 2) -> 3 (IR 5.33, stays), C (count 3) -> 4 (IR 4, leaves).  Round 2: B -> 4, leaves.
    h = flat("A", "B", "C")
    targets, _ = h.encode(["A"] * 16 + ["B"] * 2 + ["C"] * 3)
    clones = hros_indices(targets, h, budget=0.5, seed=1)[21:]
    assert len(clones) == 3
    assert clones[0] in (16, 17) and clones[1] in (18, 19, 20) and clones[2] in (16, 17)


def test_a_node_pushed_to_the_mean_by_another_nodes_clone_gets_no_clone_of_its_own() -> None:
    # A 12; samples 12 and 13 carry both B and C: counts 12, 2, 2 -> IR 1, 6, 6 -> MeanIR 4.33.
    # B's turn (tie, lower index): one clone, B = C = 3, IR 4 <= 4.33.  C's turn: already there, no clone.
    h = flat("A", "B", "C")
    targets, _ = h.encode(["A"] * 12 + ["B|C"] * 2)
    indices = hros_indices(targets, h, budget=1.0, seed=0)
    assert len(indices) == 15 and indices[14] in (12, 13)


def test_unknown_entries_neither_count_nor_are_cloned_for() -> None:
    # A 10 (0-9); B 3 (10-12) but B unknown for 10 and 11: known counts A 10, B 1 -> IR 1, 10 -> MeanIR 5.5.
    # Only sample 12 may be cloned for B; one clone makes IR(B) = 5 <= 5.5.
    h = flat("A", "B")
    targets, mask = h.encode(["A"] * 10 + ["B"] * 3)
    mask[10:12, h.index("B")] = 0
    assert hros_indices(targets, h, budget=1.0, mask=mask).tolist() == [*range(13), 12]
    # all known: B 3 -> IR 3.33 -> MeanIR 2.17; clones until B >= 10 / 2.17, i.e. 5: two clones
    unmasked = hros_indices(targets, h, budget=1.0)
    assert len(unmasked) == 15 and set(unmasked[13:].tolist()) <= {10, 11, 12}


def test_balanced_data_and_a_zero_budget_change_nothing() -> None:
    h = flat("A", "B", "C")
    balanced, _ = h.encode(["A", "B", "C"] * 5)
    assert hros_indices(balanced, h, budget=1.0).tolist() == list(range(15))
    skewed, _ = h.encode(["A"] * 16 + ["B"] * 2 + ["C"] * 3)
    assert hros_indices(skewed, h, budget=0.0).tolist() == list(range(21))
    assert hros_indices(skewed, h, budget=0.04).tolist() == list(range(21))  # floor(0.84) = 0
    assert hros_indices(torch.zeros(0, 4), h).tolist() == []


def test_the_same_seed_gives_the_same_indices_and_another_seed_others() -> None:
    h = flat("A", "B")
    targets, _ = h.encode(["A"] * 80 + ["B"] * 20)
    first = hros_indices(targets, h, budget=0.3, seed=7)
    assert np.array_equal(first, hros_indices(targets.numpy(), h, budget=0.3, seed=7))
    assert not np.array_equal(first, hros_indices(targets, h, budget=0.3, seed=8))
    assert first.dtype == np.int64


def test_bad_arguments_are_refused() -> None:
    h = flat("A", "B")
    targets, mask = h.encode(["A", "B"])
    with pytest.raises(ValueError, match="budget must be a non-negative"):
        hros_indices(targets, h, budget=-0.1)
    with pytest.raises(ValueError, match=r"targets must be \(samples, 3\)"):
        hros_indices(targets[:, :2], h)
    with pytest.raises(ValueError, match="mask shape"):
        hros_indices(targets, h, mask=mask[:1])


# ------------------------------------------------------------------ properties
@st.composite
def labelled_sets(draw: st.DrawFn) -> tuple[Hierarchy, torch.Tensor, torch.Tensor, float, int]:
    h = draw(dags(min_nodes=2, max_nodes=10, single_root=True))
    labels, complete = draw(samples(h, max_samples=40, max_labels=2))
    targets, mask = h.encode(labels, complete=complete)
    budget = draw(st.sampled_from([0.1, 0.25, 0.5, 1.0]))
    return h, targets, mask, budget, draw(st.integers(0, 3))


@FAST
@given(labelled_sets())
def test_hros_properties_on_random_hierarchies(case) -> None:
    h, targets, mask, budget, seed = case
    n = targets.shape[0]
    indices = hros_indices(targets, h, budget=budget, seed=seed, mask=mask)
    clones = indices[n:]
    assert indices[:n].tolist() == list(range(n))
    assert len(clones) <= math.floor(budget * n + 1e-9)
    assert ((clones >= 0) & (clones < n)).all()

    known = (targets * mask).numpy() * h.evaluated
    before = known.sum(axis=0)
    after = known[indices].sum(axis=0)
    assert (after >= before).all()
    present = before > 0
    if not present.any():
        assert len(clones) == 0
        return
    mean_ratio = np.mean(before.max() / before[present])
    minority = present & (before.max() / np.where(present, before, 1) > mean_ratio)
    # every clone carries a known positive at an initial minority node, so their total grows per clone
    assert all(known[c, minority].any() for c in clones)
    assert after[minority].sum() >= before[minority].sum() + len(clones)
    # stopping before the budget means every minority node reached the mean ratio at some point; the
    # largest count never shrinks, so its count then, and now, is at least the original max / MeanIR
    if len(clones) < math.floor(budget * n + 1e-9):
        assert (before.max() / after[minority] <= mean_ratio + 1e-9).all()
