"""Benchmark: sparse max-constraint vs the dense formulation of the original code.

Forward + backward of the max-constraint with H heads and a batch, median wall time over repeats,
for three hierarchies:

* ``n13``: a tiny tree (1 root, 3 children, 9 grandchildren).
* ``n499``: the FunCat tree of cellcycle_FUN (499 nodes without the artificial root), read from the
  real ARFF in ../shared/data; a synthetic tree of the same size if the data is absent.
* ``go``: the Gene Ontology DAG of seq_GO (about 4,130 nodes), dense cannot run here (it would need
  a (20, 128, 4130, 4130) tensor, about 175 GB); only the sparse version runs, in a fresh process so
  its peak memory is its own.

The dense baseline is the original code's: ``max(R * p[..., None, :], dim=-1)`` with the N x N
descendant matrix R, on probabilities.  Ratios are measured in the same run (these machines are
noisy).  The last line printed is one JSON object with the headline figures.

    python scripts/bench_constraint.py [--heads 20] [--batch 128] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from seabed_hmc.constraint import max_constraint
from seabed_hmc.hierarchy import Hierarchy
from seabed_hmc_studies import SHARED_DATA

SHARED = SHARED_DATA / "hmc_benchmarks" / "HMC_data"
FUNCAT = SHARED / "datasets_FUN" / "cellcycle_FUN" / "cellcycle_FUN.train.arff"
GO = SHARED / "datasets_GO" / "seq_GO" / "seq_GO.train.arff"


def without_root(hierarchy: Hierarchy) -> Hierarchy:
    """The hierarchy minus the artificial 'root' node (the original code's N excludes it)."""
    if "root" not in hierarchy:
        return hierarchy
    keep = [n for n in hierarchy.nodes if n != "root"]
    parents = [
        [hierarchy.nodes[p] for p in hierarchy.parents[hierarchy.index(n)] if hierarchy.nodes[p] != "root"]
        for n in keep
    ]
    return Hierarchy(keep, parents, excluded=[])


def tiny_tree() -> Hierarchy:
    nodes, parents = ["r"], [[]]
    for a in range(3):
        nodes.append(f"r > {a}")
        parents.append(["r"])
        for b in range(3):
            nodes.append(f"r > {a} > {b}")
            parents.append([f"r > {a}"])
    return Hierarchy(nodes, parents)


def synthetic_tree(size: int, seed: int = 0) -> Hierarchy:
    rng = np.random.default_rng(seed)
    parents = [[]] + [[int(rng.integers(max(0, i - 40), i))] for i in range(1, size)]
    return Hierarchy([f"n{i}" for i in range(size)], parents)


def load(case: str) -> tuple[Hierarchy, str]:
    if case == "n13":
        return tiny_tree(), "synthetic 1-3-9 tree"
    path = FUNCAT if case == "n499" else GO
    if path.exists():
        return without_root(Hierarchy.from_arff(path)), "../shared/" + str(
            path.relative_to(SHARED.parents[2])
        )
    if case == "n499":
        return synthetic_tree(499), "synthetic tree (shared data absent)"
    raise SystemExit(f"the GO case needs {path}; run with ../shared/data beside the project")


def descendant_matrix(hierarchy: Hierarchy) -> torch.Tensor:
    """R[i, j] = 1 if j is in D(i): what the original code built (dense N x N)."""
    n = len(hierarchy)
    matrix = torch.zeros(n, n)
    node, ancestor = hierarchy.ancestor_pairs
    matrix[torch.as_tensor(ancestor), torch.as_tensor(node)] = 1.0
    return matrix


def dense_constraint(probabilities: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return torch.max(matrix * probabilities.unsqueeze(-2), dim=-1).values


def time_forward_backward(function, logits: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first call is a warm-up
        x = logits.detach().requires_grad_(True)
        start = time.perf_counter()
        function(torch.sigmoid(x)).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def run_case(case: str, heads: int, batch: int, repeats: int, dense: bool) -> dict:
    hierarchy, origin = load(case)
    torch.manual_seed(0)
    logits = torch.randn(heads, batch, len(hierarchy))
    result = {"case": case, "nodes": len(hierarchy), "source": origin, "height": int(hierarchy.height.max())}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result["sparse_s"] = time_forward_backward(lambda p: max_constraint(p, hierarchy), logits, repeats)
    result["sparse_peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result["rss_before_gb"] = rss_before
    if dense:
        matrix = descendant_matrix(hierarchy)
        result["dense_s"] = time_forward_backward(lambda p: dense_constraint(p, matrix), logits, repeats)
        result["speedup"] = result["dense_s"] / result["sparse_s"]
        # correctness check in the same run: both give the same constrained probabilities
        p = torch.sigmoid(logits)
        result["max_abs_difference"] = float(
            (max_constraint(p, hierarchy) - dense_constraint(p, matrix)).abs().max()
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heads", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--case", choices=["n13", "n499", "go"], help="run one case in this process (internal)"
    )
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.heads, args.batch, args.repeats, dense=args.case != "go")))
        return

    command = " ".join([Path(sys.executable).name, *sys.argv])
    print(f"# {command}   (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    results = {}
    for case in ("n13", "n499", "go"):
        child = [
            sys.executable,
            "-m",
            "seabed_hmc_studies.benchmarks.bench_constraint",  # each case in a fresh process
            "--case",
            case,
            "--heads",
            str(args.heads),
            "--batch",
            str(args.batch),
            "--repeats",
            str(args.repeats),
        ]
        output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        results[case] = json.loads(output.strip().splitlines()[-1])
        r = results[case]
        line = (
            f"{case:5s} N={r['nodes']:5d} height={r['height']:3d} H={args.heads} B={args.batch}  "
            f"sparse {r['sparse_s'] * 1000:8.2f} ms  peak RSS {r['sparse_peak_gb']:.2f} GB"
        )
        if "dense_s" in r:
            line += (
                f"  dense {r['dense_s'] * 1000:9.2f} ms  speedup {r['speedup']:7.1f}x"
                f"  max|diff| {r['max_abs_difference']:.1e}"
            )
        print(line + f"   [{r['source']}]")
    summary = {
        "speedup_n499": round(results["n499"]["speedup"], 2),
        "go_seconds": round(results["go"]["sparse_s"], 4),
        "go_peak_gb": round(results["go"]["sparse_peak_gb"], 3),
        "speedup_n13": round(results["n13"]["speedup"], 2),
        "go_nodes": results["go"]["nodes"],
        "n499_nodes": results["n499"]["nodes"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
