"""Data-parallel training on the CPU: 2 processes, gloo; identical weights on both ranks, only rank 0 writes."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from harness.models.checkpoints import TrainedRun
from harness.models.distributed import DistContext, shard

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, root: str) -> None:
    """One rank: train the toy entry data-parallel; dump this rank's final weights for the test."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from harness.models import trainer
    from harness.models.checkpoints import CheckpointStore
    from harness.models.distributed import init_from_env, train_distributed
    from harness.models.testing import toy_entry

    fit = trainer._Fitter.fit

    def fit_and_dump(self, *args, **kwargs):
        fit(self, *args, **kwargs)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(Path(root) / f"rank{rank}.safetensors"))

    trainer._Fitter.fit = fit_and_dump
    ctx = init_from_env("gloo")
    try:
        store = CheckpointStore(Path(root) / f"store{rank}")  # separate roots: shows who writes
        train_distributed(toy_entry("ddp", size=32, n=64), profile="cpu", store=store, progress=False, ctx=ctx)
    finally:
        dist.destroy_process_group()


def test_two_processes_train_identical_weights_and_only_rank0_writes(tmp_path):
    context = mp.start_processes(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail("data-parallel workers did not finish within 120 s")
    rank0, rank1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert not (tmp_path / "store1").exists()  # rank 1 took no lock and wrote nothing
    runs = [p for p in (tmp_path / "store0").iterdir() if p.is_dir()]
    assert len(runs) == 1
    run = TrainedRun.from_dir(runs[0])
    assert run.completed and run.epochs == [1, 2]
    saved = load_file(str(run.checkpoint()))
    assert all(torch.equal(saved[k], rank0[k]) for k in saved)


def test_shard_is_a_distributed_sampler_split():
    index = torch.arange(10)
    parts = [shard(index, DistContext(rank=r, world_size=3, local_rank=r, backend="gloo")) for r in range(3)]
    assert [p.tolist() for p in parts] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert torch.equal(shard(index, None), index)
