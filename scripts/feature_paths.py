"""How much a frozen encoder's features move between two ways of computing them.

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/feature_paths.py.
"""

from seabed_hmc_studies.benchmarks.feature_paths import main

if __name__ == "__main__":
    main()
