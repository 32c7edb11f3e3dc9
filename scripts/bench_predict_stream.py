"""Benchmark: `predict` over manifests of 10,000 and 100,000 rows streams in bounded memory.

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/bench_predict_stream.py.
"""

from seabed_hmc_studies.benchmarks.bench_predict_stream import main

if __name__ == "__main__":
    main()
