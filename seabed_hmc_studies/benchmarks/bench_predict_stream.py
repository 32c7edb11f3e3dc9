"""Benchmark: `predict` over manifests of 10,000 and 100,000 rows streams in bounded memory.

Each run is a fresh process; the peak memory of its process tree (summed PSS of the main process and
its DataLoader workers, sampled from /proc) is printed for each manifest size, with the growth from
10,000 to 100,000 rows.  The rows point at distinct hard links to a few small PNGs (no disk cost) and
the model is a small one (MobileNetV3-small at 32 px, 3 heads) so that the 100,000 rows take minutes.
The last line is one JSON object: ``{"peak_gb_10k": ..., "peak_gb_100k": ..., "growth_mb": ...}``.

    python scripts/bench_predict_stream.py [--rows 10000 100000] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seabed_hmc_studies.benchmarks.bench_tiles import TreeMemory, make_checkpoint


def make_manifest(folder: Path, images: Path, rows: int) -> Path:
    sources = sorted(images.glob("*.png"))[:8]
    links = folder / f"links{rows}"
    links.mkdir()
    with open(folder / f"manifest{rows}.csv", "w") as handle:
        handle.write("image,station,depth_m\n")
        for row in range(rows):
            link = links / f"img{row:06d}.png"
            os.link(sources[row % len(sources)], link)
            handle.write(f"{link},st{row % 97},{row % 50}\n")
    return folder / f"manifest{rows}.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args()
    print(f"# {' '.join(sys.argv)}", flush=True)
    peaks = {}
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        scratch = Path(scratch)
        checkpoint = make_checkpoint(
            scratch / "model",
            images=30,
            size=32,
            overrides=("encoder.name=mobilenetv3_small_100", "encoder.input_size=32", "head.heads=3",
                       "head.hidden=32"),
        )  # fmt: skip
        images = scratch / "model" / "data" / "images"
        for rows in args.rows:
            manifest = make_manifest(scratch, images, rows)
            out = scratch / f"predictions{rows}.csv"
            command = [sys.executable, "-m", "seabed_hmc", "predict", "--checkpoint", str(checkpoint)]
            command += ["--images", str(manifest), "--out", str(out), "--workers", str(args.workers)]
            start = time.perf_counter()
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            with TreeMemory(process.pid) as memory:
                process.communicate()
            if process.returncode:
                raise SystemExit(f"predict over {rows} rows failed (exit {process.returncode})")
            written = sum(1 for _ in open(out)) - 1
            peaks[rows] = memory.peak
            print(f"{rows:,} rows: {written:,} predictions in {time.perf_counter() - start:.0f} s, peak "
                  f"{memory.peak / 2**30:.3f} GB (process tree PSS)", flush=True)  # fmt: skip
    small, large = min(peaks), max(peaks)
    print(json.dumps({
        f"peak_gb_{small // 1000}k": round(peaks[small] / 2**30, 3),
        f"peak_gb_{large // 1000}k": round(peaks[large] / 2**30, 3),
        "growth_mb": round((peaks[large] - peaks[small]) / 2**20, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
