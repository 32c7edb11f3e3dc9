"""Run every command of README.md in order, as written, and say which failed (about 15 min on 2 cores).

Thin entry point; the code: seabed_hmc_studies/readme.py.
"""

from seabed_hmc_studies.readme import main

if __name__ == "__main__":
    main()
