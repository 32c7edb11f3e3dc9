"""One training step of the 20-head ensemble on frozen features (the CCR study's hot loop).

Compares, in one run and in fresh subprocesses (torch reads ``THP_MEM_ALLOC_ENABLE`` once):

* ``permute``: the earlier forward, which multiplied by the first weights permuted to
  (F, heads*hidden) and so copied the first layer and its gradient every step;
* ``broadcast``: the current forward (every layer one ``baddbmm``, the input broadcast as a view);

each with and without transparent huge pages for torch's CPU allocations; and ``broadcast+heap``, the
current setting: THP on and glibc serving large blocks from its heap (no fresh mappings: what
``train`` sets for heads on cached features).  Prints milliseconds per
step (wall, user, system) and minor page faults per step; the last line is one JSON object with the
speed-up of the current setting (broadcast+heap) over the old one (permute, THP off), and over
broadcast with THP alone (``heap_speedup``).

    python scripts/bench_heads.py [--threads 2] [--heads 20] [--features 1280] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import resource, sys, time, json
import torch
from seabed_hmc.models import heads as H

def permute_forward(self, features):
    first_w, first_b = self.weights[0], self.biases[0]
    flat = first_w.permute(1, 0, 2).reshape(self.in_features, -1)
    x = (features @ flat).view(features.shape[0], self.heads, -1).transpose(0, 1) + first_b
    x = self.dropout(torch.relu(x))
    last = len(self.weights) - 1
    for index in range(1, len(self.weights)):
        x = torch.baddbmm(self.biases[index], x, self.weights[index])
        if index < last:
            x = self.dropout(torch.relu(x))
    return x

variant, threads, heads, features, nodes, steps = sys.argv[1], *map(int, sys.argv[2:7])
if variant.endswith("+heap"):  # what train() sets for heads on cached features (engine/allocator.py)
    from seabed_hmc.engine.allocator import serve_large_blocks_from_heap
    serve_large_blocks_from_heap()
if variant == "permute":
    H.EnsembleHead.forward = permute_forward
torch.manual_seed(0)
torch.set_num_threads(threads)
head = H.EnsembleHead(features, nodes, heads=heads)
optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, fused=True)
x, y = torch.randn(64, features), (torch.rand(64, nodes) < 0.2).float()

def step():
    optimizer.zero_grad(set_to_none=True)
    out = head(x)
    torch.nn.functional.binary_cross_entropy_with_logits(out, y.expand_as(out)).backward()
    optimizer.step()

for _ in range(3):
    step()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    step()
wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_ms": 1000 * wall / steps, "user_ms": 1000 * (r1.ru_utime - r0.ru_utime) / steps,
                  "sys_ms": 1000 * (r1.ru_stime - r0.ru_stime) / steps,
                  "minflt": (r1.ru_minflt - r0.ru_minflt) / steps}))
"""


def measure(variant: str, thp: bool, args: argparse.Namespace) -> dict:
    env = dict(os.environ, THP_MEM_ALLOC_ENABLE="1" if thp else "0")
    command = [sys.executable, "-c", CHILD, variant, str(args.threads), str(args.heads), str(args.features)]
    command += [str(args.nodes), str(args.steps)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--heads", type=int, default=20)
    parser.add_argument("--features", type=int, default=1280)
    parser.add_argument("--nodes", type=int, default=43)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    results = {}
    settings = [(v, t) for v in ("permute", "broadcast") for t in (False, True)] + [("broadcast+heap", True)]
    for variant, thp in settings:
        r = measure(variant, thp, args)
        results[(variant, thp)] = r
        print(
            f"{variant:14s} THP {'on ' if thp else 'off'}: {r['wall_ms']:6.0f} ms/step "
            f"(user {r['user_ms']:.0f}, sys {r['sys_ms']:.0f}), {r['minflt']:,.0f} page faults/step"
        )
    old, thp, new = (results[k] for k in (("permute", False), ("broadcast", True), ("broadcast+heap", True)))
    speedups = {"step_speedup": round(old["wall_ms"] / new["wall_ms"], 3)}
    speedups["heap_speedup"] = round(thp["wall_ms"] / new["wall_ms"], 3)
    print(json.dumps({**speedups, "threads": args.threads}))


if __name__ == "__main__":
    main()
