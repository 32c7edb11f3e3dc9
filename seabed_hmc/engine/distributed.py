"""Process groups for ``torchrun``: who am I, how many are we, and the few collectives the engine needs.

Training and ``predict-tiles`` call :func:`setup` at their start.  Under ``torchrun`` (``WORLD_SIZE`` > 1
in the environment) it joins the process group: NCCL when the process computes on a CUDA GPU, gloo on
the CPU (``SEABED_HMC_DIST_BACKEND`` overrides).  Without torchrun it is a no-op and every helper
degrades to the single-process case.
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
    device: torch.device = torch.device("cpu")  # where collectives put their tensors (NCCL: the GPU)

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
        value = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())


def backend_for(device: torch.device) -> str:
    """The process-group backend for a compute device: NCCL on CUDA GPUs, gloo on the CPU."""
    return os.environ.get("SEABED_HMC_DIST_BACKEND") or ("nccl" if device.type == "cuda" else "gloo")


def setup(device: torch.device | None = None) -> World:
    """The current process group, joining it under torchrun (the backend from ``device``)."""
    device = device or torch.device("cpu")
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _collective_device(device))
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's barrier and collectives use the current GPU
        dist.init_process_group(backend_for(device))
        return World(dist.get_rank(), dist.get_world_size(), _collective_device(device))
    return World(device=device)


def _collective_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def exit_cleanly(code: int = 0) -> None:
    """Leave the group and end the process at once: with gloo, about 1 rank in 5 otherwise aborts at
    interpreter exit ("terminate called without an active exception"; ENVIRONMENT.md)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
