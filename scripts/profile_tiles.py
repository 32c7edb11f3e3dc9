"""Where predict-tiles spends its time: waiting for the next batch, normalising, the model.

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/profile_tiles.py.
"""

from seabed_hmc_studies.benchmarks.profile_tiles import main

if __name__ == "__main__":
    main()
