"""The Hierarchy core: structure against brute force, label encoding, validation messages."""

from __future__ import annotations

import json
from collections import deque

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seabed_hmc.hierarchy import Hierarchy, HierarchyError, LabelError
from tests.strategies import dags, samples, trees

FAST = settings(max_examples=60, deadline=None)

hierarchies = st.one_of(trees(), dags())


# ------------------------------------------------------------------ brute force
def reachable(start: int, links: tuple[tuple[int, ...], ...]) -> set[int]:
    """Nodes reachable from ``start`` by following ``links`` (parents or children), BFS, start excluded."""
    seen: set[int] = set()
    queue = deque(links[start])
    while queue:
        node = queue.popleft()
        if node not in seen:
            seen.add(node)
            queue.extend(links[node])
    return seen


def brute_ancestors(h: Hierarchy, i: int) -> set[int]:
    return reachable(i, h.parents)


def brute_descendants(h: Hierarchy, i: int) -> set[int]:
    return reachable(i, h.children)


# ------------------------------------------------------------------ structure
@FAST
@given(hierarchies)
def test_ancestors_and_descendants_match_breadth_first_search(h: Hierarchy) -> None:
    for i in range(len(h)):
        assert h.ancestors(i) == sorted(brute_ancestors(h, i))
        assert h.descendants(h.nodes[i]) == sorted(brute_descendants(h, i))
        assert h.ancestors(i, include_self=True) == sorted(brute_ancestors(h, i) | {i})
        assert h.descendants(i, include_self=True) == sorted(brute_descendants(h, i) | {i})


@FAST
@given(hierarchies)
def test_children_mirror_parents_and_roots_leaves_are_consistent(h: Hierarchy) -> None:
    edges_down = {(p, c) for c, plist in enumerate(h.parents) for p in plist}
    edges_up = {(p, c) for p, clist in enumerate(h.children) for c in clist}
    assert edges_down == edges_up
    assert set(h.roots) == {i for i in range(len(h)) if not h.parents[i]}
    assert set(h.leaves) == {i for i in range(len(h)) if not h.children[i]}
    assert h.is_tree == all(len(p) <= 1 for p in h.parents)


@FAST
@given(hierarchies)
def test_depth_grows_from_parent_to_child_and_order_is_topological(h: Hierarchy) -> None:
    place = {node: k for k, node in enumerate(h.topological_order)}
    assert sorted(place) == list(range(len(h)))
    for child, plist in enumerate(h.parents):
        for parent in plist:
            assert h.depth[child] > h.depth[parent]
            assert h.height[parent] > h.height[child]
            assert place[parent] < place[child]
    assert all(h.depth[r] == 0 for r in h.roots)
    assert all(h.height[leaf] == 0 for leaf in h.leaves)
    # depth is the longest path from a root: some parent is exactly one level up
    for child, plist in enumerate(h.parents):
        if plist:
            assert max(h.depth[p] for p in plist) == h.depth[child] - 1


@FAST
@given(hierarchies)
def test_ancestor_pairs_are_every_node_with_each_of_its_ancestors_and_itself(h: Hierarchy) -> None:
    pairs = h.ancestor_pairs
    assert pairs.shape[0] == 2 and pairs.dtype == np.int64
    found = list(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))
    expected = {(i, a) for i in range(len(h)) for a in brute_ancestors(h, i) | {i}}
    assert len(found) == len(set(found))
    assert set(found) == expected


@FAST
@given(st.data())
def test_encode_closes_over_ancestors_and_masks_only_unknown_descendants(data: st.DataObject) -> None:
    h = data.draw(hierarchies)
    labels, complete = data.draw(samples(h))
    targets, mask = h.encode(labels, complete=complete)
    assert targets.shape == mask.shape == (len(labels), len(h))
    for row, (names, is_complete) in enumerate(zip(labels, complete, strict=True)):
        labelled = [h.index(n) for n in names]
        positive = set().union(*(brute_ancestors(h, i) | {i} for i in labelled))
        assert set(np.flatnonzero(targets[row].numpy()).tolist()) == positive
        for i in positive:  # ancestor-closed
            assert brute_ancestors(h, i) <= positive
        unknown = set()
        if not is_complete:
            unknown = set().union(*(brute_descendants(h, i) for i in labelled)) - positive
        assert set(np.flatnonzero(mask[row].numpy() == 0).tolist()) == unknown
        assert set(np.unique(mask[row].numpy()).tolist()) <= {0.0, 1.0}


