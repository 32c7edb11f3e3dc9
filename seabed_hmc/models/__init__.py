"""Models: the batched ensemble head (encoders come with the image pipeline)."""

from seabed_hmc.models.heads import EnsembleHead, ensemble_probabilities

__all__ = ["EnsembleHead", "ensemble_probabilities"]
