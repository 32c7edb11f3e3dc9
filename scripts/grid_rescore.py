"""Re-score an ablation grid's cells under a decision rule, from their stored ``scores.npz`` alone.

Thin entry point: the code and its details are in seabed_hmc_studies/grid_rescore.py.
"""

from seabed_hmc_studies.grid_rescore import main

if __name__ == "__main__":
    main()
