"""Data: the HMC benchmark ARFF files with their published preprocessing, and oversampling baselines."""

from seabed_hmc.data.arff import (
    ARFF_LABEL_SEPARATOR,
    FAMILIES,
    MISSING,
    OTHER_DATASETS,
    ArffData,
    ArffError,
    HMCDataset,
    HMCSplits,
    Standardiser,
    available_hmc_datasets,
    load_hmc_dataset,
    prepare_hmc_splits,
    read_arff,
)
from seabed_hmc.data.oversampling import hros_indices

__all__ = [
    "ARFF_LABEL_SEPARATOR",
    "FAMILIES",
    "MISSING",
    "OTHER_DATASETS",
    "ArffData",
    "ArffError",
    "HMCDataset",
    "HMCSplits",
    "Standardiser",
    "available_hmc_datasets",
    "hros_indices",
    "load_hmc_dataset",
    "prepare_hmc_splits",
    "read_arff",
]
