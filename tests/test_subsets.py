"""Nested, hierarchy-aware training subsets: nesting, sizes, coverage of rare nodes, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.limited_data.subsets import fraction_subsets, per_leaf_subsets


def tree() -> Hierarchy:
    paths = ["A > A1 > A1a", "A > A1 > A1b", "A > A2", "B > B1", "B > B2 > B2a"]
    return Hierarchy.from_paths(paths)


def labelled(rows: int, seed: int, hierarchy: Hierarchy):
    """Rows with one random leaf each, leaves drawn with very unequal frequencies (rare ones)."""
    rng = np.random.default_rng(seed)
    leaves = [n for n in hierarchy.nodes if not hierarchy.children[hierarchy.index(n)]]
    weights = np.array([50, 20, 10, 3, 1][: len(leaves)], dtype=float)
    picks = rng.choice(len(leaves), rows, p=weights / weights.sum())
    targets, mask = hierarchy.encode([[leaves[i]] for i in picks])
    return targets, mask


def positives(targets, rows, hierarchy):
    return (np.asarray(targets)[rows] > 0.5).sum(axis=0) * np.asarray(hierarchy.evaluated)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(5, 120), seed=st.integers(0, 50), minimum=st.integers(0, 3))
def test_fraction_subsets_are_nested_cover_nodes_and_keep_their_size(rows, seed, minimum):
    hierarchy = tree()
    targets, mask = labelled(rows, seed, hierarchy)
    fractions = [0.05, 0.1, 0.25, 0.5, 1.0]
    subsets = fraction_subsets(targets, mask, hierarchy, fractions, seed, minimum)
    total = positives(targets, np.arange(rows), hierarchy)
    previous = np.array([], dtype=int)
    for fraction in fractions:
        chosen = subsets.indices[fraction]
        assert len(np.unique(chosen)) == len(chosen)
        assert set(previous) <= set(chosen)  # nested
        size = max(1, round(fraction * rows))
        assert len(chosen) >= size and subsets.target_sizes[fraction] == size
        counts = positives(targets, chosen, hierarchy)
        need = np.minimum(total, minimum)
        assert np.all(counts >= need)  # every node keeps min(minimum, what the data has)
        short = {hierarchy.nodes[n] for n in np.flatnonzero((counts < minimum) & (total > 0))}
        assert set(subsets.short_nodes[fraction]) == short
        if len(chosen) > size:  # grown only to cover nodes: dropping any row breaks coverage
            assert minimum > 0
        previous = chosen
    assert len(subsets.indices[1.0]) == rows


def test_growth_beyond_the_nominal_size_is_only_for_coverage():
    hierarchy = tree()
    targets, mask = labelled(200, 3, hierarchy)
    subsets = fraction_subsets(targets, mask, hierarchy, [0.01], seed=0, min_positives=2)
    chosen = subsets.indices[0.01]
    assert subsets.target_sizes[0.01] == 2 and len(chosen) > 2
    counts = positives(targets, chosen, hierarchy)
    total = positives(targets, np.arange(200), hierarchy)
    assert np.all(counts >= np.minimum(total, 2))
    # Greedy, rarest first: every chosen row is a positive of some node that needed it.
    for row in chosen:
        assert (np.asarray(targets)[row] > 0.5).sum() > 0


def test_same_seed_same_subsets_other_seed_other_subsets():
    hierarchy = tree()
    targets, mask = labelled(100, 0, hierarchy)
    a = fraction_subsets(targets, mask, hierarchy, [0.2, 0.5], seed=4)
    b = fraction_subsets(targets, mask, hierarchy, [0.5, 0.2], seed=4)
    c = fraction_subsets(targets, mask, hierarchy, [0.2, 0.5], seed=5)
    assert all(np.array_equal(a.indices[f], b.indices[f]) for f in (0.2, 0.5))
    assert not np.array_equal(a.indices[0.2], c.indices[0.2])


def test_masked_entries_are_not_counted_as_positives():
    hierarchy = tree()
    targets, mask = labelled(60, 1, hierarchy)
    rare = hierarchy.index("B > B2 > B2a")
    mask = mask.clone()
    mask[:, rare] = 0  # the rare leaf is unknown everywhere: nothing to cover, nothing reported
    subsets = fraction_subsets(targets, mask, hierarchy, [0.1], seed=0, min_positives=1)
    assert "B > B2 > B2a" not in subsets.short_nodes[0.1]


def test_per_leaf_subsets_hold_k_examples_of_each_leaf_where_possible():
    hierarchy = tree()
    targets, mask = labelled(150, 2, hierarchy)
    subsets = per_leaf_subsets(targets, mask, hierarchy, [1, 3, 10], seed=0)
    leaves = [i for i in range(len(hierarchy)) if not hierarchy.children[i]]
    total = positives(targets, np.arange(150), hierarchy)
    previous: set = set()
    for k in (1, 3, 10):
        chosen = subsets.indices[k]
        assert previous <= set(chosen)
        counts = positives(targets, chosen, hierarchy)
        for leaf in leaves:
            assert counts[leaf] >= min(k, total[leaf])
        # each leaf positive row is there because some leaf needed it: at most k rows per leaf
        assert len(chosen) <= k * len(leaves)
        short = {hierarchy.nodes[leaf] for leaf in leaves if 0 < total[leaf] < k}
        assert set(subsets.short_nodes[k]) == short
        previous = set(chosen)


def test_bad_arguments_are_reported():
    hierarchy = tree()
    targets, mask = labelled(20, 0, hierarchy)
    with pytest.raises(ValueError, match="fractions"):
        fraction_subsets(targets, mask, hierarchy, [0.0, 0.5], seed=0)
    with pytest.raises(ValueError, match="fractions"):
        fraction_subsets(targets, mask, hierarchy, [1.5], seed=0)
    with pytest.raises(ValueError, match="per-leaf"):
        per_leaf_subsets(targets, mask, hierarchy, [0], seed=0)
    with pytest.raises(ValueError, match="empty"):
        fraction_subsets(targets[:0], mask[:0], hierarchy, [0.5], seed=0)


def test_to_dict_lists_images_per_level():
    hierarchy = tree()
    targets, mask = labelled(30, 0, hierarchy)
    subsets = fraction_subsets(targets, mask, hierarchy, [0.5, 1.0], seed=0)
    record = subsets.to_dict([f"img{i}.png" for i in range(30)])
    assert record["mode"] == "fraction"
    half = record["levels"][0]
    assert half["images"] == [f"img{i}.png" for i in half["train_positions"]]
    assert record["levels"][1]["size"] == 30
