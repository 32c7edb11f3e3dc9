"""The max-constraint (coherent outputs) and the MCLoss inputs, on the sparse hierarchy structure.

``max_constraint`` computes ĥ_i = max over j in D(i) of h_j (METHOD.md section 2) for scores of any
leading shape ``(..., nodes)``.  It never builds an N x N (or B x N x N) product: nodes are processed
bottom-up by height, and each node takes the max over itself and its children's already-final values
(correct for DAGs too, since D(i) = {i} ∪ D(children)).  The pass runs without autograd and records,
for every output entry, WHICH descendant attains the max; the output is then a single ``gather`` of
the input, so the gradient flows exactly to the maximising descendant and memory stays O(batch x N).

Within a height level, parents are grouped into buckets of similar child count and their children
lists padded (with the parent itself) to the bucket width, so each bucket is one gather + one max.

For small inputs (rows x ancestor pairs below ``PAIRS_LIMIT``, e.g. the batch-of-4 tabular runs) a
second method costs fewer operations: one scatter-max over all (node, ancestor) pairs, then a second
scatter to find which descendant attained it.  Both give the same values; ``method`` selects one.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from seabed_hmc.hierarchy import Hierarchy


@dataclass
class _Bucket:
    parents: torch.Tensor  # (n,) long: the nodes updated by this bucket
    candidates: torch.Tensor  # (n * width,) long: each parent itself, then its children, padded with itself
    width: int


#: Below this many (row, ancestor pair) entries the scatter-over-pairs method is used (measured on
#: this CPU: faster for a batch of 4 on FunCat and GO, slower from a few dozen rows on).
PAIRS_LIMIT = 200_000
METHODS = ("auto", "levels", "pairs")


@dataclass
class ConstraintPlan:
    """Bottom-up update schedule of a hierarchy (buckets per height level) and its ancestor pairs."""

    num_nodes: int
    buckets: list[_Bucket]
    pair_nodes: torch.Tensor  # (P,) long: node j of every (j, ancestor i) pair, i in A(j), j itself too
    pair_ancestors: torch.Tensor  # (P,) long: ancestor i of that pair
    _on_device: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_hierarchy(cls, hierarchy: Hierarchy) -> ConstraintPlan:
        height = hierarchy.height
        buckets = []
        for level in range(1, int(height.max(initial=0)) + 1):
            nodes = np.flatnonzero(height == level)
            sizes = np.array([len(hierarchy.children[n]) for n in nodes])
            widths = 2 ** np.ceil(np.log2(sizes + 1)).astype(np.int64)  # self + children, padded to 2^k
            for width in np.unique(widths):
                members = nodes[widths == width]
                table = np.repeat(members[:, None], width, axis=1)
                for row, node in enumerate(members):
                    kids = hierarchy.children[node]
                    table[row, 1 : 1 + len(kids)] = kids
                buckets.append(
                    _Bucket(
                        parents=torch.as_tensor(members, dtype=torch.long),
                        candidates=torch.as_tensor(table.reshape(-1), dtype=torch.long),
                        width=int(width),
                    )
                )
        node, ancestor = (torch.as_tensor(a, dtype=torch.long) for a in hierarchy.ancestor_pairs)
        return cls(num_nodes=len(hierarchy), buckets=buckets, pair_nodes=node, pair_ancestors=ancestor)

    def to(self, device: torch.device) -> tuple[list[_Bucket], torch.Tensor, torch.Tensor]:
        """The buckets and the pair indices on ``device`` (cached)."""
        key = str(device)
        if key not in self._on_device:
            buckets = [_Bucket(b.parents.to(device), b.candidates.to(device), b.width) for b in self.buckets]
            self._on_device[key] = (buckets, self.pair_nodes.to(device), self.pair_ancestors.to(device))
        return self._on_device[key]


_PLANS: weakref.WeakKeyDictionary[Hierarchy, ConstraintPlan] = weakref.WeakKeyDictionary()


def constraint_plan(hierarchy: Hierarchy) -> ConstraintPlan:
    """The (cached) bottom-up schedule for ``hierarchy``."""
    plan = _PLANS.get(hierarchy)
    if plan is None:
        plan = _PLANS[hierarchy] = ConstraintPlan.from_hierarchy(hierarchy)
    return plan


def _argmax_by_levels(rows: torch.Tensor, buckets: list[_Bucket]) -> torch.Tensor:
    """rows (M, N) -> argmax indices (M, N), bottom-up over height levels."""
    nodes = rows.shape[1]
    # Work node-major, (nodes, M): gathering whole rows is contiguous memory traffic.  Always a copy:
    # for a single row ``.t().contiguous()`` would alias the caller's tensor.
    best = rows.t().clone(memory_format=torch.contiguous_format)
    rest = best.shape[1]
    argbest = torch.arange(nodes, device=rows.device).unsqueeze(1).expand(nodes, rest).contiguous()
    for bucket in buckets:
        values = best.index_select(0, bucket.candidates).view(-1, bucket.width, rest)
        top, position = values.max(dim=1)
        origin = argbest.index_select(0, bucket.candidates).view(-1, bucket.width, rest)
        best[bucket.parents] = top
        argbest[bucket.parents] = origin.gather(1, position.unsqueeze(1)).squeeze(1)
    return argbest.t()


def _argmax_by_pairs(
    rows: torch.Tensor, pair_nodes: torch.Tensor, pair_ancestors: torch.Tensor
) -> torch.Tensor:
    """rows (M, N) -> argmax indices (M, N) with two scatters over all (node, ancestor) pairs."""
    count, nodes = rows.shape
    values = rows.index_select(1, pair_nodes)  # (M, P): h_j for every pair (j, i)
    targets = pair_ancestors.expand(count, -1)
    best = torch.full_like(rows, float("-inf")).scatter_reduce(1, targets, values, "amax")
    attains = values == best.index_select(1, pair_ancestors)
    candidates = torch.where(attains, pair_nodes.expand(count, -1), -1)
    found = torch.full((count, nodes), -1, dtype=torch.long, device=rows.device)
    found = found.scatter_reduce(1, targets, candidates, "amax")
    self_index = torch.arange(nodes, device=rows.device).expand(count, -1)
    return torch.where(found < 0, self_index, found)  # NaN rows: no pair attains; keep the node itself


@torch.no_grad()
def argmax_descendant(
    scores: torch.Tensor, hierarchy: Hierarchy | ConstraintPlan, method: str = "auto"
) -> torch.Tensor:
    """For each entry of ``scores`` (..., nodes), the index j in D(i) with the largest score.

    ``method``: ``"levels"`` (bottom-up; ties go to the node itself, then the earlier child),
    ``"pairs"`` (one scatter over all ancestor pairs; ties go to the highest index) or ``"auto"``
    (pairs below ``PAIRS_LIMIT`` row-pair entries).  Returns a long tensor of the same shape.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    plan = hierarchy if isinstance(hierarchy, ConstraintPlan) else constraint_plan(hierarchy)
    nodes = scores.shape[-1]
    if nodes != plan.num_nodes:
        raise ValueError(
            f"scores have {nodes} nodes in their last dimension, the hierarchy has {plan.num_nodes}"
        )
    rows = scores.detach().reshape(-1, nodes)
    if rows.shape[0] == 0:
        return torch.zeros(scores.shape, dtype=torch.long, device=scores.device)
    buckets, pair_nodes, pair_ancestors = plan.to(scores.device)
    if method == "auto":
        method = "pairs" if rows.shape[0] * pair_nodes.numel() <= PAIRS_LIMIT else "levels"
    if method == "pairs":
        found = _argmax_by_pairs(rows, pair_nodes, pair_ancestors)
    else:
        found = _argmax_by_levels(rows, buckets)
    return found.reshape(scores.shape)


