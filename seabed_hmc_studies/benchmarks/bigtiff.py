"""Check: predict-tiles' map writer makes a BigTIFF where a map may pass the classic TIFF's 4 GB.

Writes one (bands, rows, cols) uint8 map through the writer ``predict-tiles`` uses
(``engine.tile_maps._write_cog``: a plain GTiff, then the COG) and prints one JSON line: the
uncompressed size, the file size, whether the file is a BigTIFF (TIFF magic 43 rather than 42), and the
seconds and peak resident memory.  The default, 2.3 GB uncompressed, is past GDAL's ``IF_SAFER``
threshold (2 GB) and writes in about a minute on 2 cores; ``--rows 20000`` shows a classic TIFF.

    python scripts/check_bigtiff.py [--rows 48000 --cols 48000 --bands 1] [--out /tmp/bigtiff]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import from_origin

from seabed_hmc.engine.tile_maps import _write_cog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=48_000)
    parser.add_argument("--cols", type=int, default=48_000)
    parser.add_argument("--bands", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="folder (default: a temporary one, removed)")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="bigtiff_"))
    array = np.zeros((args.bands, args.rows, args.cols), dtype=np.uint8)
    array[:, ::7, ::5] = 1 + (np.arange(args.cols)[::5] % 22).astype(np.uint8)  # a pattern, not all zeros
    profile = {
        "crs": CRS.from_epsg(32618),
        "transform": from_origin(500_000, 2_800_000, 1, 1),
        "width": args.cols,
        "height": args.rows,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "nodata": 0,
    }
    started = time.perf_counter()
    path = folder / "classes.tif"
    _write_cog(path, array, profile, folder / "scratch")
    seconds = time.perf_counter() - started
    with open(path, "rb") as handle:
        header = handle.read(4)
    magic = int.from_bytes(header[2:4], "little" if header[:2] == b"II" else "big")
    result = {
        "shape": list(array.shape),
        "uncompressed_gb": round(array.nbytes / 1e9, 3),
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "bigtiff": magic == 43,
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }
    print(json.dumps(result))
    if args.out is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
