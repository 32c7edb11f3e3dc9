"""The output side of ``predict-tiles``: the output grid, the sums of tile probabilities on it, and
the maps and tables written from them (classes, probabilities and uncertainty COGs, tiles.csv,
tiles.geojson, classes.csv with each node's area, quicklook.png, summary.json).  The run itself is
:mod:`seabed_hmc.engine.tiles`."""

from __future__ import annotations

import colorsys
import functools
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import rasterio.shutil
import torch
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from seabed_hmc.atomic import atomic_path, write_text_atomic
from seabed_hmc.data.geo import RasterInfo, TileGrid
from seabed_hmc.data.vector_files import write_geojson
from seabed_hmc.decisions import Decision
from seabed_hmc.engine.quicklook import cell_area_m2, code_areas, write_quicklook


# ----------------------------------------------------------------------------------------- the grid
class OutputGrid:
    """Output cells over the tiled region: ``cell`` input pixels each, aligned to the input grid."""

    def __init__(self, grid: TileGrid, cell: tuple[int, int]):
        windows = grid.windows
        self.row0, self.col0 = int(windows[:, 0].min()), int(windows[:, 1].min())
        row1 = int((windows[:, 0] + windows[:, 2]).max())
        col1 = int((windows[:, 1] + windows[:, 3]).max())
        self.cell = cell
        self.windows = windows
        self.max_cells = (math.ceil(grid.size[0] / cell[0]) + 1, math.ceil(grid.size[1] / cell[1]) + 1)
        self.height = math.ceil((row1 - self.row0) / cell[0])
        self.width = math.ceil((col1 - self.col0) / cell[1])
        self.transform = (
            grid.info.transform @ Affine.translation(self.col0, self.row0) @ Affine.scale(cell[1], cell[0])
        )

    def cells(self, start: int, length: int, axis: int) -> tuple[int, int]:
        """The output cells (first, stop) along an axis whose centres lie in [start, start + length)."""
        size, origin = self.cell[axis], (self.row0, self.col0)[axis]
        first = math.ceil((start - origin) / size - 0.5)
        stop = math.ceil((start + length - origin) / size - 0.5)
        limit = self.height if axis == 0 else self.width
        return max(first, 0), min(stop, limit)

    def valid_cells(self, valid: np.ndarray, row: int, col: int, rows: tuple, cols: tuple) -> np.ndarray:
        """Per covered cell, whether any valid input pixel of the tile falls inside the cell (the part
        of the cell inside the tile), counted with an integral image of the tile's mask."""
        if valid.all():  # the common case: a cell holds a valid pixel where it overlaps the tile
            (h, w), (size_h, size_w) = valid.shape, self.cell
            down = _overlapping(rows[1] - rows[0], rows[0] * size_h + self.row0 - row, size_h, h)
            across = _overlapping(cols[1] - cols[0], cols[0] * size_w + self.col0 - col, size_w, w)
            return down[:, None] & across[None, :]
        spans = []
        for (first, stop), start, axis, extent in (
            (rows, row, 0, valid.shape[0]),
            (cols, col, 1, valid.shape[1]),
        ):
            size, origin = self.cell[axis], (self.row0, self.col0)[axis]
            cells = np.arange(first, stop)
            lower = np.clip(cells * size + origin - start, 0, extent)
            upper = np.clip((cells + 1) * size + origin - start, 0, extent)
            spans.append((lower, upper))
        (r0, r1), (c0, c1) = spans
        integral = np.zeros((valid.shape[0] + 1, valid.shape[1] + 1), dtype=np.int64)
        integral[1:, 1:] = valid.astype(np.int64).cumsum(axis=0).cumsum(axis=1)
        counts = integral[r1][:, c1] - integral[r0][:, c1] - integral[r1][:, c0] + integral[r0][:, c0]
        return counts > 0


@functools.lru_cache(maxsize=256)
def _overlapping(count: int, offset: int, size: int, extent: int) -> np.ndarray:
    """Which of ``count`` cells of ``size`` pixels, the first starting ``offset`` pixels from the tile's
    start, overlap the tile's ``extent`` pixels (the same few answers for every tile of a regular
    grid: cached)."""
    lower = np.clip(np.arange(count) * size + offset, 0, extent)
    upper = np.clip((np.arange(count) + 1) * size + offset, 0, extent)
    overlapping = upper > lower
    overlapping.flags.writeable = False
    return overlapping


