"""Tables, significance tests and the recall-by-depth plot from the HMC benchmark runs.

Thin entry point: the study lives in seabed_hmc_studies/hmc/report.py (its docstring has the details).
"""

from seabed_hmc_studies.hmc.report import main

if __name__ == "__main__":
    main()
