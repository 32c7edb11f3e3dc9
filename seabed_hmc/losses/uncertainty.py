"""Per-(sample, node) uncertainty from an ensemble's probabilities (METHOD.md section 5).

Every function takes ``probabilities`` of shape (heads, ..., nodes): the heads' unconstrained sigmoid
outputs.  It returns u of shape (..., nodes), detached from the graph (shared by every head's loss
term).  Entropies and divergences are in bits, with logarithms guarded by ``EPS``.

Ranges: ``bbma``, ``predictive``, ``aleatoric``, ``epistemic`` and ``gmu`` lie in [0, 1];
``epistemic_kl`` lies in [0, ∞): binary KL is unbounded above (a head at p ≈ 0 against one at
p ≈ 1 gives about log2(1/EPS) ≈ 33 bits), so its focal factor can be large.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EPS = 1e-10


def _mean(p: torch.Tensor) -> torch.Tensor:
    return p.mean(dim=0)


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """H₂(p) in bits, guarded: −p log2(p + ε) − (1 − p) log2(1 − p + ε), clamped at 0.

    The guard makes H₂(0) and H₂(1) about −1.4e-10 bits; the clamp keeps entropies in [0, 1].
    """
    return (-p * torch.log2(p + EPS) - (1 - p) * torch.log2(1 - p + EPS)).clamp(min=0)


def _require_heads(probabilities: torch.Tensor, mode: str) -> None:
    if probabilities.shape[0] < 2:
        raise ValueError(
            f"uncertainty mode {mode!r} measures disagreement between heads and needs at least 2 heads, "
            f"got {probabilities.shape[0]}; use 'bbma' or 'predictive' with a single head, or more heads"
        )


def bbma(probabilities: torch.Tensor) -> torch.Tensor:
    """Binary Bayesian model averaging: 1 − |2p̄ − 1|."""
    return 1 - (2 * _mean(probabilities) - 1).abs()


def predictive(probabilities: torch.Tensor) -> torch.Tensor:
    """Entropy of the mean prediction, H₂(p̄)."""
    return binary_entropy(_mean(probabilities))


def aleatoric(probabilities: torch.Tensor) -> torch.Tensor:
    """Mean over heads of H₂(p_h)."""
    _require_heads(probabilities, "aleatoric")
    return binary_entropy(probabilities).mean(dim=0)


def _pairwise_mean(probabilities: torch.Tensor, divergence: Callable) -> torch.Tensor:
    """Mean of divergence(p_h, p_h') over ordered pairs h ≠ h' (one head against all per step)."""
    heads = probabilities.shape[0]
    total = torch.zeros_like(probabilities[0])
    for h in range(heads):
        d = divergence(probabilities[h].unsqueeze(0), probabilities)
        total += d.sum(dim=0) - d[h]
    return total / (heads * (heads - 1))


def _js_bits(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return binary_entropy((p + q) / 2) - (binary_entropy(p) + binary_entropy(q)) / 2


def _kl_bits(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    kl = p * torch.log2((p + EPS) / (q + EPS)) + (1 - p) * torch.log2((1 - p + EPS) / (1 - q + EPS))
    return kl.clamp(min=0)


def epistemic(probabilities: torch.Tensor) -> torch.Tensor:
    """Mean over ordered head pairs of the binary Jensen–Shannon divergence (bits)."""
    _require_heads(probabilities, "epistemic")
    return _pairwise_mean(probabilities, _js_bits)


def epistemic_kl(probabilities: torch.Tensor) -> torch.Tensor:
    """Mean over ordered head pairs of binary KL(p_h ‖ p_h') in bits, each clamped at 0. Unbounded above."""
    _require_heads(probabilities, "epistemic_kl")
    return _pairwise_mean(probabilities, _kl_bits)


def gmu(probabilities: torch.Tensor) -> torch.Tensor:
    """Gated margin uncertainty: μ = |2p̄ − 1|, σ = std over heads (n − 1),
    g = 1 − exp(−μ / (2σ + ε)), u = 1 − g·μ."""
    _require_heads(probabilities, "gmu")
    margin = (2 * _mean(probabilities) - 1).abs()
    spread = probabilities.std(dim=0, unbiased=True)
    gate = 1 - torch.exp(-margin / (2 * spread + EPS))
    return 1 - gate * margin


UNCERTAINTY_MODES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "bbma": bbma,
    "predictive": predictive,
    "aleatoric": aleatoric,
    "epistemic": epistemic,
    "epistemic_kl": epistemic_kl,
    "gmu": gmu,
}

#: Modes that need at least two heads.
MULTI_HEAD_MODES = frozenset({"aleatoric", "epistemic", "epistemic_kl", "gmu"})


@torch.no_grad()
def uncertainty(probabilities: torch.Tensor, mode: str) -> torch.Tensor:
    """u of shape (..., nodes) for ``probabilities`` (heads, ..., nodes), detached."""
    try:
        function = UNCERTAINTY_MODES[mode]
    except KeyError:
        raise ValueError(
            f"unknown uncertainty mode {mode!r}; choose one of {sorted(UNCERTAINTY_MODES)}"
        ) from None
    if probabilities.dim() < 2:
        raise ValueError(
            f"probabilities must have shape (heads, ..., nodes), got {tuple(probabilities.shape)}"
        )
    return function(probabilities.detach())
