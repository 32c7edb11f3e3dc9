"""Benchmark: reading a wide ARFF file (the HMC benchmarks' format) against pandas on the same numbers.

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/bench_arff.py.
"""

from seabed_hmc_studies.benchmarks.bench_arff import main

if __name__ == "__main__":
    main()
