"""Training, evaluation, inference, feature caching, tiles and the ablation grid."""
