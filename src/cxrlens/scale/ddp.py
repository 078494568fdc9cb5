"""Data-parallel training under ``torchrun``: the process group and the :class:`cxrlens.sae.train.DataParallel`
the trainers take.

``torchrun --nproc_per_node N … cxrlens sae train … --distributed`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`run_sae_train_distributed` joins
the group (NCCL on GPUs, one per local rank; gloo on CPU), runs :func:`cxrlens.sae.run.run_sae_train` with a
:class:`TorchDataParallel` on every rank and leaves the group. The SAE losses are methods, not ``forward``, so
instead of wrapping the model in ``DistributedDataParallel`` the gradients are averaged with one flat all-reduce per
step — what DDP does, without its forward hooks. Every collective has the process group's timeout
(``$CXRLENS_POOL_TIMEOUT``, at least 30 min), so a rank that dies cannot leave the others waiting for good (and
``torchrun`` stops the other ranks when one fails).

:func:`run_align_train_distributed` does the same for :func:`cxrlens.align.contrastive.run_align_train` (the
alignment adapter: all-gathered embeddings, whole-batch InfoNCE on every rank). The adapter trains on the CPU, so
its group is gloo unless ``backend`` says otherwise.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn

from cxrlens.align.config import AlignConfig
from cxrlens.align.contrastive import run_align_train
from cxrlens.errors import CxrlensError
from cxrlens.parallel import stall_timeout_s
from cxrlens.sae.run import SAERunConfig, run_sae_train
from cxrlens.workspace import StageResult, Workspace

__all__ = [
    "DistEnv",
    "TorchDataParallel",
    "process_group",
    "run_align_train_distributed",
    "run_sae_train_distributed",
]


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a ``torchrun`` job: ``rank`` of ``world``, ``local_rank`` on its node."""

    rank: int
    world: int
    local_rank: int

    @classmethod
    def from_env(cls) -> DistEnv:
        """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; one clear error when not started by ``torchrun``."""
        try:
            return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
        except (KeyError, ValueError):
            raise CxrlensError(
                "--distributed needs torchrun (RANK/WORLD_SIZE unset): torchrun --nproc_per_node N $(which cxrlens) …"
            ) from None

    def device(self) -> torch.device:
        """``cuda:<local_rank>`` when CUDA is available, else the CPU."""
        return torch.device(f"cuda:{self.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


@contextmanager
def process_group(env: DistEnv, *, backend: str | None = None) -> Iterator[DistEnv]:
    """Join the default process group for the ``with`` block (NCCL on CUDA, gloo on CPU) and leave it after."""
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    timeout = datetime.timedelta(seconds=max(stall_timeout_s(), 1800.0))
    dist.init_process_group(backend, rank=env.rank, world_size=env.world, timeout=timeout)
    try:
        yield env
    finally:
        dist.destroy_process_group()


class TorchDataParallel:
    """:class:`cxrlens.sae.train.DataParallel` over the default ``torch.distributed`` process group."""

    def __init__(self) -> None:
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()

    def average_gradients(self, model: torch.nn.Module) -> None:
        """Every parameter's gradient → its mean over the ranks (one flat all-reduce; a missing gradient counts
        as zeros)."""
        params = list(model.parameters())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def broadcast_state(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        """Rank 0's parameters, buffers and optimiser state (for parameters that have one) to every rank."""
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                dist.broadcast(t.data, src=0)
            for p in model.parameters():
                for key in sorted(opt.state.get(p, {})):
                    val = opt.state[p][key]
                    if torch.is_tensor(val):
                        dist.broadcast(val, src=0)

    def average_stats(self, stats: dict[str, float]) -> dict[str, float]:
        """The rank mean of each value (same keys on every rank)."""
        keys = sorted(stats)
        vec = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            vec = vec.cuda()
        dist.all_reduce(vec)
        return {k: float(v) / self.world for k, v in zip(keys, vec.tolist(), strict=True)}

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's ``t`` (same shape), concatenated along dim 0 in rank order, **with autograd**: the backward
        sums the gradients the ranks send to each share (``torch.distributed.nn.functional.all_gather``)."""
        return torch.cat(dist_nn.all_gather(t.contiguous()))

    def broadcast_object(self, obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()


def run_sae_train_distributed(
    ws: Workspace,
    cfg: SAERunConfig,
    *,
    run: str,
    force: bool = False,
    show_progress: bool = True,
    backend: str | None = None,
) -> StageResult:
    """:func:`cxrlens.sae.run.run_sae_train` as one rank of a ``torchrun`` job (each rank calls it with the same
    arguments): ``cfg.train.batch_size`` rows per step over all ranks, the artefact written once by rank 0."""
    env = DistEnv.from_env()
    with process_group(env, backend=backend):
        return run_sae_train(
            ws,
            cfg,
            run=run,
            device=str(env.device()),
            force=force,
            show_progress=show_progress,
            parallel=TorchDataParallel(),
        )


def run_align_train_distributed(
    ws: Workspace,
    cfg: AlignConfig,
    *,
    run: str | None = None,
    encoder: Any = None,
    force: bool = False,
    show_progress: bool = True,
    backend: str | None = "gloo",
) -> StageResult:
    """:func:`cxrlens.align.contrastive.run_align_train` as one rank of a ``torchrun`` job (each rank calls it with
    the same arguments): ``cfg.batch_size`` pairs per step over all ranks (divisible by the world size), rank 0
    fills the text-embedding cache and writes the artefact once. ``backend`` defaults to gloo: the adapter's
    tensors live on the CPU."""
    env = DistEnv.from_env()
    with process_group(env, backend=backend):
        return run_align_train(
            ws, cfg, run=run, encoder=encoder, force=force, show_progress=show_progress, parallel=TorchDataParallel()
        )
