"""Benchmark: predict-tiles throughput against the model alone, and peak memory against raster size.

1. Throughput: ``predict_tiles`` end to end (checkpoint loading, window reads, masks, scaling,
   transforms, the model, blending, COG and table writing) on the generated 20,000 x 20,000 raster
   (``--size``; 8,100 tiles), in tiles per second, against the same model on the same number of ready
   tensors (same batch size, same threads, after a warm-up batch), measured back to back in each of
   ``--rounds`` rounds.  ``pipeline_ratio`` = the median over rounds of end-to-end / model-only.  The
   start-up cost (checkpoint, the model's first batches, writing the maps: about a second) is shown
   by the rate on the 2,000 x 2,000 raster.
2. Memory: the peak memory of a ``predict_tiles`` run in a fresh process, on a generated
   20,000 x 20,000 3-band raster and on a 2,000 x 2,000 one with the same tiling (the higher of two
   runs each): the larger of the process tree's summed proportional set sizes (main process plus any
   DataLoader workers) sampled every 50 ms from /proc, and the main process's exact high-water RSS.

The model is MobileNetV2 (random weights: speed does not depend on them) with a 5-head ensemble at
224 px, trained for one epoch on a few synthetic images to get a real checkpoint.  The last line is one
JSON object: ``{"pipeline_ratio": ..., "peak_rss_gb_20k": ..., "rss_growth_mb": ...}``.

    python scripts/bench_tiles.py [--workers N] [--batch-size 32] [--tile 224] [--rounds 3] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def make_checkpoint(folder: Path, images: int = 20, size: int = 64, overrides: tuple[str, ...] = ()) -> Path:
    """A real checkpoint from one epoch on a few synthetic images (frozen encoder, rare_node heads);
    ``overrides`` (``key=value``) replace the defaults below (MobileNetV2, 5 heads)."""
    from seabed_hmc.config import load_config
    from seabed_hmc.data.synthetic import make_synthetic_seafloor
    from seabed_hmc.engine.train import train

    manifest = make_synthetic_seafloor(folder / "data", images=images, size=size, seed=0)
    config = load_config(
        None,
        [
            f"data.manifest={manifest}",
            f"data.hierarchy={manifest.parent / 'hierarchy.csv'}",
            "data.workers=0",
            "encoder.name=mobilenetv2_100",
            "encoder.freeze=true",
            "loss.name=rare_node",
            "head.heads=5",
            "train.epochs=1",
            "train.progress=false",
            f"train.cache_dir={folder / 'cache'}",
            f"out={folder / 'run'}",
            *overrides,
        ],
    )
    train(config)
    return folder / "run" / "best.pt"


def make_raster(path: Path, size: int, block: int = 1024) -> Path:
    """A 3-band uint8 GeoTIFF of smooth seafloor-like texture, written block by block (bounded memory)."""
    import rasterio
    from rasterio.transform import from_origin

    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32630",
        "transform": from_origin(400_000, 6_000_000, 0.5, 0.5),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "nodata": 0,
    }
    yy, xx = np.mgrid[0:block, 0:block].astype(np.float32)
    with rasterio.open(path, "w", **profile) as target:
        for row in range(0, size, block):
            for col in range(0, size, block):
                h, w = min(block, size - row), min(block, size - col)
                base = 120 + 60 * np.sin((xx[:h, :w] + col) / 37.0) * np.cos((yy[:h, :w] + row) / 53.0)
                data = np.stack([base, base * 0.9 + 10, base * 0.7 + 30]).clip(1, 255).astype(np.uint8)
                target.write(data, window=rasterio.windows.Window(col, row, w, h))
    return path


class TreeMemory:
    """Peak of the summed proportional set size (PSS: shared pages split between the processes sharing
    them, so forked workers are not counted twice) of a process and all its descendants, sampled every
    50 ms from /proc."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self, pid: int) -> list[int]:
        pids = [pid]
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                for child in children:
                    pids += self._tree(int(child))
        except OSError:
            pass
        return pids

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(self._rss(p) for p in self._tree(self.pid)))
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self.thread.join()


def memory_run(checkpoint: Path, raster: Path, out: Path, args) -> tuple[float, dict]:
    """Peak tree RSS (bytes) of predict_tiles on ``raster`` in a fresh process, and its summary."""
    code = (
        "import json, sys; from seabed_hmc.engine.tiles import predict_tiles; "
        f"s = predict_tiles({str(checkpoint)!r}, {str(raster)!r}, {str(out)!r}, tile_size={args.tile}, "
        f"batch_size={args.batch_size}, workers={args.workers}, progress=False); print(json.dumps(s))"
    )
    code += "; print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    with TreeMemory(process.pid) as memory:
        output, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"predict_tiles on {raster} failed (exit {process.returncode})")
    *_, summary, high_water_kb = output.strip().splitlines()
    # the sampled tree PSS can miss a short peak; the main process's high-water RSS cannot (it counts
    # shared library pages in full, so it is the higher, conservative figure without workers)
    return max(memory.peak, int(high_water_kb) * 1024), json.loads(summary)