@FAST
@given(st.data())
def test_complete_annotation_masks_nothing(data: st.DataObject) -> None:
    h = data.draw(hierarchies)
    labels, _ = data.draw(samples(h))
    _, mask = h.encode(labels, complete=True)
    assert bool((mask == 1).all())


@FAST
@given(st.data())
def test_decode_returns_deepest_positives_that_encode_back(data: st.DataObject) -> None:
    h = data.draw(hierarchies)
    labels, _ = data.draw(samples(h))
    targets, _ = h.encode(labels)
    decoded = h.decode(targets)
    again, _ = h.encode(decoded)
    evaluated = h.evaluated
    assert np.array_equal(again.numpy()[:, evaluated], targets.numpy()[:, evaluated])


@FAST
@given(st.one_of(trees(random_excluded=True), dags(random_excluded=True)))
def test_to_dict_from_dict_round_trips_through_json(h: Hierarchy) -> None:
    record = json.loads(json.dumps(h.to_dict()))
    back = Hierarchy.from_dict(record)
    assert back == h
    assert back.nodes == h.nodes and back.parents == h.parents and back.excluded == h.excluded
    assert back.separator == h.separator
    assert np.array_equal(back.evaluated, h.evaluated)


@FAST
@given(hierarchies)
def test_default_exclusion_is_the_single_root_only(h: Hierarchy) -> None:
    expected = (h.nodes[h.roots[0]],) if len(h.roots) == 1 else ()
    assert h.excluded == expected
    assert int(h.evaluated.sum()) == len(h) - len(expected)
    assert h.evaluated_indices.tolist() == [i for i in range(len(h)) if h.nodes[i] not in expected]


@FAST
@given(hierarchies)
def test_with_excluded_replaces_the_excluded_set(h: Hierarchy) -> None:
    chosen = list(h.nodes[::2])
    other = h.with_excluded(chosen)
    assert set(other.excluded) == set(chosen)
    assert other.nodes == h.nodes and other.parents == h.parents
    assert not other.evaluated[[h.index(n) for n in chosen]].any()


# ------------------------------------------------------------------ hand examples
@pytest.fixture
def habitat() -> Hierarchy:
    """Two roots; path-named nodes with the default " > " separator."""
    return Hierarchy.from_paths(
        [
            "Biota > Macroalgae > Kelp",
            "Biota > Macroalgae > Red",
            "Biota > Sponges",
            "Substrate > Sand",
        ]
    )


def names_on(h: Hierarchy, row) -> set[str]:
    return {h.nodes[i] for i in np.flatnonzero(np.asarray(row)).tolist()}


def test_hand_tree_has_the_expected_nodes_in_first_appearance_order(habitat: Hierarchy) -> None:
    assert habitat.nodes == (
        "Biota",
        "Biota > Macroalgae",
        "Biota > Macroalgae > Kelp",
        "Biota > Macroalgae > Red",
        "Biota > Sponges",
        "Substrate",
        "Substrate > Sand",
    )
    assert [habitat.nodes[r] for r in habitat.roots] == ["Biota", "Substrate"]
    assert habitat.excluded == ()  # two roots: neither is always on
    assert habitat.short_name("Biota > Macroalgae > Kelp") == "Kelp"
    assert habitat.depth.tolist() == [0, 1, 2, 2, 1, 0, 1]
    assert habitat.height.tolist() == [2, 1, 0, 0, 0, 1, 0]


