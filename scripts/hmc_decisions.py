"""Decision rules on the HMC benchmarks, re-scored from stored probabilities: fixed 0.5 against rules

Thin entry point: the study lives in seabed_hmc_studies/hmc/decisions.py (its docstring has the details).
"""

from seabed_hmc_studies.hmc.decisions import main

if __name__ == "__main__":
    main()
