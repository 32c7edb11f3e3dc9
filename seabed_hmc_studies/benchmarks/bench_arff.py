"""Benchmark: reading a wide ARFF file (the HMC benchmarks' format) against pandas on the same numbers.

Writes a 10,000 x 1,000 numeric file with 5% missing values ("?") and one hierarchical label column,
then times ``seabed_hmc_studies.hmc.arff.read_arff`` (the whole file: header, numbers, labels, checks) and,
as the baseline measured in the same run, ``pandas.read_csv`` of the data section alone.  Best of
``--rounds``; the last line is one JSON object with both times and their ratio.

    python scripts/bench_arff.py [--rows 10000] [--columns 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from seabed_hmc_studies.hmc.arff import read_arff


def wide_file(folder: Path, rows: int, columns: int) -> tuple[Path, str]:
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=(rows, columns)), 3).astype(str)
    values[rng.random((rows, columns)) < 0.05] = "?"
    header = "".join(f"@attribute f{j} numeric\n" for j in range(columns))
    body = "\n".join(",".join(row) + ",a/b" for row in values)
    path = folder / "wide.arff"
    path.write_text(f"@relation wide\n{header}@attribute c hierarchical a,a/b\n@data\n{body}\n")
    return path, body


def best_of(rounds: int, work) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--columns", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path, body = wide_file(Path(folder), args.rows, args.columns)
        ours = best_of(args.rounds, lambda: read_arff(path))
        baseline = best_of(
            args.rounds,
            lambda: pd.read_csv(io.StringIO(body), header=None, na_values="?", keep_default_na=False),
        )
    print(f"read_arff {ours:.2f} s; pandas.read_csv of the data section alone {baseline:.2f} s")
    print(json.dumps({"rows": args.rows, "columns": args.columns, "read_arff_s": round(ours, 3),
                      "pandas_s": round(baseline, 3), "ratio": round(ours / baseline, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
