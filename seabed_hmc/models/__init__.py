"""Models: timm encoders (local weights, freeze, noise-mix, truncate) and the batched ensemble head."""

from seabed_hmc.models.encoders import (
    KNOWN_WEIGHTS,
    Encoder,
    KnownWeights,
    build_encoder,
    load_known_weights,
    map_state_dict_in_order,
    noise_mix,
)
from seabed_hmc.models.heads import EnsembleHead, ensemble_probabilities

__all__ = [
    "KNOWN_WEIGHTS",
    "Encoder",
    "EnsembleHead",
    "KnownWeights",
    "build_encoder",
    "ensemble_probabilities",
    "load_known_weights",
    "map_state_dict_in_order",
    "noise_mix",
]
