"""The batched ensemble head against a per-head loop, and the ensemble prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seabed_hmc.constraint import max_constraint
from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.models import EnsembleHead, ensemble_probabilities


def loop_reference(head: EnsembleHead, features: torch.Tensor) -> torch.Tensor:
    """The same MLPs evaluated head by head with plain matmuls (eval mode: no dropout)."""
    outputs = []
    for h in range(head.heads):
        x = features
        for index, (weight, bias) in enumerate(zip(head.weights, head.biases, strict=True)):
            x = x @ weight[h] + bias[h, 0]
            if index < len(head.weights) - 1:
                x = torch.relu(x)
        outputs.append(x)
    return torch.stack(outputs)


@pytest.mark.parametrize(("heads", "hidden", "layers"), [(1, None, 2), (5, 8, 2), (3, 6, 1), (4, 10, 3)])
def test_batched_heads_equal_loop(heads, hidden, layers):
    torch.manual_seed(0)
    head = EnsembleHead(12, 7, heads=heads, hidden=hidden, layers=layers).eval()
    features = torch.randn(9, 12)
    logits = head(features)
    assert logits.shape == (heads, 9, 7)
    torch.testing.assert_close(logits, loop_reference(head, features), rtol=1e-5, atol=1e-5)


def test_layer_shapes_follow_method_defaults():
    head = EnsembleHead(16, 5, heads=2)
    assert [tuple(w.shape) for w in head.weights] == [(2, 16, 16), (2, 16, 16), (2, 16, 5)]
    assert head.dropout.p == 0.7


def test_heads_differ_in_initialisation_and_dropout():
    torch.manual_seed(1)
    head = EnsembleHead(8, 4, heads=3)
    assert not torch.equal(head.weights[0][0], head.weights[0][1])
    features = torch.randn(6, 8)
    head.train()
    with torch.no_grad():
        for w, b in zip(head.weights, head.biases, strict=True):  # identical heads: only dropout differs
            w.copy_(w[:1].expand_as(w))
            b.copy_(b[:1].expand_as(b))
        logits = head(features)
    assert not torch.equal(logits[0], logits[1])
    head.eval()
    with torch.no_grad():
        logits = head(features)
    torch.testing.assert_close(logits[0], logits[1])


def test_gradients_reach_every_head():
    head = EnsembleHead(8, 4, heads=3, dropout=0.0)
    head(torch.randn(5, 8)).sum().backward()
    for weight in head.weights:
        assert torch.all(weight.grad.flatten(1).abs().sum(dim=1) > 0)


def test_ensemble_probabilities_mean_of_constrained():
    h = Hierarchy(["A", "A > B", "A > C", "A > B > D"], [[], ["A"], ["A"], ["A > B"]])
    logits = torch.randn(4, 6, 4)
    mean, spread = ensemble_probabilities(logits, h)
    constrained = torch.sigmoid(max_constraint(logits, h))
    torch.testing.assert_close(mean, constrained.mean(0))
    torch.testing.assert_close(spread, constrained.std(0))
    for child, parents in enumerate(h.parents):  # the mean of coherent vectors is coherent
        for parent in parents:
            assert torch.all(mean[:, parent] >= mean[:, child] - 1e-7)
    single, zero = ensemble_probabilities(logits[:1], h)
    assert torch.all(zero == 0)
    np.testing.assert_allclose(single.numpy(), constrained[0].numpy(), rtol=1e-6)


def test_invalid_sizes_rejected():
    with pytest.raises(ValueError, match="at least one head"):
        EnsembleHead(8, 4, heads=0)
