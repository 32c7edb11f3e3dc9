"""The studies and benchmarks that measure seabed_hmc: they import the library, the library never
imports them.

* :mod:`seabed_hmc_studies.hmc`: the classic HMC benchmarks (C-HMCNN's protocol on FunCat, GO,
  Diatoms, Enron and ImCLEF07): ARFF reading, the datasets and their preprocessing, the tabular
  trainer, the runner, its report and the decision-rule study (docs/results/hmc.md).
* :mod:`seabed_hmc_studies.ccr`: the CCR benthic studies (docs/results/ccr_benthic.md, decisions.md).
* :mod:`seabed_hmc_studies.benchmarks`: timing and memory benchmarks that print ratios against a
  baseline measured in the same run (docs/results/speed.md).
* :mod:`seabed_hmc_studies.grid_rescore`: a limited-data grid re-scored from its cells' probabilities.
* :mod:`seabed_hmc_studies.readme`: the README's commands, checked and run.
* :mod:`seabed_hmc_studies.hostile`: the hostile-input corpus that tests/test_hostile.py runs.

``scripts/*.py`` are thin entry points into these modules.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED_DATA = ROOT.parent / "shared" / "data"  # the real data beside it (never copied in)
