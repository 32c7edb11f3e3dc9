"""The :class:`Hierarchy`: named nodes with parent links (a tree or a DAG), and label encoding.

Index structures are computed once at construction: topological order, depth (longest path from a
root), height (longest path to a leaf), ancestor and descendant sets.  Nodes are referred to by name in
the public API and by integer index in tensors; ``h.nodes[i]`` is the name of index ``i``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property

import numpy as np
import torch

DEFAULT_SEPARATOR = " > "
LABEL_SEPARATOR = "|"
ARTIFICIAL_ROOT = "root"


class HierarchyError(ValueError):
    """A hierarchy definition is invalid (cycle, unknown parent, duplicate, empty...)."""


class LabelError(ValueError):
    """A sample's label does not name a node of the hierarchy."""


class Hierarchy:
    """A set of N named nodes with parent links; a tree or a DAG (several parents allowed).

    Args:
        nodes: unique node names, in index order.
        parents: for each node (same order), the names or indices of its parents; empty for roots.
            A mapping ``{node: parents}`` is accepted too.
        excluded: nodes kept out of the loss and every metric ("not evaluated").  By default the
            artificial ``root`` node and, when there is exactly one root, that root (every sample
            has it, so it carries no information).
        separator: the level separator of path-style node names (``" > "``); used to resolve
            labels and to show the hierarchy.
        source: where the hierarchy came from, for error messages.

    Loaders (in :mod:`seabed_hmc.hierarchy.loaders`, attached here as static methods when the package
    is imported): ``Hierarchy.from_paths``, ``from_path_file``, ``from_edges``, ``from_parent_table``,
    ``from_catami_json``, ``from_folder``, ``from_arff`` and ``Hierarchy.load`` (dispatch on file type).
    """

    def __init__(
        self,
        nodes: Sequence[str],
        parents: Sequence[Iterable[str | int]] | Mapping[str, Iterable[str | int]],
        excluded: Iterable[str] | None = None,
        separator: str | None = DEFAULT_SEPARATOR,
        source: str | None = None,
    ) -> None:
        self.source = source
        where = f" in {source}" if source else ""
        nodes = [str(n) for n in nodes]
        if not nodes:
            raise HierarchyError(f"the hierarchy{where} has no nodes; give at least one path, edge or row")
        self._index = {}
        for i, name in enumerate(nodes):
            if name in self._index:
                raise HierarchyError(f"node {name!r} is defined twice{where}; node names must be unique")
            self._index[name] = i
        if isinstance(parents, Mapping):
            strangers = [key for key in parents if str(key) not in self._index]
            if strangers:
                raise HierarchyError(
                    f"the parent mapping{where} has entries for {strangers[:5]}, which are not in the node "
                    "list; add them to the nodes or drop the entries"
                )
            parents = [parents.get(name, ()) for name in nodes]
        if len(parents) != len(nodes):
            raise HierarchyError(f"{len(nodes)} nodes but {len(parents)} parent lists{where}")
        self.nodes: tuple[str, ...] = tuple(nodes)
        self.separator = separator
        self.parents: tuple[tuple[int, ...], ...] = tuple(
            tuple(sorted({self._resolve_parent(p, child, where) for p in _parent_list(plist)}))
            for child, plist in zip(nodes, parents, strict=True)
        )
        children: list[list[int]] = [[] for _ in nodes]
        for child, plist in enumerate(self.parents):
            for p in plist:
                children[p].append(child)
        self.children: tuple[tuple[int, ...], ...] = tuple(tuple(c) for c in children)
        self.topological_order = self._topological_sort(where)
        self.roots: tuple[int, ...] = tuple(i for i, p in enumerate(self.parents) if not p)
        self.leaves: tuple[int, ...] = tuple(i for i, c in enumerate(self.children) if not c)
        if excluded is None:
            excluded = [n for n in nodes if n == ARTIFICIAL_ROOT]
            if len(self.roots) == 1:
                excluded.append(nodes[self.roots[0]])
        # A single name is one node, not its characters; a generator must survive two passes.
        excluded = [excluded] if isinstance(excluded, str) else [str(n) for n in excluded]
        unknown = [n for n in excluded if n not in self._index]
        if unknown:
            close = {n: difflib.get_close_matches(n, self.nodes, n=2) for n in unknown[:3]}
            hint = "; ".join(f"{n!r}: did you mean {c}?" for n, c in close.items() if c)
            raise HierarchyError(
                f"excluded node(s) {unknown} are not in the hierarchy{where}; give node names exactly "
                f"as in h.nodes (full paths for path-style hierarchies){'; ' + hint if hint else ''}"
            )
        self.excluded: tuple[str, ...] = tuple(sorted(set(excluded), key=self._index.__getitem__))

    # ------------------------------------------------------------------ construction helpers
    def _resolve_parent(self, parent: str | int, child: str, where: str) -> int:
        if isinstance(parent, (int, np.integer)):
            if not 0 <= parent < len(self._index):
                raise HierarchyError(f"node {child!r} has parent index {parent}, out of range{where}")
            if parent == self._index[child]:
                raise HierarchyError(f"node {child!r} is its own parent{where}")
            return int(parent)
        if parent not in self._index:
            raise HierarchyError(
                f"node {child!r} names parent {parent!r}, which is not a node{where}; "
                "define the parent too, or fix the name"
            )
        if parent == child:
            raise HierarchyError(f"node {child!r} is its own parent{where}")
        return self._index[parent]

    def _topological_sort(self, where: str) -> tuple[int, ...]:
        """Parents before children (Kahn's algorithm); a cycle is an error naming its nodes."""
        remaining = [len(p) for p in self.parents]
        ready = [i for i, r in enumerate(remaining) if r == 0]
        order = []
        while ready:
            node = ready.pop()
            order.append(node)
            for child in self.children[node]:
                remaining[child] -= 1
                if remaining[child] == 0:
                    ready.append(child)
        if len(order) != len(self.nodes):
            stuck = {i for i, r in enumerate(remaining) if r > 0}
            cycle = " -> ".join(repr(self.nodes[i]) for i in self._find_cycle(stuck))
            raise HierarchyError(
                f"the hierarchy{where} has a cycle: {cycle} (each is a parent of the next); a node cannot "
                f"be its own ancestor, so remove one of these links ({len(stuck)} node(s) are on or below "
                "a cycle)"
            )
        return tuple(order)

    def _find_cycle(self, stuck: set[int]) -> list[int]:
        """One cycle among the nodes Kahn's algorithm could not place, parent first, closed.

        Every such node has a parent that could not be placed either, so walking up from any of them
        must revisit a node; the walk from that node on is a cycle.
        """
        walk, seen = [min(stuck)], {min(stuck): 0}
        while True:
            parent = next(p for p in self.parents[walk[-1]] if p in stuck)
            if parent in seen:
                cycle = walk[seen[parent] :][::-1]
                return [*cycle, cycle[0]]
            seen[parent] = len(walk)
            walk.append(parent)

    # ------------------------------------------------------------------ basic protocol
    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hierarchy):
            return NotImplemented
        return (self.nodes, self.parents, self.excluded) == (other.nodes, other.parents, other.excluded)

    def __hash__(self) -> int:
        return hash((self.nodes, self.parents, self.excluded))

    def __repr__(self) -> str:
        kind = "tree" if self.is_tree else "DAG"
        return (
            f"Hierarchy({len(self)} nodes, {kind}, {len(self.roots)} root(s), "
            f"max depth {int(self.depth.max())}, {int(self.evaluated.sum())} evaluated)"
        )

    def index(self, node: str | int) -> int:
        """Index of a node given by name (or an index, checked)."""
        if isinstance(node, (int, np.integer)):
            if not 0 <= node < len(self):
                raise IndexError(f"node index {node} out of range for {len(self)} nodes")
            return int(node)
        try:
            return self._index[node]
        except KeyError:
            raise LabelError(self._unknown_message(node)) from None

    def _unknown_message(self, label: str, row: int | None = None) -> str:
        where = f" (row {row})" if row is not None else ""
        close = difflib.get_close_matches(label, self.nodes, n=3)
        hint = f"; did you mean {close}?" if close else ""
        source = f" from {self.source}" if self.source else ""
        return f"label {label!r}{where} is not a node of the hierarchy{source}{hint}"

    # ------------------------------------------------------------------ structure
    @property
    def is_tree(self) -> bool:
        return all(len(p) <= 1 for p in self.parents)

    @cached_property
    def depth_first_order(self) -> tuple[int, ...]:
        """Nodes as an indented listing shows them: each root, then its children's subtrees in order
        (a node with several parents under the first that reaches it)."""
        order, stack, seen = [], list(reversed(self.roots)), set()
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                order.append(node)
                stack.extend(reversed(self.children[node]))
        return tuple(order)

    @cached_property
    def depth(self) -> np.ndarray:
        """(nodes,) int: longest path from a root (roots have depth 0); a child is always deeper."""
        depth = np.zeros(len(self), dtype=np.int64)
        for node in self.topological_order:
            if self.parents[node]:
                depth[node] = 1 + max(depth[p] for p in self.parents[node])
        return depth

    @cached_property
    def height(self) -> np.ndarray:
        """(nodes,) int: longest path down to a leaf (leaves have height 0)."""
        height = np.zeros(len(self), dtype=np.int64)
        for node in reversed(self.topological_order):
            if self.children[node]:
                height[node] = 1 + max(height[c] for c in self.children[node])
        return height

    @cached_property
    def _ancestor_sets(self) -> tuple[frozenset[int], ...]:
        sets: list[frozenset[int]] = [frozenset()] * len(self)
        for node in self.topological_order:
            acc: set[int] = set()
            for p in self.parents[node]:
                acc.add(p)
                acc |= sets[p]
            sets[node] = frozenset(acc)
        return tuple(sets)

    @cached_property
    def _descendant_sets(self) -> tuple[frozenset[int], ...]:
        sets: list[set[int]] = [set() for _ in self.nodes]
        for node, ancestors in enumerate(self._ancestor_sets):
            for a in ancestors:
                sets[a].add(node)
        return tuple(frozenset(s) for s in sets)

    def ancestors(self, node: str | int, include_self: bool = False) -> list[int]:
        """Indices of the ancestors of ``node`` (A(i) when ``include_self``), sorted."""
        i = self.index(node)
        found = set(self._ancestor_sets[i]) | ({i} if include_self else set())
        return sorted(found)

    def descendants(self, node: str | int, include_self: bool = False) -> list[int]:
        """Indices of the descendants of ``node`` (D(i) when ``include_self``), sorted."""
        i = self.index(node)
        found = set(self._descendant_sets[i]) | ({i} if include_self else set())
        return sorted(found)

    @cached_property
    def ancestor_pairs(self) -> np.ndarray:
        """(2, P) int64: every (node, ancestor) pair, self pairs included (i in A(i)).

        This is the sparse form of the N x N ancestor matrix: P is the sum of |A(i)|.
        """
        rows, cols = [], []
        for node, ancestors in enumerate(self._ancestor_sets):
            rows.append(node)
            cols.append(node)
            for a in ancestors:
                rows.append(node)
                cols.append(a)
        return np.asarray([rows, cols], dtype=np.int64)

    @cached_property
    def evaluated(self) -> np.ndarray:
        """(nodes,) bool: nodes that count in the loss and the metrics (all but ``excluded``)."""
        mask = np.ones(len(self), dtype=bool)
        for name in self.excluded:
            mask[self._index[name]] = False
        return mask

    @property
    def evaluated_indices(self) -> np.ndarray:
        return np.flatnonzero(self.evaluated)

    def with_excluded(self, excluded: Iterable[str]) -> Hierarchy:
        """A copy whose non-evaluated nodes are exactly ``excluded``."""
        return Hierarchy(
            self.nodes,
            self.parents,
            excluded=list(excluded),
            separator=self.separator,
            source=self.source,
        )

    def short_name(self, node: str | int) -> str:
        """The last level of a path-style name ("Kelp" for "Biota > Macroalgae > Kelp")."""
        name = self.nodes[self.index(node)]
        if self.separator and self.separator in name:
            return name.rsplit(self.separator, 1)[1]
        return name

    # ------------------------------------------------------------------ labels
    def resolve_label(self, label: str | int, row: int | None = None) -> int:
        """Index of the node a label names: a node name, or a path with this hierarchy's separator."""
        if isinstance(label, (int, np.integer)):
            return self.index(label)
        text = str(label).strip()
        if text in self._index:
            return self._index[text]
        if self.separator and self.separator.strip():
            parts = [p.strip() for p in text.split(self.separator.strip())]
            normalised = self.separator.join(parts)
            if normalised in self._index:
                return self._index[normalised]
        raise LabelError(self._unknown_message(text, row))

    def _split_labels(self, label: str | int | Iterable[str | int] | None) -> list[str | int]:
        if label is None or (isinstance(label, float) and np.isnan(label)):
            return []  # a missing entry (None, or NaN from a pandas column) labels no node
        if isinstance(label, str):
            return [part for part in (p.strip() for p in label.split(LABEL_SEPARATOR)) if part]
        if isinstance(label, (int, np.integer)):
            return [int(label)]
        return list(label)

    def encode(
        self,
        labels: Sequence[str | int | Iterable[str | int]],
        complete: bool | Sequence[bool] = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets with ancestor closure and the partial-label mask.

        Args:
            labels: one entry per sample: a node name or path, several joined by ``"|"``, or an
                iterable of names/indices.  An empty entry (``""``, ``[]``, None or NaN) means "no
                node" (all known negatives when complete).
            complete: per sample (or for all): whether the annotation is complete.  When it is not,
                the strict descendants of every labelled node are unknown (mask 0).

        Returns:
            ``(targets, mask)``, float32 tensors of shape (samples, nodes).
        """
        if isinstance(complete, (bool, np.bool_)):
            complete = [bool(complete)] * len(labels)
        if len(complete) != len(labels):
            raise ValueError(f"{len(labels)} label entries but {len(complete)} 'complete' flags")
        targets = np.zeros((len(labels), len(self)), dtype=np.float32)
        mask = np.ones((len(labels), len(self)), dtype=np.float32)
        for row, (entry, is_complete) in enumerate(zip(labels, complete, strict=True)):
            indices = [self.resolve_label(label, row) for label in self._split_labels(entry)]
            for i in indices:
                targets[row, i] = 1.0
                targets[row, list(self._ancestor_sets[i])] = 1.0
            if not is_complete:
                for i in indices:
                    mask[row, list(self._descendant_sets[i])] = 0.0
                mask[row, targets[row] > 0] = 1.0
        return torch.from_numpy(targets), torch.from_numpy(mask)

    def decode(self, predicted: np.ndarray | torch.Tensor) -> list[list[str]]:
        """For each sample, the deepest predicted nodes (those with no predicted child), by name."""
        predicted = np.asarray(predicted, dtype=bool)
        paths = []
        for row in predicted:
            on = set(np.flatnonzero(row & self.evaluated).tolist())
            deepest = [i for i in sorted(on) if not any(c in on for c in self.children[i])]
            paths.append([self.nodes[i] for i in deepest])
        return paths

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """Plain data (names, parent names, excluded, separator) for checkpoints and JSON."""
        return {
            "nodes": list(self.nodes),
            "parents": [[self.nodes[p] for p in plist] for plist in self.parents],
            "excluded": list(self.excluded),
            "separator": self.separator,
        }

    @classmethod
    def from_dict(cls, data: Mapping, source: str | None = None) -> Hierarchy:
        missing = {"nodes", "parents"} - set(data)
        if missing:
            raise HierarchyError(
                f"hierarchy record{f' in {source}' if source else ''} lacks {sorted(missing)}"
            )
        return cls(
            data["nodes"],
            data["parents"],
            excluded=data.get("excluded"),
            separator=data.get("separator", DEFAULT_SEPARATOR),
            source=source,
        )


def _parent_list(parents: str | int | Iterable[str | int] | None) -> Iterable[str | int]:
    """One node's parents as an iterable: a lone name or index is one parent (not its characters)."""
    if parents is None:
        return ()
    if isinstance(parents, (str, int, np.integer)):
        return (parents,)
    return parents
