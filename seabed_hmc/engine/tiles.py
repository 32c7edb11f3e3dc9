"""``predict-tiles``: batch inference over a survey mosaic, written back as georeferenced maps.

Tiles are read (in DataLoader workers on machines of more than 4 cores) and stream through the model;
each tile's coherent ensemble probabilities are added to the output cells whose centres it covers
(overlapping tiles are averaged).  The output grid has the input's CRS and origin and a cell of
``cell`` input pixels (default: the stride), i.e. the input transform scaled by the cell size.
Outputs, each written to a temporary name and renamed into place:

- ``classes.tif``: the deepest node the decision rule predicts (the checkpoint's by default; codes in
  ``classes.csv``; 0 = nodata, N+1 = no node passes: abstain), uint8 or uint16 with a colour table, the
  rule in its ``decision`` tag;
- ``probabilities.tif``: one uint8 band per node (probability x 254; 255 = nodata), band descriptions
  are the node names;
- ``uncertainty.tif``: the ensemble spread (std over heads) of the mapped node, float32, -1 = nodata;
- ``tiles.csv`` and ``tiles.geojson``: one row/feature per tile (bounds in the raster CRS and lon/lat,
  valid share, status, predicted paths and their probabilities);
- ``summary.json``.

All rasters are Cloud-Optimised GeoTIFFs; cells with no valid input pixel, or covered only by skipped
tiles, are nodata.  Progress is saved every ``save_every`` batches under ``OUT/.partial``, so an
interrupted run resumes where it stopped.  Under ``torchrun`` each rank predicts every WORLD_SIZE-th
tile and saves its part; rank 0 adds the parts and writes the outputs.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import rasterio.shutil
import torch
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform
from torch.utils.data import DataLoader
from tqdm import tqdm  # not tqdm.auto: it iterates a DataLoader twice (two worker sets)

from seabed_hmc.atomic import atomic_path, write_text_atomic
from seabed_hmc.data.geo import (
    BandSettings,
    TileBatches,
    TileDataset,
    TileGrid,
    block_friendly_order,
    mosaic_vrt,
    raster_info,
    resolve_bands,
    tile_grid,
)
from seabed_hmc.decisions import Decision
from seabed_hmc.engine import distributed
from seabed_hmc.engine._memory import serve_large_blocks_from_heap, trim_freed_memory
from seabed_hmc.engine.device import resolve_device, to_device
from seabed_hmc.engine.inference import resolve_decision
from seabed_hmc.engine.setup import checkpoint_config, load_model, transforms
from seabed_hmc.models.heads import ensemble_probabilities

log = logging.getLogger("seabed_hmc")
PARTIAL = ".partial"


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


def default_workers() -> int:
    """Tile-reading processes: none on machines of up to 4 cores, else one per four cores (at most 4).

    A reader process wakes on some core the model's threads are using and preempts one of them
    mid-operator, stalling all of them at the next barrier; on 2 cores that cost the model 20-40% of
    its speed, while reading 32 tiles of 224 px in the main process, between batches, takes ~5 ms, ~6%
    of the model's time for them (scripts/bench_tiles.py, scripts/profile_tiles.py)."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 4 else min(4, cores // 4)


def tile_loader(dataset: TileDataset, batch_size: int, workers: int) -> DataLoader:
    """Batches of ``dataset``: raw tiles (no per-tile transform) are read straight into each batch
    (:class:`~seabed_hmc.data.geo.TileBatches`); otherwise tile by tile, then collated."""
    quiet = _quiet_worker if workers else None
    if dataset.transform is None:
        batches = TileBatches(dataset, batch_size)
        return DataLoader(batches, batch_size=None, num_workers=workers, worker_init_fn=quiet)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, worker_init_fn=quiet)


def _quiet_worker(_: int) -> None:
    """One thread per DataLoader worker, at a lower scheduling priority: the model's threads in the
    main process are then rarely preempted mid-operator (which stalls all of them)."""
    torch.set_num_threads(1)
    try:
        os.nice(10)
    except OSError:
        pass
    try:
        import cv2

        cv2.setNumThreads(0)
    except ImportError:
        pass


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


# ------------------------------------------------------------------------------------ model inputs
def tile_model(checkpoint: str | Path):
    """The checkpoint's model for batch inference (eval mode, channels_last), hierarchy and record."""
    model, hierarchy, state = load_model(checkpoint)
    return model.eval().to(memory_format=torch.channels_last), hierarchy, state


