"""Data-parallel training across processes started by torchrun.

Gradients are averaged with one flattened all-reduce per optimiser step rather than by
wrapping the networks in DistributedDataParallel. The wrapper's gradient hooks expect one
forward per ordinary backward, but a GAN step runs D on reals and on fakes before one
backward, and the R1 penalty differentiates D twice (create_graph=True), which DDP does
not support. Without torchrun (WORLD_SIZE unset or 1) every function here is a no-op.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(use_cuda: bool) -> DistributedContext:
    """Join the process group described by torchrun's environment variables.

    The backend is NCCL when ``use_cuda`` and gloo otherwise.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    logger.info("process %d of %d joined the %s process group", rank, world_size, backend)
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size)


def shutdown_distributed(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, context: DistributedContext) -> None:
    """Copy rank 0's parameters and buffers to every other process."""
    if not context.enabled:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor, src=0)


def average_gradients(module: nn.Module, context: DistributedContext) -> None:
    """Replace each parameter's gradient by its mean over all processes."""
    if not context.enabled:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
    flat = torch.cat([param.grad.reshape(-1) for param in params])
    dist.all_reduce(flat)
    flat /= context.world_size
    offset = 0
    for param in params:
        count = param.numel()
        param.grad.copy_(flat[offset : offset + count].view_as(param.grad))
        offset += count


def average_buffers(module: nn.Module, context: DistributedContext) -> None:
    """Average floating-point buffers (batch-norm running statistics) over all processes."""
    if not context.enabled:
        return
    with torch.no_grad():
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= context.world_size


def any_process_true(flag: torch.Tensor, context: DistributedContext) -> bool:
    """Return whether ``flag`` (a bool tensor) is true in any process."""
    value = flag.to(torch.int32).reshape(1)
    if context.enabled:
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(item: Any, context: DistributedContext) -> list[Any]:
    """Return ``item`` from every process, ordered by rank."""
    if not context.enabled:
        return [item]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, item)
    return gathered


def broadcast_object(item: Any, context: DistributedContext) -> Any:
    """Return rank 0's ``item`` in every process, so only rank 0 needs to read a file."""
    if not context.enabled:
        return item
    holder = [item]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
