"""The CCR patches through the annotation-tool path: CoralNet export -> import-points -> train -> cover error.

Thin entry point; the code: seabed_hmc_studies/ccr/interchange.py.
"""

from seabed_hmc_studies.ccr.interchange import main

if __name__ == "__main__":
    main()
