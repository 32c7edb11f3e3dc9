"""Write the hostile-input corpus (truncated, empty and bomb images, odd pixel formats, broken manifests,
hierarchies, configs, rasters and points) to a folder; ``tests/test_hostile.py`` runs every case.

    python scripts/make_hostile_corpus.py [FOLDER]      # default: tests/hostile_corpus

Thin entry point; the code: seabed_hmc_studies/hostile.py.
"""

from seabed_hmc_studies.hostile import main

if __name__ == "__main__":
    main()