def test_encode_multi_label_union_with_pipe(habitat: Hierarchy) -> None:
    targets, mask = habitat.encode(["Biota > Macroalgae > Kelp|Substrate > Sand", "Biota > Sponges", ""])
    assert names_on(habitat, targets[0]) == {
        "Biota",
        "Biota > Macroalgae",
        "Biota > Macroalgae > Kelp",
        "Substrate",
        "Substrate > Sand",
    }
    assert names_on(habitat, targets[1]) == {"Biota", "Biota > Sponges"}
    assert names_on(habitat, targets[2]) == set()
    assert bool((mask == 1).all())
    assert targets.dtype == mask.dtype == torch.float32


def test_encode_accepts_lists_indices_loose_spacing_and_missing(habitat: Hierarchy) -> None:
    kelp = habitat.index("Biota > Macroalgae > Kelp")
    targets, _ = habitat.encode(
        [["Biota > Sponges", kelp], kelp, "Biota>Macroalgae >Red", None, float("nan")]
    )
    assert names_on(habitat, targets[0]) == {
        "Biota",
        "Biota > Sponges",
        "Biota > Macroalgae",
        "Biota > Macroalgae > Kelp",
    }
    assert names_on(habitat, targets[1]) == {"Biota", "Biota > Macroalgae", "Biota > Macroalgae > Kelp"}
    assert names_on(habitat, targets[2]) == {"Biota", "Biota > Macroalgae", "Biota > Macroalgae > Red"}
    assert names_on(habitat, targets[3]) == names_on(habitat, targets[4]) == set()


def test_partial_label_leaves_the_deeper_levels_unknown(habitat: Hierarchy) -> None:
    targets, mask = habitat.encode(
        ["Biota > Macroalgae", "Biota > Macroalgae", "Biota"], complete=[False, True, False]
    )
    assert names_on(habitat, targets[0]) == {"Biota", "Biota > Macroalgae"}
    assert names_on(habitat, mask[0] == 0) == {"Biota > Macroalgae > Kelp", "Biota > Macroalgae > Red"}
    assert bool((mask[1] == 1).all())
    # labelled at the root, incomplete: everything below Biota is unknown; Substrate stays a known 0
    assert names_on(habitat, mask[2] == 0) == {
        "Biota > Macroalgae",
        "Biota > Macroalgae > Kelp",
        "Biota > Macroalgae > Red",
        "Biota > Sponges",
    }


def test_partial_label_keeps_known_positives_below_it(habitat: Hierarchy) -> None:
    _, mask = habitat.encode(["Biota|Biota > Macroalgae > Kelp"], complete=False)
    assert names_on(habitat, mask[0] == 0) == {"Biota > Macroalgae > Red", "Biota > Sponges"}


def test_partial_label_in_a_dag_masks_only_descendants_of_the_labelled_parent() -> None:
    h = Hierarchy(["A", "B", "C", "D"], [[], ["A"], ["A"], ["B", "C"]])
    targets, mask = h.encode(["B"], complete=False)
    assert names_on(h, targets[0]) == {"A", "B"}
    assert names_on(h, mask[0] == 0) == {"D"}  # C is not below B: a known negative
    targets, _ = h.encode(["D"])
    assert names_on(h, targets[0]) == {"A", "B", "C", "D"}  # both parents switch on
    assert h.excluded == ("A",)


def test_decode_names_the_deepest_predicted_nodes(habitat: Hierarchy) -> None:
    targets, _ = habitat.encode(["Biota > Macroalgae > Kelp|Substrate", "Biota > Sponges|Biota"])
    assert habitat.decode(targets) == [["Biota > Macroalgae > Kelp", "Substrate"], ["Biota > Sponges"]]


def test_unknown_label_names_label_row_and_close_matches(habitat: Hierarchy) -> None:
    with pytest.raises(LabelError) as caught:
        habitat.encode(["Biota > Sponges", "Biota > Sponge"])
    message = str(caught.value)
    assert "'Biota > Sponge'" in message and "row 1" in message and "Biota > Sponges" in message


def test_encode_rejects_mismatched_complete_flags(habitat: Hierarchy) -> None:
    with pytest.raises(ValueError, match="2 label entries but 1"):
        habitat.encode(["Biota", "Substrate"], complete=[True])


