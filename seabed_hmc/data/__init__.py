"""Data: image manifests and folders, image loading and checking, augmentation pipelines, georeferenced
rasters and labels, and the synthetic seafloor set.

The names of :mod:`seabed_hmc.data.transforms` are loaded on first use, so that importing this package
does not pay for importing albumentations.
"""

from typing import Any

from seabed_hmc.data.image_folders import scan_image_folder
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
)

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
    "DEFAULT_EVAL_TRANSFORMS",
    "DEFAULT_TRAIN_TRANSFORMS",
    "MAX_IMAGE_PIXELS",
    "SPLITS",
    "BadImageError",
    "ImageCheck",
    "ImageCheckError",
    "ImageDataset",
    "ImageTable",
    "ManifestError",
    "ManifestLabelError",
    "TransformSpecError",
    "available_transforms",
    "build_transform",
    "check_images",
    "collate_skip_bad",
    "dataset_statistics",
    "load_image",
    "read_manifest",
    "scan_image_folder",
]
