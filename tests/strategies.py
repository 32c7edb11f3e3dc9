"""Hypothesis strategies for hierarchies: random trees and DAGs, and labelled samples on them.

Nodes are generated in a random topological order (each node after all of its parents) and then
stored in a different, random order, so code under test cannot rely on index order being
topological.  Parents are given by name or by index at random (the constructor accepts both).

    from tests.strategies import dags, trees
"""

from __future__ import annotations

from hypothesis import strategies as st

from seabed_hmc.hierarchy import Hierarchy


@st.composite
def dags(
    draw: st.DrawFn,
    min_nodes: int = 1,
    max_nodes: int = 12,
    max_parents: int = 3,
    single_root: bool = False,
    random_excluded: bool = False,
) -> Hierarchy:
    """A random DAG: each node after the first picks 0..``max_parents`` parents among earlier nodes.

    Args:
        min_nodes, max_nodes: the node count range.
        max_parents: the most parents a node picks (1 gives trees).
        single_root: every node but the first picks at least one parent (one root).
        random_excluded: draw a random ``excluded`` set instead of the constructor's default rule.
    """
    count = draw(st.integers(min_nodes, max_nodes))
    lowest = 1 if single_root else 0
    parents_by_rank: list[list[int]] = [[]]
    for rank in range(1, count):
        how_many = draw(st.integers(lowest, min(max_parents, rank)))
        parents_by_rank.append(
            draw(st.lists(st.integers(0, rank - 1), min_size=how_many, max_size=how_many, unique=True))
        )
    position = draw(st.permutations(range(count)))  # rank -> index in the node list
    nodes = [""] * count
    for rank in range(count):
        nodes[position[rank]] = f"n{rank}"
    by_index = draw(st.booleans())
    parents: list[list[str | int]] = [[] for _ in range(count)]
    for rank, chosen in enumerate(parents_by_rank):
        parents[position[rank]] = [position[p] if by_index else f"n{p}" for p in chosen]
    excluded = None
    if random_excluded:
        excluded = draw(st.lists(st.sampled_from(nodes), unique=True, max_size=max(1, count // 3)))
    return Hierarchy(nodes, parents, excluded=excluded)


def trees(
    min_nodes: int = 1, max_nodes: int = 12, single_root: bool = False, random_excluded: bool = False
) -> st.SearchStrategy[Hierarchy]:
    """A random tree (a forest unless ``single_root``): each node has at most one parent."""
    return dags(
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        max_parents=1,
        single_root=single_root,
        random_excluded=random_excluded,
    )


@st.composite
def samples(
    draw: st.DrawFn, hierarchy: Hierarchy, max_samples: int = 6, max_labels: int = 3
) -> tuple[list[list[str]], list[bool]]:
    """Labels for ``hierarchy.encode``: per sample a list of node names (maybe empty), and complete flags."""
    count = draw(st.integers(1, max_samples))
    names = st.lists(st.sampled_from(hierarchy.nodes), max_size=max_labels, unique=True)
    labels = [draw(names) for _ in range(count)]
    complete = [draw(st.booleans()) for _ in range(count)]
    return labels, complete
