"""Benchmark for a GPU machine: predict-tiles and training against the model alone, one JSON line.

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/bench_gpu.py.
"""

from seabed_hmc_studies.benchmarks.bench_gpu import main

if __name__ == "__main__":
    main()