def test_a_single_root_is_excluded_by_default_and_the_artificial_root_always() -> None:
    single = Hierarchy(["top", "a", "b"], [[], ["top"], ["top"]])
    assert single.excluded == ("top",)
    artificial = Hierarchy(["root", "x", "y", "z"], [[], ["root"], [], []])
    assert artificial.excluded == ("root",)
    assert Hierarchy(["a", "b"], [[], []]).excluded == ()


def test_mapping_parents_and_index_parents_give_the_same_hierarchy() -> None:
    by_name = Hierarchy(["a", "b", "c"], [[], ["a"], ["a", "b"]])
    by_mapping = Hierarchy(["a", "b", "c"], {"b": ["a"], "c": ["b", "a"]})
    by_index = Hierarchy(["a", "b", "c"], [[], [0], [1, 0]])
    single_names = Hierarchy(["a", "b", "c"], [None, "a", ["a", "b"]])
    assert by_name == by_mapping == by_index == single_names


def test_excluded_accepts_one_name_or_a_generator() -> None:
    assert Hierarchy(["a", "b"], [[], ["a"]], excluded="b").excluded == ("b",)
    assert Hierarchy(["a", "b"], [[], ["a"]], excluded=(n for n in ["a", "b"])).excluded == ("a", "b")


# ------------------------------------------------------------------ validation
def test_cycle_is_reported_with_the_nodes_on_it() -> None:
    with pytest.raises(HierarchyError) as caught:
        Hierarchy(["top", "a", "b", "c", "below"], [[], ["c", "top"], ["a"], ["b"], ["c"]], source="my.csv")
    message = str(caught.value)
    assert "cycle" in message and "my.csv" in message
    for name in ("'a'", "'b'", "'c'"):
        assert name in message
    assert "'top'" not in message.split("(")[0]  # not on the cycle
    cycle = message.split("cycle: ")[1].split(" (")[0].split(" -> ")
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["'a'", "'b'", "'c'"]


def test_unknown_parent_names_child_and_parent() -> None:
    with pytest.raises(HierarchyError, match=r"node 'b' names parent 'zz', which is not a node"):
        Hierarchy(["a", "b"], [[], ["zz"]])


def test_own_parent_by_name_or_index_is_an_error() -> None:
    with pytest.raises(HierarchyError, match="'a' is its own parent"):
        Hierarchy(["a"], [["a"]])
    with pytest.raises(HierarchyError, match="'b' is its own parent"):
        Hierarchy(["a", "b"], [[], [1]])
    with pytest.raises(HierarchyError, match="parent index 7, out of range"):
        Hierarchy(["a", "b"], [[], [7]])


def test_empty_and_duplicate_node_lists_are_errors() -> None:
    with pytest.raises(HierarchyError, match="no nodes"):
        Hierarchy([], [])
    with pytest.raises(HierarchyError, match="node 'a' is defined twice"):
        Hierarchy(["a", "b", "a"], [[], [], []])
    with pytest.raises(HierarchyError, match="3 nodes but 2 parent lists"):
        Hierarchy(["a", "b", "c"], [[], []])


def test_parent_mapping_with_unknown_keys_is_an_error() -> None:
    with pytest.raises(HierarchyError, match=r"entries for \['c'\], which are not in the node list"):
        Hierarchy(["a", "b"], {"b": ["a"], "c": ["a"]})


def test_excluded_node_not_in_hierarchy_is_named_with_a_hint() -> None:
    with pytest.raises(HierarchyError) as caught:
        Hierarchy(["Biota", "Biota > Kelp"], [[], ["Biota"]], excluded=["Kelp"], source="tree.csv")
    message = str(caught.value)
    assert "['Kelp']" in message and "not in the hierarchy" in message and "tree.csv" in message
    assert "full paths" in message


def test_from_dict_names_the_missing_keys() -> None:
    with pytest.raises(HierarchyError, match=r"hierarchy record in saved.json lacks \['parents'\]"):
        Hierarchy.from_dict({"nodes": ["a"]}, source="saved.json")


def test_index_errors() -> None:
    h = Hierarchy(["a", "b"], [[], ["a"]])
    with pytest.raises(IndexError):
        h.index(5)
    with pytest.raises(LabelError, match="'c' is not a node"):
        h.index("c")
