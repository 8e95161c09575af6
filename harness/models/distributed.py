"""Multi-GPU data-parallel training through torch.distributed (DDP); also runs on CPU with gloo.

Launch one process per device with torchrun::

    torchrun --nproc_per_node 8 -m harness.models.distributed --model resnet50 --profile gpu
    torchrun --nproc_per_node 8 -m harness.cli train --model resnet50 --ddp

Every rank holds the whole training split as a uint8 tensor on its device and, like
``DistributedSampler``, takes every ``world_size``-th image of each global batch of the shared,
seeded permutation (``recipe.batch_size`` is the global batch). Gradients are averaged by DDP,
BatchNorm buffers are broadcast from rank 0 at the end of every epoch, and only rank 0 takes the
run lock and writes checkpoints. A distributed run always starts from scratch (no resume).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from harness.models.checkpoints import CheckpointStore, TrainedRun
    from harness.models.zoo import ZooEntry


@dataclass(frozen=True)
class DistContext:
    """This process' place in the group."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(backend: str | None = None) -> DistContext:
    """Join (or reuse) the default process group described by torchrun's environment variables.

    ``backend`` defaults to nccl with CUDA, gloo without.
    """
    if not dist.is_initialized():
        missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise RuntimeError(f"distributed training needs torchrun's environment ({', '.join(missing)} unset): "
                               "launch with `torchrun --nproc_per_node N -m harness.models.distributed ...`")
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())), backend=dist.get_backend())


def shard(index: torch.Tensor, ctx: DistContext | None) -> torch.Tensor:
    """This rank's share of a global batch of indices (every ``world_size``-th, from ``rank``)."""
    return index if ctx is None else index[ctx.rank :: ctx.world_size]


def all_reduce_sum(value: torch.Tensor, ctx: DistContext | None) -> torch.Tensor:
    if ctx is not None:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_reduce_max(value: torch.Tensor, ctx: DistContext | None) -> torch.Tensor:
    if ctx is not None:
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext | None) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank."""
    if ctx is None:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def barrier(ctx: DistContext | None) -> None:
    if ctx is not None:
        dist.barrier()


def device_for_rank(profile: str, ctx: DistContext) -> torch.device:
    """``cuda:<local_rank>`` for profiles that need CUDA, else the CPU."""
    from harness.models.trainer import device_for

    device = device_for(profile)
    if device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return device


def train_distributed(entry: ZooEntry, *, profile: str | None = None, store: CheckpointStore | None = None,
                      progress: bool = True, ctx: DistContext | None = None) -> TrainedRun | None:
    """Train ``entry`` as one rank of a data-parallel group; rank 0 returns the run, the others None.

    Without ``ctx`` the process joins the group torchrun describes and leaves it at the end.
    """
    from harness.models.checkpoints import CheckpointStore
    from harness.models.recipes import get_recipe
    from harness.models.trainer import default_profile, train_locked

    owns_group = ctx is None and not dist.is_initialized()
    ctx = ctx or init_from_env()
    try:
        profile = profile or default_profile()
        store = store or CheckpointStore()
        recipe = get_recipe(entry.recipe, profile)
        device = device_for_rank(profile, ctx)
        if not ctx.is_main:
            train_locked(entry, recipe=recipe, profile=profile, store=store, progress=False, dist_ctx=ctx,
                         device=device, resume=False)
            return None
        with store.lock(store.run_dir(entry, recipe, profile)):
            return train_locked(entry, recipe=recipe, profile=profile, store=store, progress=progress,
                                dist_ctx=ctx, device=device, resume=False,
                                reason=f"data-parallel on {ctx.world_size} processes")
    finally:
        if owns_group:
            dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.models.distributed`` under torchrun (see the module docstring)."""
    from dataclasses import replace

    from harness.models.checkpoints import CheckpointStore
    from harness.models.zoo import get_zoo_entry

    parser = argparse.ArgumentParser(description="data-parallel training of a zoo model (launch with torchrun)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--profile", choices=("cpu", "gpu"))
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--pretrained", help="local safetensors file to start from")
    args = parser.parse_args(argv)
    entry = get_zoo_entry(args.model)
    if args.pretrained:
        entry = replace(entry, pretrained=str(os.path.abspath(os.path.expanduser(args.pretrained))))
    train_distributed(entry, profile=args.profile, store=CheckpointStore(args.checkpoint_dir),
                      progress=os.environ.get("RANK", "0") == "0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["DistContext", "init_from_env", "shard", "all_reduce_sum", "all_reduce_max", "broadcast_buffers",
           "barrier", "train_distributed", "main"]