def model_only(checkpoint: Path, tiles: int, batch_size: int, tile: int) -> float:
    """Tiles per second of the model alone on ready, normalised tensors (the same model, memory format
    and forward pass as predict_tiles; the batch is prepared once, outside the timing)."""
    import torch

    from seabed_hmc.engine.allocator import serve_large_blocks_from_heap
    from seabed_hmc.engine.tiles import tile_model, tile_transform, to_model_input
    from seabed_hmc.models.heads import ensemble_probabilities

    serve_large_blocks_from_heap()  # the allocator setting predict_tiles uses
    model, hierarchy, record = tile_model(checkpoint)  # the model exactly as predict_tiles runs it
    size = record.normalisation["image_size"]
    _, norm = tile_transform(record)
    batch = to_model_input(torch.randint(0, 256, (batch_size, size, size, 3), dtype=torch.uint8), norm)
    batch = batch.clone(memory_format=torch.channels_last)  # prepared once, outside the timing
    with torch.inference_mode():
        ensemble_probabilities(model(batch), hierarchy)  # warm-up
        start, done = time.perf_counter(), 0
        while done < tiles:  # full batches, as predict_tiles pads its last one
            mean, spread = ensemble_probabilities(model(batch), hierarchy)
            mean.numpy(), spread.numpy()
            done += batch_size
    return tiles / (time.perf_counter() - start)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=None, help="default: predict-tiles' own (by cores)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tile", type=int, default=224, help="tile size in pixels (model input 224)")
    parser.add_argument("--size", type=int, default=20_000, help="throughput raster side (pixels)")
    parser.add_argument("--memory-tile", type=int, default=224, help="tile size for the memory runs")
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the generated rasters")
    parser.add_argument("--rounds", type=int, default=3, help="(model alone, end to end) rounds")
    return parser


def memory_peaks(checkpoint: Path, small: Path, large: Path, scratch: Path, args) -> tuple[float, float]:
    """Peak resident memory (bytes) predicting the 2,000 and the 20,000 px rasters: the larger of two
    runs each."""
    runs = [memory_run(checkpoint, small, scratch / f"m2k{i}", args) for i in range(2)]
    peak_small, small_summary = max(r[0] for r in runs), runs[0][1]
    print(f"memory, 2,000 x 2,000 ({small_summary['tiles']} tiles of {args.tile} px): peak "
          f"{peak_small / 2**30:.3f} GB", flush=True)  # fmt: skip
    runs = [memory_run(checkpoint, large, scratch / f"m20k{i}", args) for i in range(2)]
    peak_large, large_summary = max(r[0] for r in runs), runs[0][1]
    print(f"memory, 20,000 x 20,000 ({large_summary['tiles']} tiles of {args.tile} px, "
          f"{large_summary['seconds']:.0f} s): peak {peak_large / 2**30:.3f} GB", flush=True)  # fmt: skip
    return peak_small, peak_large


def main() -> None:
    args = _parser().parse_args()
    import torch

    from seabed_hmc.engine.tiles import default_workers, predict_tiles

    if args.workers is None:
        args.workers = default_workers()

    print(f"# {' '.join(sys.argv)}  (torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores)", flush=True)  # fmt: skip
    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        scratch = Path(scratch)
        checkpoint = make_checkpoint(scratch / "model")
        small = make_raster(scratch / "2k.tif", 2000)
        start = time.perf_counter()
        large = make_raster(scratch / "20k.tif", 20_000)
        print(f"generated 20,000 x 20,000 x 3 raster ({large.stat().st_size / 2**20:.0f} MB on disk) "
              f"in {time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        medium = large if args.size == 20_000 else make_raster(scratch / "throughput.tif", args.size)

        def end_to_end(raster: Path, name: str) -> tuple[float, dict]:
            start = time.perf_counter()
            summary = predict_tiles(
                checkpoint, raster, scratch / name, tile_size=args.tile,
                batch_size=args.batch_size, workers=args.workers, progress=False,
            )  # fmt: skip
            return summary["tiles"] / (time.perf_counter() - start), summary

        rate, warm = end_to_end(small, "warm")  # warm-up: page cache, imports
        # start-up (checkpoint loading, the model's first batches, writing the maps) next to few tiles
        print(f"start-up: 2,000 x 2,000 raster ({warm['tiles']} tiles) end to end {rate:.1f} tiles/s, "
              f"{warm['seconds']:.1f} s", flush=True)  # fmt: skip
        # rounds of (the model alone, then end to end) back to back; the ratio of each round, and their
        # median: these shared machines drift by 20-30% within minutes, so a ratio is only taken
        # between measurements made next to each other
        from seabed_hmc.data.geo import raster_info, tile_grid

        tiles = len(tile_grid(raster_info(medium), args.tile))
        ratios, rates, alones = [], [], []
        for attempt in range(args.rounds):
            alone = model_only(checkpoint, tiles, args.batch_size, args.tile)
            rate, summary = end_to_end(medium, f"e2e{attempt}")
            ratios.append(rate / alone)
            rates.append(rate)
            alones.append(alone)
            print(f"round {attempt + 1}: model alone {alone:.1f} tiles/s, end to end {rate:.1f} tiles/s "
                  f"-> {rate / alone:.3f}", flush=True)  # fmt: skip
        rate, alone = float(np.median(rates)), float(np.median(alones))
        print(
            f"throughput, {args.size:,} x {args.size:,} raster, {summary['tiles']} tiles of {args.tile} px, "
            f"batch {args.batch_size}, {args.workers} workers: ratios "
            f"{', '.join(f'{r:.3f}' for r in ratios)}, median {np.median(ratios):.3f}",
            flush=True,
        )

        args.tile = args.memory_tile
        peak_small, peak_large = memory_peaks(checkpoint, small, large, scratch, args)
    print(
        json.dumps(
            {
                "pipeline_ratio": round(float(np.median(ratios)), 3),
                "peak_rss_gb_20k": round(peak_large / 2**30, 3),
                "rss_growth_mb": round((peak_large - peak_small) / 2**20, 1),
                "end_to_end_tiles_per_s": round(rate, 2),
                "model_only_tiles_per_s": round(alone, 2),
                "peak_rss_gb_2k": round(peak_small / 2**30, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
