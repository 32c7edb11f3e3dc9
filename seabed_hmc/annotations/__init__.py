"""Point annotations from the tools marine scientists label in, turned into training patches.

* :mod:`~seabed_hmc.annotations.points`: read an annotation export into one point table (image, row,
  column, label, and the export's other columns as metadata), with every bad row reported;
* :mod:`~seabed_hmc.annotations.label_map`: the tool's label codes mapped to hierarchy paths,
  checked against the hierarchy, with a ready-to-fill mapping file for the labels it does not cover;
* :mod:`~seabed_hmc.annotations.patches`: a patch around every point (or each image with its points'
  labels as a multi-label set), ``manifest.csv`` that ``train`` reads, and ``problems.csv``.

``seabed-hmc import-points`` runs the three.
"""
