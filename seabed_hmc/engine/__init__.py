"""Training, evaluation and prediction loops."""

from seabed_hmc.engine.tabular import TabularSettings, predict_tabular, train_tabular

__all__ = ["TabularSettings", "predict_tabular", "train_tabular"]
