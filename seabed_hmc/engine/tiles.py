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
tile and saves its part; rank 0 adds the parts and writes the outputs (:mod:`.tile_maps`).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm  # not tqdm.auto: it iterates a DataLoader twice (two worker sets)

from seabed_hmc.atomic import atomic_path
from seabed_hmc.config import TileConfig
from seabed_hmc.data.geo import (
    BandSettings,
    RasterInfo,
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
from seabed_hmc.engine.allocator import serve_large_blocks_from_heap, trim_freed_memory
from seabed_hmc.engine.checkpoint import ModelCheckpoint
from seabed_hmc.engine.data_and_model import load_model, transforms
from seabed_hmc.engine.device import default_batch, resolve_device, to_device
from seabed_hmc.engine.inference import resolve_decision
from seabed_hmc.engine.tile_maps import (
    TAB10,
    Accumulator,
    OutputGrid,
    check_output_fits,
    class_codes,
    combine_and_write,
    leaf_most,
    summarise_tile,
)
from seabed_hmc.models.classifier import normalise_uint8
from seabed_hmc.models.heads import ensemble_probabilities

__all__ = [
    "TAB10",
    "Accumulator",
    "OutputGrid",
    "TileConfig",
    "class_codes",
    "default_workers",
    "predict_tiles",
    "summarise_tile",
    "tile_loader",
    "tile_model",
    "tile_transform",
    "to_model_input",
]

log = logging.getLogger("seabed_hmc")

PARTIAL = ".partial"


# ------------------------------------------------------------------------------------- reading tiles
def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for the model's forward pass, None for fp32: ``auto`` is bf16 on a CUDA GPU
    that supports it and fp32 elsewhere (on this project's CPUs bf16 is slower)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"predict-tiles precision {precision!r}: choose auto, bf16 or fp32")
    cuda = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if cuda else None


def default_workers(device: torch.device | None = None) -> int:
    """Tile-reading processes: none on machines of up to 4 cores, else one per four cores (at most 4).

    A reader process wakes on some core the model's threads are using and preempts one of them
    mid-operator, stalling all of them at the next barrier; on 2 cores that cost the model 20-40% of
    its speed, while reading 32 tiles of 224 px in the main process, between batches, takes ~5 ms, ~6%
    of the model's time for them (scripts/bench_tiles.py, scripts/profile_tiles.py).  With a CUDA
    ``device`` the model runs on the GPU, so every core but two reads tiles (at most 8)."""
    cores = os.cpu_count() or 1
    if device is not None and device.type == "cuda":  # the GPU runs the model: the cores read tiles
        return max(1, min(8, cores - 2))
    return 0 if cores <= 4 else min(4, cores // 4)


def tile_loader(dataset: TileDataset, batch_size: int, workers: int, pin: bool = False) -> DataLoader:
    """Batches of ``dataset``: raw tiles (no per-tile transform) are read straight into each batch
    (:class:`~seabed_hmc.data.geo.TileBatches`); otherwise tile by tile, then collated.  ``pin``: in
    page-locked memory, for asynchronous copies to a GPU."""
    options = {
        "num_workers": workers,
        "worker_init_fn": _quiet_worker if workers else None,
        "pin_memory": pin,
    }
    if dataset.transform is None:
        return DataLoader(TileBatches(dataset, batch_size), batch_size=None, **options)
    return DataLoader(dataset, batch_size=batch_size, **options)


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


# ------------------------------------------------------------------------------------ model inputs
def tile_model(checkpoint: str | Path):
    """The checkpoint's model for batch inference (eval mode, channels_last), hierarchy and record."""
    model, hierarchy, record = load_model(checkpoint)
    return model.eval().to(memory_format=torch.channels_last), hierarchy, record


def tile_transform(record: ModelCheckpoint):
    """(per-tile transform for the workers, normalisation for the main process).

    With the default evaluation pipeline (fit by resizing, then normalise), workers only resize and
    send uint8 tiles, and the main process normalises whole batches: a quarter of the bytes between
    processes and less work competing with the model for the cores.  A checkpoint trained with its own
    evaluation transforms runs its full pipeline in the workers instead (normalisation None)."""
    import albumentations as A

    config = record.run_config("(tile prediction)")
    if config.data.eval_transforms:
        return transforms(config, record.normalisation)[1], None
    norm = record.normalisation
    size = int(norm["image_size"])
    mean = torch.tensor(norm["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(norm["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return A.Compose([A.Resize(height=size, width=size)]), (mean, std)


def to_model_input(images: torch.Tensor, norm) -> torch.Tensor:
    """A batch from the workers as the model's input, channels_last.

    (B, H, W, 3) uint8 tiles (see :func:`tile_transform`) are normalised here: the permuted view is
    already channels_last, so the conversion to float is the only copy."""
    if norm is not None and images.dtype == torch.uint8:
        return normalise_uint8(images.permute(0, 3, 1, 2), *norm)
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


# ------------------------------------------------------------------------------------------ the run
@dataclass
class _TileRun:
    """What one rank's pass over the tiles needs, resolved from the checkpoint, the raster and the
    settings, with its saved progress."""

    model: torch.nn.Module
    hierarchy: object
    rule: Decision
    transform: object
    norm: tuple | None
    info: RasterInfo
    grid: TileGrid
    output: OutputGrid
    bands: BandSettings
    digest: str
    partial: Path
    rank: int
    mine: np.ndarray  # the tiles of this rank
    accumulator: Accumulator
    done: np.ndarray
    dtype: torch.dtype | None = None  # the forward pass's autocast dtype (None: fp32)

    @property
    def state_path(self) -> Path:
        return self.partial / f"rank{self.rank}.npz"

    @property
    def rows_path(self) -> Path:
        return self.partial / f"tiles_rank{self.rank}.csv"


def predict_tiles(
    checkpoint: str | Path,
    rasters: str | Path | list,
    out: str | Path,
    settings: TileConfig | None = None,
    **changes,
) -> dict:
    """Predict over one raster, several (mosaicked through a VRT) or a VRT; returns the summary.

    ``settings`` (:class:`~seabed_hmc.config.TileConfig`, the defaults when None) says how: tile size,
    stride and units, output cell, region, bands and scaling, the share of invalid pixels a tile may
    have, the decision rule (default the checkpoint's; named in ``summary.json`` and the class map's
    tags), batch size, reader processes (default :func:`default_workers`), device, and ``stop_after``
    batches for time-boxed runs (resume later).  Keyword ``changes`` replace single settings, e.g.
    ``predict_tiles(c, r, o, tile_size=64, workers=0)``.  Under torchrun on GPUs each rank uses its own
    device.
    """
    settings = dataclasses.replace(settings or TileConfig(), **changes)
    serve_large_blocks_from_heap()  # no page faults for the model's large activations (engine/allocator.py)
    started = time.perf_counter()
    out = Path(out)
    device = resolve_device(settings.device)
    if settings.batch_size is None:
        settings = dataclasses.replace(settings, batch_size=default_batch(device))
    group = distributed.setup(device)
    run = _prepare(Path(checkpoint), rasters, out, settings, device, group)
    batches, finished = _predict_batches(run, settings, device)
    _checkpoint_state(run, complete=finished)
    if not finished:
        done = int(run.done[run.mine].sum())
        return {"stopped_after_batches": batches, "tiles_done": done, "tiles": len(run.mine)}
    group.barrier()
    summary = {}
    if group.rank == 0:
        summary = combine_and_write(
            out, run.partial, group.size, run.hierarchy, run.grid, run.output, run.rule, started, run.digest
        )
    group.barrier()
    return summary


def _prepare(checkpoint: Path, rasters, out: Path, settings: TileConfig, device, group) -> _TileRun:
    """The model, rule, grid and bands of the run, and this rank's saved progress (if any)."""
    partial = out / PARTIAL
    partial.mkdir(parents=True, exist_ok=True)
    rasters = [rasters] if isinstance(rasters, str | Path) else list(rasters)
    if not rasters:
        raise ValueError("give at least one raster")
    raster = str(rasters[0]) if len(rasters) == 1 else str(mosaic_vrt(rasters, partial / "mosaic.vrt"))
    model, hierarchy, record = tile_model(checkpoint)
    model.to(device)
    if settings.compile:
        model = torch.compile(model)
    rule = resolve_decision(settings.decision, record, hierarchy, checkpoint, settings.threshold)
    transform, norm = tile_transform(record)
    if norm is not None:
        norm = tuple(t.to(device) for t in norm)
    model_size = int(record.normalisation["image_size"])
    info = raster_info(raster)
    roi = tuple(settings.roi) if settings.roi else None
    grid = tile_grid(info, settings.tile_size or model_size, settings.stride, settings.units, roi)
    if norm is not None and grid.size == (model_size, model_size):
        transform = None  # tiles already at the model's size: nothing to do in the workers but read
    cell = (settings.cell, settings.cell) if settings.cell else grid.stride
    output = OutputGrid(grid, cell)
    chosen = tuple(settings.bands) if settings.bands else None
    bands = resolve_bands(info, BandSettings(chosen, settings.scale_pairs, settings.nodata))
    dtype = inference_dtype(settings.precision, device)
    extra = {"max_invalid": settings.max_invalid, "world": group.size, "decision": rule.to_record()}
    if dtype is not None:  # bf16 maps differ in the last digits: a resumed run keeps one precision
        extra["precision"] = str(dtype)
    check_output_fits(len(hierarchy), output.height, output.width)
    run = _TileRun(
        model, hierarchy, rule, transform, norm, info, grid, output, bands,
        digest=_digest(checkpoint, raster, grid, cell, bands, extra),
        partial=partial,
        rank=group.rank,
        mine=np.arange(len(grid))[group.rank :: group.size],
        accumulator=Accumulator(len(hierarchy), output.height, output.width),
        done=np.zeros(len(grid), dtype=bool),
        dtype=dtype,
    )  # fmt: skip
    if run.state_path.exists():
        saved = np.load(run.state_path)
        if str(saved["digest"]) != run.digest:
            raise RuntimeError(
                f"{out} holds a partial run with other settings (checkpoint, raster, grid or bands); "
                f"delete {partial} or write to another --out"
            )
        run.accumulator.load(saved)
        run.done = saved["done"].copy()
        log.info("rank %d resumes with %d tiles done", run.rank, int(run.done.sum()))
    _restart_rows(run.rows_path, run.done)
    return run


def _predict_batches(run: _TileRun, settings: TileConfig, device) -> tuple[int, bool]:
    """Stream this rank's remaining tiles through the model; (batches, whether all are done)."""
    todo = block_friendly_order(run.grid, run.mine[~run.done[run.mine]])
    summarise = functools.partial(summarise_tile, run.output)
    dataset = TileDataset(run.grid, run.bands, run.transform, todo, summarise)
    workers = default_workers(device) if settings.workers is None else settings.workers
    loader = tile_loader(dataset, settings.batch_size, workers, pin=device.type == "cuda")
    run.model.eval()
    batches = 0
    with dataset, torch.inference_mode():
        for batch in tqdm(loader, desc="tiles", disable=not settings.progress or run.rank != 0, unit="batch"):
            use = batch["valid_fraction"].numpy() >= 1 - settings.max_invalid
            scores = _forward(run, batch["image"], use, settings.batch_size, device) if use.any() else None
            _append_rows(run.rows_path, _record_tiles(run, batch, use, scores))  # nothing stays in memory
            batches += 1
            if batches % 8 == 0:
                trim_freed_memory()  # memory stays bounded however many tiles (engine/allocator.py)
            if batches % settings.save_every == 0:
                _checkpoint_state(run, complete=False)
            if settings.stop_after is not None and batches >= settings.stop_after:
                return batches, not (~run.done[run.mine]).any()
    return batches, True


def _forward(run: _TileRun, images: torch.Tensor, use: np.ndarray, batch_size: int, device):
    """The coherent ensemble mean and spread, (tiles, nodes) each, of the batch's usable tiles."""
    images = images if use.all() else images[torch.from_numpy(use)]
    images = to_model_input(to_device(images, device), run.norm)
    count = len(images)
    if count < batch_size:  # pad: a new batch shape would make oneDNN build (and keep) new kernels
        images = torch.cat([images, images.new_zeros(batch_size - count, *images.shape[1:])])
    with torch.autocast(device.type, dtype=run.dtype or torch.bfloat16, enabled=run.dtype is not None):
        logits = run.model(images.contiguous(memory_format=torch.channels_last))[:, :count]
    # the max-constraint and the ensemble statistics in fp32, whatever the forward pass ran in
    return tuple(t.cpu().numpy() for t in ensemble_probabilities(logits.float(), run.hierarchy))


def _record_tiles(run: _TileRun, batch: dict, use: np.ndarray, scores) -> list[dict]:
    """Add the batch's usable tiles to the output sums, mark its tiles done, and return their rows."""
    fractions = batch["valid_fraction"].numpy()
    rows, used = [], 0
    for position, index in enumerate(batch["index"].tolist()):
        window = run.grid.windows[index]
        row = dict(zip(("row", "col", "height", "width"), map(int, window), strict=True))
        row = {"tile": index, **row, "valid_fraction": round(float(fractions[position]), 4)}
        if use[position]:
            p, s = scores[0][used], scores[1][used]
            used += 1
            flags = batch["cell_valid"][position].numpy()
            run.accumulator.add(batch["cell_span"][position].numpy(), flags, p, s)
            leaves = sorted(leaf_most(p, run.hierarchy, run.rule), key=lambda n: -p[n])
            row |= {
                "status": "predicted",
                "paths": "|".join(run.hierarchy.nodes[n] for n in leaves),
                "probabilities": "|".join(f"{p[n]:.4f}" for n in leaves),
                "max_spread": round(float(s.max()), 4),
            }
        else:
            row |= {"status": "skipped: too much nodata", "paths": "", "probabilities": ""}
        rows.append(row)
        run.done[index] = True
    return rows


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


def _checkpoint_state(run: _TileRun, complete: bool) -> None:
    state = run.accumulator.state()
    _save_npz(
        run.state_path, digest=np.array(run.digest), done=run.done, complete=np.array(complete), **state
    )