def summarise_tile(output: OutputGrid, valid: np.ndarray, index: int) -> dict:
    """In the DataLoader worker: the output cells a tile covers and which of them hold a valid input
    pixel, as fixed-shape tensors (the full-resolution mask stays in the worker)."""
    row, col, height, width = (int(v) for v in output.windows[index])
    rows, cols = output.cells(row, height, 0), output.cells(col, width, 1)
    flags = np.zeros(output.max_cells, dtype=bool)
    if rows[1] > rows[0] and cols[1] > cols[0]:
        cells = output.valid_cells(valid[:height, :width], row, col, rows, cols)
        flags[: cells.shape[0], : cells.shape[1]] = cells
    return {"cell_valid": torch.from_numpy(flags), "cell_span": torch.tensor([*rows, *cols])}


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_output_fits(nodes: int, height: int, width: int, available: int | None = None) -> int:
    """The bytes the output sums need (:class:`Accumulator`: two float32 per node and cell, a weight and
    a flag), or an error before any tile is read when they exceed the memory available."""
    needed = height * width * (8 * nodes + 5)
    available = available_memory() if available is None else available
    if available is not None and needed > 0.8 * available:
        raise MemoryError(
            f"the output grid is {height:,} x {width:,} cells for {nodes} nodes: its sums need "
            f"{needed / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB of memory available; "
            "give a larger --cell (doubling it quarters this) or a smaller --roi"
        )
    return needed


class Accumulator:
    """Sums of probabilities and spreads per output cell and node, tile counts and valid flags."""

    def __init__(self, nodes: int, height: int, width: int):
        self.probability = np.zeros((nodes, height, width), dtype=np.float32)
        self.spread = np.zeros((nodes, height, width), dtype=np.float32)
        self.weight = np.zeros((height, width), dtype=np.float32)
        self.valid = np.zeros((height, width), dtype=bool)

    def add(self, span, flags: np.ndarray, probability: np.ndarray, spread: np.ndarray) -> None:
        """Add a tile's probabilities to the cells ``span`` = (row0, row1, col0, col1) it covers, where
        ``flags`` (padded) marks the cells with a valid input pixel."""
        r0, r1, c0, c1 = (int(v) for v in span)
        if r1 <= r0 or c1 <= c0:
            return
        region = (slice(r0, r1), slice(c0, c1))
        cell_valid = flags[: r1 - r0, : c1 - c0]
        self.probability[(slice(None), *region)] += probability[:, None, None] * cell_valid
        self.spread[(slice(None), *region)] += spread[:, None, None] * cell_valid
        self.weight[region] += cell_valid
        self.valid[region] |= cell_valid

    def state(self) -> dict:
        return {
            "probability": self.probability,
            "spread": self.spread,
            "weight": self.weight,
            "valid": self.valid,
        }

    def load(self, state) -> None:
        for key in ("probability", "spread", "weight", "valid"):
            getattr(self, key)[...] = state[key]

    def merge(self, state) -> None:
        self.probability += state["probability"]
        self.spread += state["spread"]
        self.weight += state["weight"]
        self.valid |= state["valid"]


def leaf_most(probability: np.ndarray, hierarchy, decision: Decision) -> list[int]:
    """The deepest nodes the decision predicts for one tile's (nodes,) probabilities."""
    predicted = decision.predict(probability[None], hierarchy)[0] & hierarchy.evaluated
    return [n for n in np.flatnonzero(predicted) if not any(predicted[c] for c in hierarchy.children[n])]


def class_codes(probability: np.ndarray, hierarchy, decision: Decision) -> np.ndarray:
    """(nodes, H, W) probabilities -> (H, W) codes: 1 + the deepest node the decision predicts (the most
    probable among equally deep ones), or nodes + 1 where it predicts none (abstains)."""
    predicted = decision.predict(probability, hierarchy, node_axis=0) & hierarchy.evaluated[:, None, None]
    depth = np.asarray(hierarchy.depth, dtype=np.float64)
    score = np.where(predicted, depth[:, None, None] * 2.0 + probability, -1.0)
    best = score.argmax(axis=0)
    return np.where(predicted.any(axis=0), best + 1, probability.shape[0] + 1)


#: matplotlib's "tab10" colours (written out: importing matplotlib costs a third of a second per run)
TAB10 = ("1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b", "e377c2", "7f7f7f", "bcbd22", "17becf")


