"""Data-parallel training on torch.distributed, as launched by `torchrun`.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE for each process; we join the process group
(gloo on CPU, nccl on GPU), give every rank its own slice of each global batch, wrap the
objective in DistributedDataParallel (which averages gradients), and sum metrics across ranks.
A plain `python -m vae_core train` sees no such variables and runs as a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 logs and writes checkpoints."""
        return self.rank == 0

    def device_for(self, requested: str) -> torch.device:
        if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible; use 'cpu' or 'auto'")
        return torch.device("cuda", self.local_rank)


def _env_rank(name: str, default: str) -> int:
    """RANK, LOCAL_RANK or WORLD_SIZE as torchrun sets them; anything else is a ConfigError, not a traceback."""
    text = os.environ.get(name, default).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        raise ConfigError(f"${name} must be a whole number (torchrun sets it), got {text[:20]!r}")
    return int(text)


def launched_by_torchrun() -> bool:
    return _env_rank("WORLD_SIZE", "1") > 1


def init_distributed(requested_device: str = "auto") -> DistributedContext:
    """Join the process group torchrun prepared; a world of one when not under torchrun."""
    if not launched_by_torchrun():
        return DistributedContext()
    rank, world = _env_rank("RANK", ""), _env_rank("WORLD_SIZE", "1")
    local_rank = _env_rank("LOCAL_RANK", "0")
    if rank >= world:
        raise ConfigError(f"$RANK {rank} must be below $WORLD_SIZE {world}; start with torchrun")
    use_cuda = requested_device == "cuda" or (requested_device == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistributedContext(rank, world, local_rank, backend)


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum a tensor over all ranks (in place) and return it; a no-op in a world of one."""
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shutdown_distributed(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
