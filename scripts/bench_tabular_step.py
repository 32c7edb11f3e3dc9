"""Benchmark: one tabular training step (batch 4, the HMC protocol) with and without allocator tuning.

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/bench_tabular_step.py.
"""

from seabed_hmc_studies.benchmarks.bench_tabular_step import main

if __name__ == "__main__":
    main()