def max_constraint(
    scores: torch.Tensor, hierarchy: Hierarchy | ConstraintPlan, method: str = "auto"
) -> torch.Tensor:
    """Coherent scores ĥ_i = max_{j in D(i)} h_j for ``scores`` of shape (..., nodes).

    Works on probabilities or logits (the max commutes with the sigmoid).  Differentiable: the
    gradient of ĥ_i goes to the maximising descendant.  Memory and time are O(batch x (N + edges)).
    """
    return torch.gather(scores, -1, argmax_descendant(scores, hierarchy, method))


def mcloss_inputs(
    logits: torch.Tensor, targets: torch.Tensor, hierarchy: Hierarchy | ConstraintPlan
) -> torch.Tensor:
    """The per-node values fed to BCE-with-logits by MCLoss (METHOD.md section 3), in logit space.

        z_i = max_{j in D(i)} h_j                      where y_i = 0
        z_i = max_{j in D(i), y_j = 1} h_j             where y_i = 1

    Args:
        logits: (..., nodes) unconstrained logits, e.g. (heads, batch, nodes).
        targets: 0/1 targets broadcastable to ``logits`` (ancestor-closed), e.g. (batch, nodes).
    """
    positive = targets > 0.5
    constrained = max_constraint(logits, hierarchy)
    # Non-positive descendants are excluded (not multiplied by zero): -inf never wins the max,
    # and a positive node always has at least itself among its positive descendants.
    positive_only = logits.masked_fill(~positive, float("-inf"))
    positive_max = max_constraint(positive_only, hierarchy)
    return torch.where(positive, positive_max, constrained)
