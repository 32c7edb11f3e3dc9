"""Hierarchies of named nodes (trees and DAGs), their loaders, validation and label encoding.

The loaders of :mod:`seabed_hmc.hierarchy.loaders` are also static methods of :class:`Hierarchy`:
``Hierarchy.from_paths``, ``from_path_file``, ``from_edges``, ``from_parent_table``,
``from_catami_json``, ``from_folder``, ``from_arff``, and ``Hierarchy.load`` (= :func:`load_hierarchy`).
"""

from seabed_hmc.hierarchy._core import (
    ARTIFICIAL_ROOT,
    DEFAULT_SEPARATOR,
    LABEL_SEPARATOR,
    Hierarchy,
    HierarchyError,
    LabelError,
)
from seabed_hmc.hierarchy.loaders import (
    GO_ROOTS,
    from_arff,
    from_catami_json,
    from_edges,
    from_folder,
    from_parent_table,
    from_path_file,
    from_paths,
    load_hierarchy,
)

# Static methods keep each loader's own signature and docstring (help(Hierarchy.from_paths)).
Hierarchy.from_paths = staticmethod(from_paths)
Hierarchy.from_path_file = staticmethod(from_path_file)
Hierarchy.from_edges = staticmethod(from_edges)
Hierarchy.from_parent_table = staticmethod(from_parent_table)
Hierarchy.from_catami_json = staticmethod(from_catami_json)
Hierarchy.from_folder = staticmethod(from_folder)
Hierarchy.from_arff = staticmethod(from_arff)
Hierarchy.load = staticmethod(load_hierarchy)

__all__ = [
    "ARTIFICIAL_ROOT",
    "DEFAULT_SEPARATOR",
    "GO_ROOTS",
    "LABEL_SEPARATOR",
    "Hierarchy",
    "HierarchyError",
    "LabelError",
    "from_arff",
    "from_catami_json",
    "from_edges",
    "from_folder",
    "from_parent_table",
    "from_path_file",
    "from_paths",
    "load_hierarchy",
]