def _colours(hierarchy) -> dict[int, tuple[int, int, int, int]]:
    """A colour per node: a tab10 hue per top-level branch, lighter with depth, and the nodes of one
    branch and depth spread around the branch's hue (in depth-first order, every other one less
    saturated), so siblings and cousins differ."""
    palette = [tuple(int(code[i : i + 2], 16) / 255 for i in (0, 2, 4)) for code in TAB10]
    colours = {0: (0, 0, 0, 0), len(hierarchy) + 1: (128, 128, 128, 255)}
    branch = {}
    for node in range(len(hierarchy)):
        root = node
        while hierarchy.parents[root]:
            root = hierarchy.parents[root][0]
        branch[node] = root
    top = {root: k for k, root in enumerate(dict.fromkeys(branch[n] for n in range(len(hierarchy))))}
    levels: dict[tuple[int, int], list[int]] = {}
    for node in hierarchy.depth_first_order:
        levels.setdefault((branch[node], int(hierarchy.depth[node])), []).append(node)
    for (root, depth), members in levels.items():
        hue, lightness, saturation = colorsys.rgb_to_hls(*palette[top[root] % 10])
        lightness += (1 - lightness) * min(0.6, 0.15 * depth)
        step = min(0.05, 0.24 / max(len(members) - 1, 1))
        for k, node in enumerate(members):
            shade = saturation * (1.0 if k % 2 == 0 else 0.7)
            rgb = colorsys.hls_to_rgb((hue + step * (k - (len(members) - 1) / 2)) % 1.0, lightness, shade)
            colours[node + 1] = tuple(int(round(255 * v)) for v in rgb) + (255,)
    return colours


def _write_cog(
    path: Path, array: np.ndarray, profile: dict, scratch: Path, colormap=None, descriptions=None, tags=None
):
    """Write a (bands, H, W) array as a Cloud-Optimised GeoTIFF, atomically; as BigTIFF where the file
    might pass the classic TIFF's 4 GB (GDAL's ``BIGTIFF=IF_SAFER``, for both the plain and the COG)."""
    scratch.mkdir(parents=True, exist_ok=True)
    plain = scratch / f"{path.stem}.plain.tif"
    profile = {**profile, "driver": "GTiff", "count": array.shape[0], "dtype": array.dtype.name}
    profile["BIGTIFF"] = "IF_SAFER"
    with rasterio.open(plain, "w", **profile) as target:
        target.write(array)
        if colormap is not None:
            target.write_colormap(1, colormap)
        for band, text in enumerate(descriptions or [], start=1):
            target.set_band_description(band, text)
        if tags:
            target.update_tags(**tags)
    with atomic_path(path, suffix=".tif") as temporary:
        rasterio.shutil.copy(plain, temporary, driver="COG", compress="DEFLATE", BIGTIFF="IF_SAFER")
    plain.unlink()


