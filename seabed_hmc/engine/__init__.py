"""Training, evaluation, inference, feature caching and tile prediction."""
