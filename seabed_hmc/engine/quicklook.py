"""For a survey report: the area each node covers on a class map, and a quick-look PNG of the map with
its legend and a scale bar.

A cell of the class map holds the deepest node the decision predicts there; the decision is closed
under ancestors, so a node's area is that of its own cells and of every descendant's.  Areas are in
square metres where the CRS is projected (its linear unit converted to metres), and left empty where
it is geographic (a cell's area then varies with latitude).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from seabed_hmc.atomic import atomic_path


def cell_area_m2(transform, crs) -> float | None:
    """The area of one output cell in square metres, or None for a geographic (or unknown) CRS."""
    if crs is None or not crs.is_projected:
        return None
    metres = crs.linear_units_factor[1]
    return abs(transform.a * transform.e - transform.b * transform.d) * metres**2


def code_areas(class_map: np.ndarray, hierarchy, cell_area: float | None) -> pd.DataFrame:
    """classes.csv's area columns, one row per code (0 nodata, 1..N the node 1 + its index, N + 1 an
    abstention): ``cells`` (cells with that code: for a node, those whose deepest decided node it is),
    ``map_percent`` (that share of the mapped cells, those with a decision or an abstention),
    ``cells_with_descendants`` and ``percent`` (a node with its descendants; for nodata and abstention
    their own cells) and ``area_m2`` of those."""
    nodes = len(hierarchy)
    counts = np.bincount(class_map.ravel().astype(np.int64), minlength=nodes + 2)
    closed = counts.copy()
    for node in range(nodes):
        for ancestor in hierarchy.ancestors(node):
            closed[ancestor + 1] += counts[node + 1]
    mapped = max(int(counts[1:].sum()), 1)
    table = pd.DataFrame(
        {
            "cells": counts,
            "map_percent": np.round(100 * counts / mapped, 3),
            "cells_with_descendants": closed,
            "percent": np.round(100 * closed / mapped, 3),
            "area_m2": np.round(closed * cell_area, 3) if cell_area is not None else np.nan,
        }
    )
    table.loc[0, ["map_percent", "percent"]] = np.nan  # nodata is no share of the map
    return table


def _nice_length(span: float) -> float:
    """A round length (1, 2 or 5 times a power of ten) near a fifth of ``span``."""
    target = span / 5
    power = 10 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target)


def write_quicklook(
    path: Path, class_map: np.ndarray, colours: dict, classes: pd.DataFrame, transform, crs, title: str,
    max_pixels: int = 1200,
) -> None:  # fmt: skip
    """The class map as a PNG: nearest-neighbour thinned to ``max_pixels`` on its long side, in the
    raster's coordinates, with a legend of the nodes on it (their share of the mapped cells) and,
    for a projected CRS, a scale bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    step = max(1, math.ceil(max(class_map.shape) / max_pixels))
    thinned = class_map[::step, ::step]
    lookup = np.zeros((max(colours) + 1, 4), dtype=np.uint8)
    for code, rgba in colours.items():
        lookup[code] = rgba
    height, width = class_map.shape
    west, north = transform @ (0, 0)
    east, south = transform @ (width, height)
    figure, axes = plt.subplots(figsize=(9, 6))
    axes.imshow(lookup[thinned], extent=(west, east, south, north), interpolation="nearest")
    shown = classes[(classes["cells"] > 0) & (classes["code"] > 0)]
    handles = [
        Patch(color=colour, label=f"{' > '.join(node.split(' > ')[-2:])} ({share:.1f}%)")
        for node, colour, share in zip(shown["node"], shown["colour"], shown["map_percent"], strict=True)
    ]
    axes.legend(handles=handles, fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left", title="deepest node")
    projected = crs is not None and crs.is_projected
    unit = "m" if projected else "degrees"
    axes.set_xlabel(f"easting ({unit})" if projected else "longitude")
    axes.set_ylabel(f"northing ({unit})" if projected else "latitude")
    if projected:
        metres = crs.linear_units_factor[1]
        span = abs(east - west) * metres
        length = _nice_length(span)
        x0, y0 = min(west, east) + 0.05 * abs(east - west), min(south, north) + 0.05 * abs(north - south)
        axes.plot([x0, x0 + length / metres], [y0, y0], color="black", lw=3, solid_capstyle="butt")
        label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
        axes.text(x0, y0 + 0.02 * abs(north - south), label, fontsize=8)
    axes.set_title(title, fontsize=9)
    axes.ticklabel_format(useOffset=False, style="plain")
    axes.tick_params(labelsize=7)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)
