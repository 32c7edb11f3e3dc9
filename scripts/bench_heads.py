"""One training step of the 20-head ensemble on frozen features (the CCR study's hot loop).

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/bench_heads.py.
"""

from seabed_hmc_studies.benchmarks.bench_heads import main

if __name__ == "__main__":
    main()
