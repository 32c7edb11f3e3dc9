"""The studies and benchmarks that measure seabed_hmc: they import the library, the library never
imports them.

* :mod:`seabed_hmc_studies.hmc`: the classic HMC benchmarks (C-HMCNN's protocol on FunCat, GO,
  Diatoms, Enron and ImCLEF07): ARFF reading, the datasets and their preprocessing, the tabular
  trainer, the runner, its report and the decision-rule study (docs/results/hmc.md).
"""
