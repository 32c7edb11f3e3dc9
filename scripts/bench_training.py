"""Benchmark: training speed with a frozen encoder (feature cache) and with a trainable one (input pipeline).

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/bench_training.py.
"""

from seabed_hmc_studies.benchmarks.bench_training import main

if __name__ == "__main__":
    main()
