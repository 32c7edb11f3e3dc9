"""Read every HMC benchmark in ../shared/data and print a table of what was found.

Thin entry point: the code and its details are in seabed_hmc_studies/hmc/check_data.py.
"""

from seabed_hmc_studies.hmc.check_data import main

if __name__ == "__main__":
    main()
