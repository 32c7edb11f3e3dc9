"""Benchmark: one training epoch of heads on cached features, 20 heads against 1, on the same features.

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/bench_head_epoch.py.
"""

from seabed_hmc_studies.benchmarks.bench_head_epoch import main

if __name__ == "__main__":
    main()
