"""Diagnose a method on one HMC set: short runs of several presets, then the AU(PRC), the mean predicted
probability over evaluated test entries against their prevalence, and the spread across samples.

Thin entry point: the code and its details are in seabed_hmc_studies/hmc/diagnose.py.
"""

from seabed_hmc_studies.hmc.diagnose import main

if __name__ == "__main__":
    main()
