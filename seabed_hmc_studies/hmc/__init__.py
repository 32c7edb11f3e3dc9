"""The HMC benchmarks: ``arff`` (the files), ``datasets`` (by name, preprocessing, held-out fit parts),
``oversampling`` (the HROS baseline), ``tabular`` (training heads on features), ``runs`` (one run of
the protocol), ``benchmark`` (the resumable runner behind ``scripts/hmc_benchmark.py``), ``report``
and ``decisions`` (tables from the runs)."""