# ------------------------------------------------------------------------------------------ outputs
def combine_and_write(
    out: Path, partial: Path, world: int, hierarchy, grid: TileGrid, output: OutputGrid, rule: Decision,
    started: float, digest: str,
) -> dict:  # fmt: skip
    """On rank 0: add every rank's saved part, write the maps and tables, return the summary."""
    total, tiles = _merge_parts(partial, world, hierarchy, output, digest)
    areas = write_maps(out, partial / "write", total, hierarchy, output, grid.info, rule)
    tiles = _add_bounds(tiles, grid)
    _write_table(out / "tiles.csv", tiles)
    _write_geojson(out / "tiles.geojson", tiles)
    skipped = tiles.loc[tiles["status"] != "predicted", "status"].value_counts()
    summary = {
        "raster": grid.info.path,
        "crs": str(grid.info.crs),
        "tiles": len(tiles),
        "predicted": int((tiles["status"] == "predicted").sum()),
        "skipped": {k: int(v) for k, v in skipped.items()},
        "output_shape": [output.height, output.width],
        "cell_pixels": list(output.cell),
        "seconds": round(time.perf_counter() - started, 2),
        "ranks": world,
        "decision": rule.describe(),
        **areas,
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _merge_parts(partial: Path, world: int, hierarchy, output: OutputGrid, digest: str):
    """Every rank's sums added up, and their tile rows in tile order."""
    total = Accumulator(len(hierarchy), output.height, output.width)
    frames = []
    for rank in range(world):
        saved = np.load(partial / f"rank{rank}.npz")
        if str(saved["digest"]) != digest or not bool(saved["complete"]):
            raise RuntimeError(
                f"rank {rank}'s part in {partial} is missing or incomplete; re-run to finish it"
            )
        total.merge(saved)
        rows_path = partial / f"tiles_rank{rank}.csv"
        if rows_path.exists() and rows_path.stat().st_size > 1:
            frames.append(pd.read_csv(rows_path, keep_default_na=False))
    tiles = pd.concat(frames, ignore_index=True).sort_values("tile").reset_index(drop=True)
    return total, tiles


def write_maps(
    out: Path, scratch: Path, total: Accumulator, hierarchy, output: OutputGrid, info: RasterInfo,
    rule: Decision,
) -> dict:  # fmt: skip
    """classes.tif, classes.csv (with each node's cells, share and area), probabilities.tif,
    uncertainty.tif and quicklook.png from the summed grid; returns the mapped cells and area."""
    covered = total.valid & (total.weight > 0)
    weight = np.maximum(total.weight, 1)
    probability = total.probability / weight
    spread = total.spread / weight
    codes = class_codes(probability, hierarchy, rule)
    nodes = len(hierarchy)
    dtype = np.uint8 if nodes + 1 <= 255 else np.uint16
    profile = {
        "crs": info.crs,
        "transform": output.transform,
        "width": output.width,
        "height": output.height,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    colours = _colours(hierarchy)
    class_map = np.where(covered, codes, 0).astype(dtype)
    tags = {"decision": rule.describe()}
    _write_cog(out / "classes.tif", class_map[None], {**profile, "nodata": 0}, scratch, colours, tags=tags)
    quantised = np.where(covered[None], np.rint(probability * 254), 255).astype(np.uint8)
    probabilities = {**profile, "nodata": 255}
    _write_cog(out / "probabilities.tif", quantised, probabilities, scratch, descriptions=hierarchy.nodes)
    chosen = np.clip(codes - 1, 0, nodes - 1)
    top = np.where(codes > nodes, probability.argmax(axis=0), chosen)
    uncertainty = np.take_along_axis(spread, top[None], axis=0)[0]
    uncertainty = np.where(covered, uncertainty, -1).astype(np.float32)
    _write_cog(out / "uncertainty.tif", uncertainty[None], {**profile, "nodata": -1.0}, scratch)
    classes = pd.DataFrame(
        {
            "code": [0, *range(1, nodes + 1), nodes + 1],
            "node": ["(nodata)", *hierarchy.nodes, "(abstain: no node passes)"],
            "depth": [-1, *map(int, hierarchy.depth), -1],
            "colour": ["#{:02x}{:02x}{:02x}".format(*colours[c][:3]) for c in range(nodes + 2)],
        }
    )
    cell_area = cell_area_m2(output.transform, info.crs)
    classes = pd.concat([classes, code_areas(class_map, hierarchy, cell_area)], axis=1)
    _write_table(out / "classes.csv", classes)
    title = f"{Path(info.path).name}: deepest node per cell ({rule.describe()})"
    write_quicklook(out / "quicklook.png", class_map, colours, classes, output.transform, info.crs, title)
    mapped = int(classes["cells"].iloc[1:].sum())
    return {
        "mapped_cells": mapped,
        "cell_area_m2": cell_area,
        "mapped_area_m2": mapped * cell_area if cell_area else None,
    }


def _add_bounds(tiles: pd.DataFrame, grid: TileGrid) -> pd.DataFrame:
    bounds = np.array([grid.bounds(int(i)) for i in tiles["tile"]]).reshape(-1, 4)
    tiles = tiles.copy()
    for index, name in enumerate(("west", "south", "east", "north")):
        tiles.insert(5 + index, name, bounds[:, index])
    # corners to lon/lat in one call; the lon/lat box is the envelope of the four corners
    xs = np.concatenate([bounds[:, 0], bounds[:, 2], bounds[:, 2], bounds[:, 0]])
    ys = np.concatenate([bounds[:, 1], bounds[:, 1], bounds[:, 3], bounds[:, 3]])
    lon, lat = (np.asarray(v).reshape(4, -1) for v in warp_transform(grid.info.crs, "EPSG:4326", xs, ys))
    tiles.insert(9, "lon_min", lon.min(axis=0))
    tiles.insert(10, "lat_min", lat.min(axis=0))
    tiles.insert(11, "lon_max", lon.max(axis=0))
    tiles.insert(12, "lat_max", lat.max(axis=0))
    return tiles


def _write_table(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False)


def _write_geojson(path: Path, tiles: pd.DataFrame) -> None:
    """Tile footprints in lon/lat (RFC 7946), with the table's columns as properties."""
    corners = zip(*(tiles[c].tolist() for c in ("lon_min", "lat_min", "lon_max", "lat_max")), strict=True)
    footprints = [
        {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
        for w, s, e, n in corners
    ]
    write_geojson(path, footprints, tiles)
