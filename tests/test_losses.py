"""Node weights, uncertainty modes and the full objective against direct NumPy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc.losses import (
    MULTI_HEAD_MODES,
    PRESETS,
    UNCERTAINTY_MODES,
    RareNodeFocalLoss,
    build_loss,
    node_frequencies,
    node_weights,
    uncertainty,
)

EPS = 1e-10


@pytest.fixture
def tree() -> Hierarchy:
    #        A (root, not evaluated)
    #      /   \
    #     B     C
    #    / \
    #   D   E
    return Hierarchy(
        ["A", "A > B", "A > C", "A > B > D", "A > B > E"], [[], ["A"], ["A"], ["A > B"], ["A > B"]]
    )


@pytest.fixture
def labelled(tree):
    # five samples; the last is annotated only to B (D and E unknown)
    return tree.encode(["A > B > D", "A > C", "A > B > E", "A > C", "A > B"], complete=[1, 1, 1, 1, 0])


# ---------------------------------------------------------------------------------------- node weights
def test_node_weights_exact_hand_worked(tree, labelled):
    targets, mask = labelled
    # counts over known entries: B 3 of 5, C 2 of 5, D 1 of 4, E 1 of 4;  D = 5 samples, K = 4 evaluated
    # w = 5 / (4 f): B 5/12, C 5/8, D 5/4, E 5/4;  min 5/12, max 5/4
    # w+ = 0.25 + (5/4) (w - 5/12) / (5/4 - 5/12):  B 0.25, C 0.5625, D 1.5, E 1.5;  root A -> 1
    weights = node_weights(tree, targets, mask)
    np.testing.assert_allclose(weights.numpy(), [1.0, 0.25, 0.5625, 1.5, 1.5])


def test_node_weights_propagated_hand_worked(tree, labelled):
    targets, mask = labelled
    # propagated counts: B = 3 + D 1 + E 1 = 5 -> w = 5/20 = 0.25; C 2 -> 0.625; D, E 1 -> 1.25
    # w+ = 0.25 + 1.25 (w - 0.25) / 1.0:  B 0.25, C 0.71875, D 1.5, E 1.5
    weights = node_weights(tree, targets, mask, frequency="propagated")
    np.testing.assert_allclose(weights.numpy(), [1.0, 0.25, 0.71875, 1.5, 1.5])
    positives, known = node_frequencies(tree, targets, mask, frequency="propagated")
    # A (exact 5) + B 3 + C 2 + D 1 + E 1 = 12
    np.testing.assert_array_equal(positives, [5 + 3 + 2 + 1 + 1, 5, 2, 1, 1])
    np.testing.assert_array_equal(known, [5, 5, 5, 4, 4])


def test_node_weights_ignore_masked_entries(tree, labelled):
    targets, mask = labelled
    changed = targets.clone()
    changed[4, 3] = 1.0  # the last sample's D is unknown: switching it on must change nothing
    torch.testing.assert_close(node_weights(tree, changed, mask), node_weights(tree, targets, mask))
    assert not torch.equal(node_weights(tree, changed, None), node_weights(tree, targets, None))


def test_node_weights_never_seen_and_always_on_get_one(tree):
    targets, _ = tree.encode(["A > B > D", "A > B > D", "A > B"])
    # B always on -> w 1; C and E never seen -> w 1; D: f = 2 of D = 3 -> w = 3 / (4 * 2) = 0.375
    # min 0.375, max 1:  w+ = 0.25 + 1 * (w - 0.375) / 0.625  -> D 0.25, the others 1.25
    np.testing.assert_allclose(node_weights(tree, targets).numpy(), [1.0, 1.25, 1.25, 0.25, 1.25])


def test_node_weights_without_imbalance_are_one(tree):
    targets, _ = tree.encode(["A > B > D", "A > C > ", "A > B > E"][:1] * 2)
    weights = node_weights(tree, targets)  # every node never seen or always on: all w equal
    np.testing.assert_array_equal(weights.numpy(), np.ones(5))


def test_node_weights_reject_bad_input(tree):
    with pytest.raises(ValueError, match="frequency"):
        node_weights(tree, torch.zeros(2, 5), frequency="bogus")
    with pytest.raises(ValueError, match=r"\(samples, 5\)"):
        node_weights(tree, torch.zeros(2, 4))


# ---------------------------------------------------------------------------------------- uncertainty
def numpy_entropy(p):
    # the eps guard makes H2(0) and H2(1) about -1.4e-10; entropies are clamped at 0
    return np.maximum(-p * np.log2(p + EPS) - (1 - p) * np.log2(1 - p + EPS), 0)


def numpy_uncertainty(p: np.ndarray, mode: str) -> np.ndarray:
    """Direct transcription of the METHOD.md table; p is (heads, ..., nodes), float64."""
    heads = p.shape[0]
    mean = p.mean(axis=0)
    if mode == "bbma":
        return 1 - np.abs(2 * mean - 1)
    if mode == "predictive":
        return numpy_entropy(mean)
    if mode == "aleatoric":
        return numpy_entropy(p).mean(axis=0)
    if mode in ("epistemic", "epistemic_kl"):
        total = np.zeros_like(mean)
        for h in range(heads):
            for g in range(heads):
                if h == g:
                    continue
                a, b = p[h], p[g]
                if mode == "epistemic":
                    total += numpy_entropy((a + b) / 2) - (numpy_entropy(a) + numpy_entropy(b)) / 2
                else:
                    kl = a * np.log2((a + EPS) / (b + EPS)) + (1 - a) * np.log2((1 - a + EPS) / (1 - b + EPS))
                    total += np.maximum(kl, 0)
        return total / (heads * (heads - 1))
    if mode == "gmu":
        mu = np.abs(2 * mean - 1)
        sigma = p.std(axis=0, ddof=1)
        gate = 1 - np.exp(-mu / (2 * sigma + EPS))
        return 1 - gate * mu
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", sorted(UNCERTAINTY_MODES))
def test_uncertainty_mode_matches_numpy(mode):
    rng = np.random.default_rng(7)
    p = rng.random((5, 3, 11))
    p[:, 0, :2] = [0.0, 1.0]  # saturated heads
    p[:, 1, 3] = 0.5  # heads in perfect agreement
    result = uncertainty(torch.from_numpy(p), mode).numpy()
    np.testing.assert_allclose(result, numpy_uncertainty(p, mode), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", sorted(UNCERTAINTY_MODES))
def test_uncertainty_range(mode):
    rng = np.random.default_rng(1)
    p = torch.from_numpy(np.concatenate([rng.random((4, 50, 7)), rng.integers(0, 2, (4, 50, 7))], axis=1))
    u = uncertainty(p, mode)
    assert torch.all(u >= 0)
    if mode != "epistemic_kl":
        assert torch.all(u <= 1 + 1e-9)
    else:  # unbounded above: disagreeing saturated heads give ~log2(1/eps) bits
        assert u.max() > 1


def test_uncertainty_extremes():
    agree = torch.full((3, 1, 1), 0.5, dtype=torch.float64)
    assert uncertainty(agree, "bbma").item() == pytest.approx(1.0)
    assert uncertainty(agree, "predictive").item() == pytest.approx(1.0, abs=1e-8)
    assert uncertainty(agree, "epistemic").item() == pytest.approx(0.0, abs=1e-12)
    confident = torch.ones((3, 1, 1), dtype=torch.float64)
    for mode in ("bbma", "predictive", "aleatoric", "epistemic", "gmu"):
        assert uncertainty(confident, mode).item() == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("mode", sorted(MULTI_HEAD_MODES))
def test_single_head_rejected_where_required(mode):
    with pytest.raises(ValueError, match="at least 2 heads"):
        uncertainty(torch.rand(1, 4, 3), mode)


def test_single_head_allowed_for_bbma_and_predictive():
    p = torch.rand(1, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(uncertainty(p, "bbma"), 1 - (2 * p[0] - 1).abs())
    assert uncertainty(p, "predictive").shape == (4, 3)


def test_uncertainty_is_detached_and_mode_checked():
    p = torch.rand(3, 2, 4, requires_grad=True)
    assert not uncertainty(p, "gmu").requires_grad
    with pytest.raises(ValueError, match="unknown uncertainty mode"):
        uncertainty(p, "entropy")


# ---------------------------------------------------------------------------------------- the objective
def numpy_objective(
    logits, targets, mask, hierarchy, weights, weight_target, mode, focal_min, k, reduction, constrained=True
):
    """METHOD.md section 6 written out with loops and NumPy, from the definitions."""
    heads, batch, nodes = logits.shape
    y = targets
    known = mask * hierarchy.evaluated[None, :]
    probabilities = 1 / (1 + np.exp(-logits))
    u = numpy_uncertainty(probabilities, mode) if mode else None
    total = 0.0
    for h in range(heads):
        for b in range(batch):
            for i in range(nodes):
                if not known[b, i]:
                    continue
                members = hierarchy.descendants(i, include_self=True)
                if not constrained:
                    z = logits[h, b, i]
                elif y[b, i] == 1:
                    z = max(logits[h, b, j] for j in members if y[b, j] == 1)
                else:
                    z = max(logits[h, b, j] for j in members)
                bce = max(z, 0) - z * y[b, i] + np.log1p(np.exp(-abs(z)))
                w = 1.0
                if weights is not None:
                    on = y[b, i] == 1 if weight_target == "positive" else y[b, i] == 0
                    w = weights[i] if on else 1.0
                focal = focal_min + u[b, i] ** k if mode else 1.0
                total += w * focal * bce
    if reduction == "sum":
        return total
    return total / (heads * known.sum())


@pytest.mark.parametrize(
    ("weighted", "weight_target", "mode", "k", "reduction"),
    [
        (False, "positive", None, 1.0, "mean"),
        (True, "positive", None, 1.0, "mean"),
        (True, "negative", None, 1.0, "sum"),
        (False, "positive", "bbma", 1.0, "mean"),
        (True, "positive", "gmu", 2.0, "mean"),
        (True, "negative", "epistemic", 1.0, "sum"),
        (True, "positive", "epistemic_kl", 1.0, "mean"),
    ],
)
def test_objective_matches_numpy(tree, labelled, weighted, weight_target, mode, k, reduction):
    targets, mask = labelled
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(3, 5, 5))
    weights = node_weights(tree, targets, mask) if weighted else None
    loss = RareNodeFocalLoss(
        tree,
        weights=weights,
        weight_target=weight_target,
        uncertainty=mode,
        focal_min=0.25,
        k=k,
        reduction=reduction,
    )
    value = loss(torch.from_numpy(logits).float(), targets, mask)
    expected = numpy_objective(
        logits,
        targets.numpy(),
        mask.numpy(),
        tree,
        None if weights is None else weights.numpy(),
        weight_target,
        mode,
        0.25,
        k,
        reduction,
    )
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_flat_baseline_is_plain_bce(tree, labelled):
    targets, mask = labelled
    logits = torch.randn(1, 5, 5)
    loss = build_loss("flat", tree)
    known = mask * torch.from_numpy(tree.evaluated).float()
    expected = (
        torch.nn.functional.binary_cross_entropy_with_logits(logits[0], targets, reduction="none") * known
    ).sum() / known.sum()
    torch.testing.assert_close(loss(logits, targets, mask), expected)


def test_presets_build_what_their_names_say(tree, labelled):
    targets, mask = labelled
    control = build_loss("control", tree)
    assert control.weights is None and control.uncertainty is None and PRESETS["control"].heads == 1
    imbalance = build_loss("imbalance", tree, targets, mask)
    assert imbalance.weights is not None and imbalance.uncertainty is None
    focal = build_loss("focal", tree)
    assert focal.weights is None and focal.uncertainty == "bbma"
    rare = build_loss("rare_node", tree, targets, mask, uncertainty="gmu", weight_target="negative")
    assert rare.weights is not None and rare.uncertainty == "gmu" and rare.weight_target == "negative"
    assert PRESETS["rare_node"].heads == 20
    with pytest.raises(ValueError, match="training targets"):
        build_loss("rare_node", tree)
    with pytest.raises(ValueError, match="unknown loss configuration 'rare'"):
        build_loss("rare", tree)


def test_objective_rejects_bad_shapes_and_settings(tree):
    loss = RareNodeFocalLoss(tree, uncertainty="gmu")
    with pytest.raises(ValueError, match="at least 2 heads"):
        loss(torch.randn(1, 2, 5), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="logits must be"):
        loss(torch.randn(2, 3, 5), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="weight_target"):
        RareNodeFocalLoss(tree, weight_target="both")
    with pytest.raises(ValueError, match=r"weights must have shape \(5,\)"):
        RareNodeFocalLoss(tree, weights=torch.ones(4))


def test_masked_and_unevaluated_entries_do_not_move_the_loss(tree, labelled):
    targets, mask = labelled
    loss = build_loss("rare_node", tree, targets, mask)
    logits = torch.randn(4, 5, 5, requires_grad=True)
    base = loss(logits, targets, mask)
    base.backward()
    # Sample 4 is labelled only to B: its D and E are unknown, and (being negative in the targets) they
    # are excluded from B's positive max.  The root A is not evaluated and is nobody's descendant.
    assert torch.all(logits.grad[:, 4, 3:] == 0)
    assert torch.all(logits.grad[:, :, 0] == 0)
    perturbed = logits.detach().clone()
    perturbed[:, 4, 3:] = torch.randn(4, 2) * 10
    perturbed[:, :, 0] = torch.randn(4, 5) * 10
    assert loss(perturbed, targets, mask).item() == pytest.approx(base.item(), rel=1e-6)
    changed_targets = targets.clone()
    changed_targets[4, 3] = 0.0
    assert loss(logits, changed_targets, mask).item() == pytest.approx(base.item(), rel=1e-6)
