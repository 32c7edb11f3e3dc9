"""The rare-node focal loss: node weights, ensemble uncertainty modes, the objective and its presets."""

from seabed_hmc.losses.node_weights import FREQUENCY_MODES, node_frequencies, node_weights
from seabed_hmc.losses.objective import PRESETS, LossPreset, RareNodeFocalLoss, build_loss
from seabed_hmc.losses.uncertainty import MULTI_HEAD_MODES, UNCERTAINTY_MODES, binary_entropy, uncertainty

__all__ = [
    "FREQUENCY_MODES",
    "MULTI_HEAD_MODES",
    "PRESETS",
    "UNCERTAINTY_MODES",
    "LossPreset",
    "RareNodeFocalLoss",
    "binary_entropy",
    "build_loss",
    "node_frequencies",
    "node_weights",
    "uncertainty",
]
