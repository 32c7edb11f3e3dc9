"""Process groups for ``torchrun``: who am I, how many are we, and the few collectives the engine needs.

Training and ``predict-tiles`` call :func:`setup` at their start.  Under ``torchrun`` (``WORLD_SIZE`` > 1
in the environment) it joins the process group: gloo, since the engine computes on the CPU.  Without
torchrun it is a no-op and every helper degrades to the single-process case.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_agree(self, flag: bool) -> bool:
        """True on every rank only if ``flag`` is true on every rank."""
        if not self.distributed:
            return flag
        value = torch.tensor([1 if flag else 0])
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())


def setup() -> World:
    """The current process group, joining it under torchrun."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1:
        dist.init_process_group(os.environ.get("SEABED_HMC_DIST_BACKEND", "gloo"))
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def exit_cleanly(code: int = 0) -> None:
    """Leave the group and end the process at once: with gloo, about 1 rank in 5 otherwise aborts at
    interpreter exit ("terminate called without an active exception"; ENVIRONMENT.md)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
