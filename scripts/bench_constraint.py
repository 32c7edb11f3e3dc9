"""Benchmark: sparse max-constraint vs the dense formulation of the original code.

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/bench_constraint.py.
"""

from seabed_hmc_studies.benchmarks.bench_constraint import main

if __name__ == "__main__":
    main()
