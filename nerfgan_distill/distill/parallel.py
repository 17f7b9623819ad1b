"""Data-parallel training under torchrun: the process group comes from torchrun's environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT: one node or several through its rendezvous),
gloo on CPU and NCCL on GPU. Gradients are averaged with one all-reduce per network, as
StyleGAN2-ADA does, so the two networks' separate phases need no DDP wrapper.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
import torch.distributed as dist

__all__ = ["World", "start", "all_reduce_gradients", "mean_over_processes"]


@dataclass
class World:
    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def start(device: Optional[str]) -> World:
    """The process group for this process: a single process without torchrun's variables."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA device")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=size,
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    return World(rank, size, dev)


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter], world: World) -> Optional[torch.Tensor]:
    """Average the gradients over processes in place; returns them flattened (None if there are
    none) so the caller can check them for NaN/inf in one pass."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return None
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    if world.size > 1:
        dist.all_reduce(flat)
        flat /= world.size
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
            offset += p.numel()
    return flat


def average_buffers(buffers: list, world: World) -> None:
    """Average running statistics (e.g. StyleGAN3's magnitude EMAs, updated from each process's
    own samples) over processes in place, so every process keeps the same model."""
    if world.size <= 1 or not buffers:
        return
    flat = torch.cat([b.detach().float().reshape(-1) for b in buffers])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for b in buffers:
        b.copy_(flat[offset:offset + b.numel()].view_as(b))
        offset += b.numel()


def mean_over_processes(values: dict, world: World) -> dict:
    """{name: scalar tensor} averaged over processes -> {name: float}."""
    names = sorted(values)
    if not names:
        return {}
    stacked = torch.stack([values[n].detach().float().reshape(()) for n in names])
    if world.size > 1:
        dist.all_reduce(stacked)
        stacked /= world.size
    return dict(zip(names, stacked.tolist()))
