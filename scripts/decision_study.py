"""Decision rules re-scored from finished runs: fixed 0.5 against rules fit on validation.

Thin entry point: the code and its details are in seabed_hmc_studies/ccr/decisions.py.
"""

from seabed_hmc_studies.ccr.decisions import main

if __name__ == "__main__":
    main()
