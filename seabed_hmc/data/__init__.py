"""Data: image manifests and folders, image loading and checking, augmentation pipelines, the HMC
benchmark ARFF files with their published preprocessing, and oversampling baselines.

The names of :mod:`seabed_hmc.data.transforms` are loaded on first use, so that importing this package
(the tabular benchmarks do) does not pay for importing albumentations.
"""

from typing import Any

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
    prepare_hmc_fit_splits,
    prepare_hmc_splits,
    read_arff,
)
from seabed_hmc.data.images import (
    MAX_IMAGE_PIXELS,
    BadImageError,
    ImageCheck,
    ImageCheckError,
    ImageDataset,
    check_images,
    collate_skip_bad,
    dataset_statistics,
    load_image,
)
from seabed_hmc.data.manifest import (
    SPLITS,
    ImageTable,
    ManifestError,
    ManifestLabelError,
    read_manifest,
    scan_image_folder,
)
from seabed_hmc.data.oversampling import hros_indices

_LAZY_TRANSFORMS = (
    "DEFAULT_EVAL_TRANSFORMS",
    "DEFAULT_TRAIN_TRANSFORMS",
    "TransformSpecError",
    "available_transforms",
    "build_transform",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY_TRANSFORMS:
        from seabed_hmc.data import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ARFF_LABEL_SEPARATOR",
    "DEFAULT_EVAL_TRANSFORMS",
    "DEFAULT_TRAIN_TRANSFORMS",
    "FAMILIES",
    "MAX_IMAGE_PIXELS",
    "MISSING",
    "OTHER_DATASETS",
    "SPLITS",
    "ArffData",
    "ArffError",
    "BadImageError",
    "HMCDataset",
    "HMCSplits",
    "ImageCheck",
    "ImageCheckError",
    "ImageDataset",
    "ImageTable",
    "ManifestError",
    "ManifestLabelError",
    "Standardiser",
    "TransformSpecError",
    "available_hmc_datasets",
    "available_transforms",
    "build_transform",
    "check_images",
    "collate_skip_bad",
    "dataset_statistics",
    "hros_indices",
    "load_hmc_dataset",
    "load_image",
    "prepare_hmc_fit_splits",
    "prepare_hmc_splits",
    "read_arff",
    "read_manifest",
    "scan_image_folder",
]
