"""Training, evaluation and prediction loops."""

from seabed_hmc.engine.tabular import TabularCheckpoint, TabularSettings, predict_tabular, train_tabular

__all__ = ["TabularCheckpoint", "TabularSettings", "predict_tabular", "train_tabular"]
