"""Run the HMC benchmarks: datasets x methods x seeds, one CSV row per finished run.

Thin entry point: the study lives in seabed_hmc_studies/hmc/benchmark.py (its docstring has the details).
"""

from seabed_hmc_studies.hmc.benchmark import main

if __name__ == "__main__":
    main()
