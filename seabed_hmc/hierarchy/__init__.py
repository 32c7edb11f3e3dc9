"""Hierarchies of named nodes (trees and DAGs), their loaders, validation and label encoding."""

from seabed_hmc.hierarchy._core import (
    ARTIFICIAL_ROOT,
    DEFAULT_SEPARATOR,
    LABEL_SEPARATOR,
    Hierarchy,
    HierarchyError,
    LabelError,
)

__all__ = [
    "ARTIFICIAL_ROOT",
    "DEFAULT_SEPARATOR",
    "LABEL_SEPARATOR",
    "Hierarchy",
    "HierarchyError",
    "LabelError",
]