def tile_transform(state: dict):
    """(per-tile transform for the workers, normalisation for the main process).

    With the default evaluation pipeline (fit by resizing, then normalise), workers only resize and
    send uint8 tiles, and the main process normalises whole batches: a quarter of the bytes between
    processes and less work competing with the model for the cores.  A checkpoint trained with its own
    evaluation transforms runs its full pipeline in the workers instead (normalisation None)."""
    import albumentations as A

    if state["config"]["data"].get("eval_transforms"):
        return transforms(checkpoint_config(state, "checkpoint"), state["normalisation"])[1], None
    norm = state["normalisation"]
    size = int(norm["image_size"])
    mean = torch.tensor(norm["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(norm["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return A.Compose([A.Resize(height=size, width=size)]), (mean, std)


def to_model_input(images: torch.Tensor, norm) -> torch.Tensor:
    """A batch from the workers as the model's input, channels_last.

    (B, H, W, 3) uint8 tiles (see :func:`tile_transform`) are normalised here: the permuted view is
    already channels_last, so the conversion to float is the only copy."""
    if norm is not None and images.dtype == torch.uint8:
        mean, std = norm
        # one pass, uint8 in, float out: (x/255 - mean)/std = x * 1/(255 std) - mean/std; the permuted
        # view is (B, 3, H, W) with channels_last strides, and so is the result (2.8 vs 7.0 ms for
        # 32 tiles of 224 px as float(), sub_, mul_)
        return torch.addcmul(-mean / std, images.permute(0, 3, 1, 2), 1.0 / (255.0 * std))
    return images.contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------------- helpers
def _save_npz(path: Path, **arrays) -> None:
    with atomic_path(path, suffix=".npz") as temporary:
        np.savez(temporary, **arrays)


def _digest(checkpoint: Path, raster: str, grid: TileGrid, cell, settings: BandSettings, extra: dict) -> str:
    stat = checkpoint.stat()
    record = {
        "checkpoint": [str(checkpoint.resolve()), stat.st_size, stat.st_mtime_ns],
        "raster": os.path.abspath(raster),
        "windows": hashlib.sha1(grid.windows.tobytes()).hexdigest(),
        "cell": list(cell),
        "bands": [list(settings.bands), [list(s) for s in settings.scale], settings.nodata],
        **extra,
    }
    return hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _leaf_most(probability: np.ndarray, hierarchy, decision: Decision) -> list[int]:
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
    """A colour per node: a hue per top-level branch, lighter with depth."""
    palette = [tuple(int(code[i : i + 2], 16) / 255 for i in (0, 2, 4)) for code in TAB10]
    colours = {0: (0, 0, 0, 0), len(hierarchy) + 1: (128, 128, 128, 255)}
    top = {}
    for node in range(len(hierarchy)):
        root = node
        while hierarchy.parents[root]:
            root = hierarchy.parents[root][0]
        branch = top.setdefault(root, len(top))
        r, g, b = palette[branch % 10]
        lighten = min(0.75, 0.18 * int(hierarchy.depth[node]))
        colours[node + 1] = tuple(int(255 * (v + (1 - v) * lighten)) for v in (r, g, b)) + (255,)
    return colours


def _write_cog(
    path: Path, array: np.ndarray, profile: dict, scratch: Path, colormap=None, descriptions=None, tags=None
):
    """Write a (bands, H, W) array as a Cloud-Optimised GeoTIFF, atomically."""
    scratch.mkdir(parents=True, exist_ok=True)
    plain = scratch / f"{path.stem}.plain.tif"
    profile = {**profile, "driver": "GTiff", "count": array.shape[0], "dtype": array.dtype.name}
    with rasterio.open(plain, "w", **profile) as target:
        target.write(array)
        if colormap is not None:
            target.write_colormap(1, colormap)
        for band, text in enumerate(descriptions or [], start=1):
            target.set_band_description(band, text)
        if tags:
            target.update_tags(**tags)
    with atomic_path(path, suffix=".tif") as temporary:
        rasterio.shutil.copy(plain, temporary, driver="COG", compress="DEFLATE")
    plain.unlink()


# ------------------------------------------------------------------------------------------ the run
def predict_tiles(
    checkpoint: str | Path,
    rasters: str | Path | list,
    out: str | Path,
    *,
    tile_size: float | None = None,
    stride: float | None = None,
    units: str = "pixels",
    cell: int | None = None,
    roi: tuple[float, float, float, float] | None = None,
    bands: tuple[int, ...] | None = None,
    scale: tuple[tuple[float, float], ...] | None = None,
    nodata: float | None = None,
    max_invalid: float = 0.5,
    threshold: float | None = None,
    decision: str | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    save_every: int = 20,
    progress: bool = True,
    stop_after: int | None = None,
    device: str = "auto",
) -> dict:
    """Predict over one raster, several (mosaicked through a VRT) or a VRT; returns the summary.

    Args:
        tile_size, stride: in ``units`` (``"pixels"`` or ``"crs"``); default: the model's input size
            in pixels, no overlap.
        cell: output cell in input pixels (default: the stride, in pixels).
        roi: (west, south, east, north) in the raster's CRS.
        bands, scale, nodata: see :class:`~seabed_hmc.data.geo.BandSettings`.
        max_invalid: tiles with a larger share of invalid pixels are skipped (and counted).
        workers: DataLoader processes reading tiles; default :func:`default_workers` (none on up to
            4 cores: tiles are read in the main process between batches).
        stop_after: end after this many batches (tests and time-boxed runs; resume later).
        threshold, decision: the decision rule (:func:`~seabed_hmc.engine.inference.resolve_decision`;
            default the checkpoint's); named in ``summary.json`` and in the class map's tags.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (:mod:`seabed_hmc.engine.device`; under
            torchrun on GPUs each rank uses its own).
    """
    if workers is None:
        workers = default_workers()
    serve_large_blocks_from_heap()  # no page faults for the model's large activations (_memory.py)
    started = time.perf_counter()
    checkpoint, out = Path(checkpoint), Path(out)
    device = resolve_device(device)
    group = distributed.setup(device)
    rank, world = group.rank, group.size
    partial = out / PARTIAL
    partial.mkdir(parents=True, exist_ok=True)
    rasters = [rasters] if isinstance(rasters, str | Path) else list(rasters)
    if not rasters:
        raise ValueError("give at least one raster")
    raster = str(rasters[0]) if len(rasters) == 1 else str(mosaic_vrt(rasters, partial / "mosaic.vrt"))

    model, hierarchy, state = tile_model(checkpoint)
    model.to(device)
    rule = resolve_decision(decision, state, hierarchy, checkpoint, threshold)
    transform, norm = tile_transform(state)
    if norm is not None:
        norm = tuple(t.to(device) for t in norm)
    size = tile_size or state["normalisation"]["image_size"]
    info = raster_info(raster)
    grid = tile_grid(info, size, stride, units, roi)
    if norm is not None and grid.size == (int(state["normalisation"]["image_size"]),) * 2:
        transform = None  # tiles already at the model's size: nothing to do in the workers but read
    cell_size = (cell, cell) if cell else grid.stride
    output = OutputGrid(grid, cell_size)
    settings = resolve_bands(info, BandSettings(bands, scale, nodata))
    digest = _digest(
        checkpoint,
        raster,
        grid,
        cell_size,
        settings,
        {"max_invalid": max_invalid, "world": world, "decision": rule.to_record()},
    )
    state_path = partial / f"rank{rank}.npz"
    rows_path = partial / f"tiles_rank{rank}.csv"
    accumulator = Accumulator(len(hierarchy), output.height, output.width)
    done = np.zeros(len(grid), dtype=bool)
    if state_path.exists():
        saved = np.load(state_path)
        if str(saved["digest"]) != digest:
            raise RuntimeError(
                f"{out} holds a partial run with other settings (checkpoint, raster, grid or bands); "
                f"delete {partial} or write to another --out"
            )
        accumulator.load(saved)
        done = saved["done"].copy()
        log.info("rank %d resumes with %d tiles done", rank, int(done.sum()))
    mine = np.arange(len(grid))[rank::world]
    todo = block_friendly_order(grid, mine[~done[mine]])
    _restart_rows(rows_path, done)

    dataset = TileDataset(grid, settings, transform, todo, functools.partial(summarise_tile, output))
    loader = tile_loader(dataset, batch_size, workers)
    model.eval()
    batches = 0
    finished = True
    with dataset, torch.inference_mode():
        for batch in tqdm(loader, desc="tiles", disable=not progress or rank != 0, unit="batch"):
            fractions = batch["valid_fraction"].numpy()
            use = fractions >= 1 - max_invalid
            mean = spread = None
            rows = []
            if use.any():
                images = batch["image"] if use.all() else batch["image"][torch.from_numpy(use)]
                images = to_model_input(to_device(images, device), norm)
                count = len(images)
                if count < batch_size:  # pad: a new batch shape would make oneDNN build (and keep)
                    images = torch.cat([images, images.new_zeros(batch_size - count, *images.shape[1:])])
                logits = model(images.contiguous(memory_format=torch.channels_last))[:, :count]
                mean, spread = (t.float().cpu().numpy() for t in ensemble_probabilities(logits, hierarchy))
            used = 0
            for position, index in enumerate(batch["index"].tolist()):
                window = grid.windows[index]
                row = dict(zip(("row", "col", "height", "width"), map(int, window), strict=True))
                row = {"tile": index, **row, "valid_fraction": round(float(fractions[position]), 4)}
                if use[position]:
                    p, s = mean[used], spread[used]
                    used += 1
                    flags = batch["cell_valid"][position].numpy()
                    accumulator.add(batch["cell_span"][position].numpy(), flags, p, s)
                    leaves = sorted(_leaf_most(p, hierarchy, rule), key=lambda n: -p[n])
                    row |= {
                        "status": "predicted",
                        "paths": "|".join(hierarchy.nodes[n] for n in leaves),
                        "probabilities": "|".join(f"{p[n]:.4f}" for n in leaves),
                        "max_spread": round(float(s.max()), 4),
                    }
                else:
                    row |= {"status": "skipped: too much nodata", "paths": "", "probabilities": ""}
                rows.append(row)
                done[index] = True
            _append_rows(rows_path, rows)  # streamed to disk: nothing per tile stays in memory
            batches += 1
            if batches % 8 == 0:
                trim_freed_memory()  # memory stays bounded however many tiles (engine/_memory.py)
            if batches % save_every == 0:
                _checkpoint_state(state_path, accumulator, done, digest, complete=False)
            if stop_after is not None and batches >= stop_after:
                finished = not (~done[mine]).any()
                break
    _checkpoint_state(state_path, accumulator, done, digest, complete=finished)
    if not finished:
        return {"stopped_after_batches": batches, "tiles_done": int(done[mine].sum()), "tiles": len(mine)}
    group.barrier()
    summary = {}
    if rank == 0:
        summary = _combine_and_write(
            out, partial, world, hierarchy, grid, output, info, accumulator, rule, started, digest
        )
    group.barrier()
    return summary


ROW_FIELDS = ["tile", "row", "col", "height", "width", "valid_fraction", "status", "paths", "probabilities",
              "max_spread"]  # fmt: skip


def _append_rows(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ROW_FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _restart_rows(path: Path, done: np.ndarray) -> None:
    """Keep the rows of tiles the saved state counts as done (a crash may have left later ones)."""
    if not path.exists():
        return
    table = pd.read_csv(path, keep_default_na=False) if done.any() else pd.DataFrame(columns=ROW_FIELDS)
    if len(table):
        table = table[done[table["tile"].astype(int).to_numpy()]].drop_duplicates("tile", keep="last")
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False)


def _checkpoint_state(state_path, accumulator, done, digest, complete: bool) -> None:
    _save_npz(
        state_path, digest=np.array(digest), done=done, complete=np.array(complete), **accumulator.state()
    )


def _combine_and_write(
    out, partial, world, hierarchy, grid, output, info, accumulator, rule, started, digest
):
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
    covered = total.valid & (total.weight > 0)
    weight = np.maximum(total.weight, 1)
    probability = total.probability / weight
    spread = total.spread / weight
    codes = class_codes(probability, hierarchy, rule)
    nodes = len(hierarchy)
    dtype = np.uint8 if nodes + 1 <= 255 else np.uint16
    class_map = np.where(covered, codes, 0).astype(dtype)
    profile = {
        "crs": info.crs,
        "transform": output.transform,
        "width": output.width,
        "height": output.height,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    scratch = partial / "write"
    colours = _colours(hierarchy)
    _write_cog(
        out / "classes.tif",
        class_map[None],
        {**profile, "nodata": 0},
        scratch,
        colormap=colours,
        tags={"decision": rule.describe()},
    )
    quantised = np.where(covered[None], np.rint(probability * 254), 255).astype(np.uint8)
    _write_cog(
        out / "probabilities.tif",
        quantised,
        {**profile, "nodata": 255},
        scratch,
        descriptions=hierarchy.nodes,
    )
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
    _write_table(out / "classes.csv", classes)
    tiles = _add_bounds(tiles, grid)
    _write_table(out / "tiles.csv", tiles)
    _write_geojson(out / "tiles.geojson", tiles)
    predicted = int((tiles["status"] == "predicted").sum())
    seconds = time.perf_counter() - started
    summary = {
        "raster": grid.info.path,
        "crs": str(info.crs),
        "tiles": len(tiles),
        "predicted": predicted,
        "skipped": {
            k: int(v) for k, v in tiles.loc[tiles["status"] != "predicted", "status"].value_counts().items()
        },
        "output_shape": [output.height, output.width],
        "cell_pixels": list(output.cell),
        "seconds": round(seconds, 2),
        "ranks": world,
        "decision": rule.describe(),
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary


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
    columns = list(tiles.columns)
    corners = zip(*(tiles[c].tolist() for c in ("lon_min", "lat_min", "lon_max", "lat_max")), strict=True)
    records = zip(*(tiles[c].tolist() for c in columns), strict=True)  # Python scalars
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
            "properties": {
                key: (None if value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value)
                for key, value in zip(columns, record, strict=True)
            },
        }
        for (w, s, e, n), record in zip(corners, records, strict=True)
    ]
    write_text_atomic(path, json.dumps({"type": "FeatureCollection", "features": features}))
