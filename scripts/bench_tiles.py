"""Benchmark: predict-tiles throughput against the model alone, and peak memory against raster size.

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/bench_tiles.py.
"""

from seabed_hmc_studies.benchmarks.bench_tiles import main

if __name__ == "__main__":
    main()
