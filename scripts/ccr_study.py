"""The CCR benthic study (issue 4): every method against control on the full training split, for three
frozen encoders, read from the limited-data grid's full-data cells (configs/ablation_ccr.yaml).

Thin entry point: the code and its details are in seabed_hmc_studies/ccr/study.py.
"""

from seabed_hmc_studies.ccr.study import main

if __name__ == "__main__":
    main()
