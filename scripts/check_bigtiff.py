"""Check: predict-tiles' map writer makes a BigTIFF where a map may pass 4 GB.

Thin entry point: the code and its details are in seabed_hmc_studies/benchmarks/bigtiff.py.
"""

from seabed_hmc_studies.benchmarks.bigtiff import main

if __name__ == "__main__":
    main()
