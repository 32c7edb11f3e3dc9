"""Write the hostile-input corpus (truncated, empty and bomb images, odd pixel formats, broken manifests,
hierarchies, configs, rasters and points) to a folder; ``tests/test_hostile.py`` runs every case.

    python scripts/make_hostile_corpus.py [FOLDER]      # default: tests/hostile_corpus
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile import CASES, make_corpus  # noqa: E402

if __name__ == "__main__":
    folder = make_corpus(sys.argv[1] if len(sys.argv) > 1 else ROOT / "tests" / "hostile_corpus")
    for name, what in CASES.items():
        print(f"{folder / name}: {what}")
