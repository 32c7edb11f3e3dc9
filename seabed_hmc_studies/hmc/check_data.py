"""Read every HMC benchmark in ../shared/data and print a table of what was found.

For each dataset: family, rows per split, input dimension after one-hot (and C-HMCNN's hard-coded value
where it has one), nodes, evaluated nodes, mean labels per row (label strings in the class field) and
mean positive evaluated nodes per row (after ancestor closure) over all splits, and the rows with no
positive evaluated node (in the GO sets, genes labelled only with the three GO roots, i.e. of unknown
function; they stay in the data, with all-negative targets, as in C-HMCNN).  Also checks that
``prepare_hmc_splits`` gives finite features.  Exits non-zero if a check fails; church's input size is
a known difference (C-HMCNN's dictionary says 27, but its 26 numeric attributes plus the 5 one-hot
columns of ``chip_affymetrix_chip {A,B,C,D,A-D}`` make 31; C-HMCNN published no church numbers).

    python scripts/check_hmc_data.py [--root PATH_TO_HMC_data]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from seabed_hmc_studies import SHARED_DATA
from seabed_hmc_studies.hmc.datasets import available_hmc_datasets, load_hmc_dataset, prepare_hmc_splits

SHARED = SHARED_DATA / "hmc_benchmarks" / "HMC_data"
#: C-HMCNN's hard-coded input sizes (by dataset, FunCat and GO alike).
C_HMCNN_INPUT_DIMS = {
    "cellcycle": 77,
    "church": 27,
    "derisi": 63,
    "eisen": 79,
    "gasch1": 173,
    "gasch2": 52,
    "seq": 529,
    "spo": 86,
    "diatoms": 371,
    "enron": 1001,
    "imclef07a": 80,
    "imclef07d": 80,
}
KNOWN_DIFFERENCES = {"church"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=SHARED, help="C-HMCNN's HMC_data folder")
    args = parser.parse_args()
    if not args.root.is_dir():
        print(f"no HMC data at {args.root}; pass --root", file=sys.stderr)
        return 2
    header = (
        f"{'dataset':<14} {'family':<6} {'train':>6} {'valid':>6} {'test':>6} {'dim':>5} {'C-HMCNN':>7} "
        f"{'nodes':>6} {'eval':>6} {'labels/row':>10} {'pos/row':>8} {'no-pos':>6} {'sec':>5}"
    )
    print(header)
    print("-" * len(header))
    problems = []
    for name in available_hmc_datasets(args.root):
        start = time.perf_counter()
        dataset = load_hmc_dataset(args.root, name)
        splits = [s for s in (dataset.train, dataset.valid, dataset.test) if s is not None]
        evaluated = dataset.hierarchy.evaluated
        labels_per_row = np.mean([len(row) for s in splits for row in s.labels])
        positives = np.concatenate([s.targets.numpy()[:, evaluated].sum(axis=1) for s in splits])
        prepared = prepare_hmc_splits(dataset)
        seconds = time.perf_counter() - start
        expected = C_HMCNN_INPUT_DIMS.get(name.split("_")[0])
        valid = len(dataset.valid) if dataset.valid is not None else "-"
        print(
            f"{name:<14} {dataset.family:<6} {len(dataset.train):>6} {valid:>6} {len(dataset.test):>6} "
            f"{dataset.input_dim:>5} {expected if expected else '-':>7} {len(dataset.hierarchy):>6} "
            f"{int(evaluated.sum()):>6} {labels_per_row:>10.2f} {positives.mean():>8.2f} "
            f"{int((positives == 0).sum()):>6} {seconds:>5.1f}"
        )
        base = name.split("_")[0]
        if expected is not None and expected != dataset.input_dim and base not in KNOWN_DIFFERENCES:
            problems.append(f"{name}: input dim {dataset.input_dim}, C-HMCNN has {expected}")
        if not (prepared.x_train.isfinite().all() and prepared.x_test.isfinite().all()):
            problems.append(f"{name}: non-finite features after preparation")
    for problem in problems:
        print(f"CHECK: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
