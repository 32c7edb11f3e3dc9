"""How much do a (weakened) encoder's pooled features vary across images?

Thin entry point: the code and its details are in seabed_hmc_studies/ccr/encoder_feature_spread.py.
"""

from seabed_hmc_studies.ccr.encoder_feature_spread import main

if __name__ == "__main__":
    main()
