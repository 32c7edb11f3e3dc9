"""Fold BatchNorm into the preceding convolution for inference.

In eval mode a BatchNorm layer is a fixed per-channel affine map, ``y = (x - mean) / sqrt(var + eps) *
gamma + beta``, and when ``x`` is a convolution's output the map can be moved into the convolution:
``W' = W * s`` and ``b' = (b - mean) * s + beta`` per output channel with ``s = gamma / sqrt(var +
eps)``.  The BatchNorm pass disappears: for MobileNetV2 it was ~30% of the forward time on the CPU
(``torch.batch_norm`` 2.8 s of 9.7 s over 2,025 tiles; ``scripts/bench_tiles.py`` measures the result).

Which convolution feeds which BatchNorm is read from the model's graph (``torch.fx``), not from
attribute names, so any timm CNN that traces works; a pair is folded only when the BatchNorm's input is
the convolution's output and nothing else uses that output.  timm's ``BatchNormAct2d`` (BatchNorm, then
dropout and activation) keeps its dropout and activation.  Models that do not trace are left as they
are.  Only for models that stay in eval mode (inference, frozen encoders): the folded model no longer
has the BatchNorm statistics, so it must not be trained or saved as a checkpoint.
"""

from __future__ import annotations

import logging

import torch
from torch import fx, nn

log = logging.getLogger(__name__)


class _Tracer(fx.Tracer):
    """BatchNorm layers (timm's BatchNormAct2d included) stay single calls in the graph."""

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return isinstance(module, nn.modules.batchnorm._BatchNorm) or super().is_leaf_module(module, name)


def _post_norm(norm: nn.Module) -> nn.Module:
    """What remains of a BatchNorm module once its affine map is folded away."""
    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    return nn.Sequential(norm.drop, norm.act)  # timm's BatchNormAct2d: dropout, then activation


def _foldable_norm(norm: nn.Module) -> bool:
    """Plain BatchNorm2d or timm's BatchNormAct2d, in eval mode with running statistics."""
    act_norm = type(norm).__name__ == "BatchNormAct2d" and hasattr(norm, "drop") and hasattr(norm, "act")
    if type(norm) is not nn.BatchNorm2d and not act_norm:
        return False
    return norm.track_running_stats and norm.running_mean is not None and not norm.training


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a 2-D convolution into it, in place.

    Returns the number of layers folded (0 when the model does not trace). Outputs are unchanged up
    to float rounding (tests/test_batchnorm_fold.py)."""
    try:
        graph = _Tracer().trace(model)
    except Exception as error:  # any tracing failure (data-dependent control flow, ...): leave as is
        log.debug("BatchNorm not folded: %s does not trace (%s)", type(model).__name__, error)
        return 0
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    folded = 0
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1 or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if not isinstance(source, fx.Node) or source.op != "call_module" or calls[source.target] != 1:
            continue
        if len(source.users) != 1:
            continue
        norm, conv = model.get_submodule(node.target), model.get_submodule(source.target)
        if not isinstance(conv, nn.Conv2d) or not _foldable_norm(norm):
            continue
        if norm.num_features != conv.out_channels:
            continue
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.affine:
            scale = scale * norm.weight
        bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
        bias = (bias - norm.running_mean) * scale + (norm.bias if norm.affine else 0.0)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
        parent, _, child = node.target.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, _post_norm(norm).eval())
        folded += 1
    return folded
