"""The limited-data harness (``seabed-hmc ablate``): how much does each loss help as the training data
shrink and the encoder weakens?

* :mod:`~seabed_hmc.limited_data.subsets`: nested, hierarchy-aware training subsets (fractions that
  keep every node's positives where possible, or k examples per leaf);
* :mod:`~seabed_hmc.limited_data.grid`: the grid (levels x configurations x encoders x seeds), run
  resumably cell by cell into ``results.csv``;
* :mod:`~seabed_hmc.limited_data.statistics`: paired gains over control, Wilcoxon with Holm, the trend
  of the gain with the amount of data, and the same under each cell's fitted decision rule;
* :mod:`~seabed_hmc.limited_data.plots` and :mod:`~seabed_hmc.limited_data.report`: the PNGs and
  ``report.md``, regenerated from ``results.csv`` at any time.
"""
