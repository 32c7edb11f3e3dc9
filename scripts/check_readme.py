"""Run every command of README.md in order, as written, and say which failed.

Thin entry point; the code: seabed_hmc_studies/readme.py.
"""

from seabed_hmc_studies.readme import main

if __name__ == "__main__":
    main()
