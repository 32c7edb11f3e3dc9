"""Where predict-tiles spends its time: waiting for the next batch, normalising, the model.

Runs the same reading (block-friendly order, batches read straight into one buffer), transform and
model steps as ``predict_tiles``, with its allocator setting (without blending and writing), on a
raster and prints the seconds in each part.

    python scripts/profile_tiles.py --checkpoint CKPT --raster R.tif [--workers N] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

import seabed_hmc.engine.tiles as tiles
from seabed_hmc.data.geo import (
    BandSettings,
    TileDataset,
    block_friendly_order,
    raster_info,
    resolve_bands,
    tile_grid,
)
from seabed_hmc.engine.allocator import serve_large_blocks_from_heap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--raster", required=True)
    parser.add_argument("--workers", type=int, default=None, help="default: predict-tiles' own (by cores)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.workers is None:
        args.workers = tiles.default_workers()
    serve_large_blocks_from_heap()
    model, hierarchy, record = tiles.tile_model(args.checkpoint)
    transform, norm = tiles.tile_transform(record)
    info = raster_info(args.raster)
    size = int(record.normalisation["image_size"])
    grid = tile_grid(info, size)
    output = tiles.OutputGrid(grid, grid.stride)
    order = block_friendly_order(grid, range(len(grid)))
    summarise = functools.partial(tiles.summarise_tile, output)
    dataset = TileDataset(
        grid, resolve_bands(info, BandSettings()), None if norm else transform, order, summarise
    )
    loader = tiles.tile_loader(dataset, args.batch_size, args.workers)
    wait = prepare = forward = 0.0
    start = time.perf_counter()
    batches = iter(loader)
    while True:
        a = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            break
        b = time.perf_counter()
        images = tiles.to_model_input(batch["image"], norm)
        c = time.perf_counter()
        with torch.inference_mode():
            tiles.ensemble_probabilities(model(images), hierarchy)
        d = time.perf_counter()
        wait, prepare, forward = wait + b - a, prepare + c - b, forward + d - c
    print(
        f"{len(grid)} tiles, {args.workers} workers: total {time.perf_counter() - start:.1f} s; waiting for "
        f"batches {wait:.1f} s, normalising {prepare:.1f} s, model {forward:.1f} s"
    )


if __name__ == "__main__":
    main()
