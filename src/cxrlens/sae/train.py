"""Training any registered SAE on a stream of activation batches, with checkpoints and exact resume.

The trainer knows tensors, not datasets: it takes an iterator of ``(B, D)`` activation batches (e.g.
``ActivationStore.iter_batches`` chained over epochs) and callbacks ``f(step, sae, stats)`` run after every step.

* **Init**: parameters from ``torch.manual_seed(cfg.seed)``; the first batch fits the input scale
  (``E‖x‖² = D``) and ``b_dec`` (geometric median, mean or zeros), then is trained on like any other.
* **Optimiser**: Adam or AdamW; lr rises linearly over ``warmup_steps``, stays flat, and decays linearly to
  ``min_lr_ratio · lr`` from ``decay_start · steps`` on; global grad-norm clipping; for unit-norm families the
  gradient parallel to each atom is removed before the step and the atoms renormalised after it. The sparsity
  coefficient can warm up linearly (``sparsity_warmup_steps``).
* **Dead latents**: tracked in the model over ``sae.cfg.dead_tokens`` tokens; AuxK (TopK family) uses them; with
  ``resample_every > 0`` dead latents are re-initialised towards badly reconstructed inputs of the current batch
  (their Adam state reset).
* **Checkpoints** (:func:`save_checkpoint`): one safetensors file with a JSON header (schema version, package
  version, full config, step, tokens) holding the model, the optimiser state and the resampling RNG state. Resume
  loads the latest one and skips the batches already seen, so the iterator must replay the same sequence from the
  start (a seeded reader does); the result is bit-identical to an uninterrupted run on the same device.
* bf16 autocast on CUDA only (``bf16_autocast``); ``compile=True`` wraps the loss in ``torch.compile``.
* **Data parallel** (``parallel=``, a :class:`DataParallel` such as :class:`cxrlens.scale.ddp.TorchDataParallel`
  under ``torchrun``): every rank runs this loop on its own batches (``batch_size / world`` rows each); the
  gradients are averaged across ranks before clipping, rank 0's state is broadcast after the step-0 init and after
  each resampling, the logged losses are rank means, ``tokens`` counts all ranks, and only rank 0 writes
  checkpoints (every rank resumes from the same one). Dead-latent counters stay per rank.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import save

from cxrlens import __version__
from cxrlens.checkpoint import read_checkpoint
from cxrlens.config import config_from_dict, config_to_dict
from cxrlens.console import progress
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes
from cxrlens.sae.base import SAE, SAEConfig
from cxrlens.sae.registry import build_sae

__all__ = [
    "CHECKPOINT_SCHEMA",
    "DataParallel",
    "TrainConfig",
    "TrainResult",
    "load_checkpoint",
    "lr_at",
    "save_checkpoint",
    "train",
]

CHECKPOINT_SCHEMA = 1
Callback = Callable[[int, SAE, dict[str, float]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (hashed into the run's manifest).

    Attributes:
        sae: the architecture. steps: optimiser steps. batch_size: tokens per step (used by readers and reports).
        optimizer: ``adam`` or ``adamw``; lr, betas, weight_decay: its settings.
        warmup_steps: linear lr warm-up; decay_start: fraction of steps after which lr decays linearly to
            ``min_lr_ratio · lr``. grad_clip: max global grad norm (0: off).
        sparsity_warmup_steps: the sparsity coefficient rises linearly from 0 over these steps.
        b_dec_init: ``geometric_median``, ``mean`` or ``zeros``; normalise_input: fit the input scale.
        resample_every: steps between dead-latent resamplings (0: never). checkpoint_every: steps (0: end only).
        log_every: steps between history records. seed: init and resampling. compile: ``torch.compile`` the loss.
        bf16_autocast: bf16 autocast when training on CUDA (ignored on CPU).
    """

    sae: SAEConfig = field(default_factory=SAEConfig)
    steps: int = 2000
    batch_size: int = 1024
    optimizer: str = "adam"
    lr: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 100
    decay_start: float = 0.8
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    sparsity_warmup_steps: int = 0
    b_dec_init: str = "geometric_median"
    normalise_input: bool = True
    resample_every: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    compile: bool = False
    bf16_autocast: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError("optimizer must be adam or adamw")
        if self.b_dec_init not in ("geometric_median", "mean", "zeros"):
            raise ValueError("b_dec_init must be geometric_median, mean or zeros")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be ≥ 1")


class DataParallel(Protocol):
    """What :func:`train` needs from a data-parallel group (:class:`cxrlens.scale.ddp.TorchDataParallel`).

    Every rank must pass the same ``callbacks`` (the stats are averaged, a collective call, on the steps they run).
    ``rank`` (0 writes checkpoints) and ``world`` (number of ranks); ``average_gradients(model)`` replaces every
    gradient by its mean over the ranks; ``broadcast_state(model, opt)`` copies rank 0's parameters, buffers and
    optimiser state to every rank; ``average_stats(stats)`` returns the rank mean of each value;
    ``broadcast_object(obj)`` returns rank 0's ``obj`` on every rank; ``barrier()`` waits for every rank.
    """

    rank: int
    world: int

    def average_gradients(self, model: torch.nn.Module) -> None: ...

    def broadcast_state(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> None: ...

    def average_stats(self, stats: dict[str, float]) -> dict[str, float]: ...

    def broadcast_object(self, obj: Any) -> Any: ...

    def barrier(self) -> None: ...


@dataclass
class TrainResult:
    sae: SAE
    history: list[dict[str, float]]
    steps: int
    tokens: int
    seconds: float
    resumed_from: int = 0


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimiser step ``step`` (0-based)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    start = int(cfg.decay_start * cfg.steps)
    if step < start or cfg.steps <= start:
        return cfg.lr
    frac = (step - start) / max(1, cfg.steps - start)
    return cfg.lr * (1.0 - frac * (1.0 - cfg.min_lr_ratio))


def _make_optimizer(sae: SAE, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam/AdamW, fused (one kernel per step, ~6× faster on CPU for SAE-sized matrices) where torch supports it."""
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    try:
        return cls(sae.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - older torch or an unsupported device
        return cls(sae.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


# ------------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(
    path: str | Path,
    sae: SAE,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    step: int,
    tokens: int,
    gen: torch.Generator,
) -> Path:
    """Model + optimiser + RNG state after ``step`` steps, as one safetensors file with a JSON header (atomic)."""

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}
    for i, p in enumerate(sae.parameters()):
        for key, val in opt.state.get(p, {}).items():
            tensors[f"optim.{i}.{key}"] = (val if torch.is_tensor(val) else torch.tensor(val)).detach().cpu()
    tensors["rng"] = gen.get_state()
    header = {
        "schema": CHECKPOINT_SCHEMA,
        "package_version": __version__,
        "config": config_to_dict(cfg),
        "step": step,
        "tokens": tokens,
    }
    return atomic_write_bytes(Path(path), save(tensors, metadata={"cxrlens": json.dumps(header)}))


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(header, tensors) of a checkpoint written by :func:`save_checkpoint`; schema-checked."""

    header, _, tensors = read_checkpoint(path, key="cxrlens", schema=CHECKPOINT_SCHEMA, kind="SAE training")
    return header, tensors


def _restore(sae: SAE, opt: torch.optim.Optimizer, gen: torch.Generator, tensors: dict[str, torch.Tensor]) -> None:
    sae.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for i, p in enumerate(sae.parameters()):
        state = {k.split(".", 2)[2]: v.to(p.device) for k, v in tensors.items() if k.startswith(f"optim.{i}.")}
        if state:
            opt.state[p] = state
    gen.set_state(tensors["rng"])


def _latest_checkpoint(directory: Path | None) -> Path | None:
    if directory is None or not directory.is_dir():
        return None
    found = sorted(directory.glob("step-*.safetensors"))
    return found[-1] if found else None


# ------------------------------------------------------------------------------------------------ resampling
@torch.no_grad()
def resample_dead(sae: SAE, opt: torch.optim.Optimizer, x_BD: torch.Tensor, gen: torch.Generator) -> int:
    """Re-initialise dead latents towards inputs drawn ∝ their squared reconstruction error; returns how many."""
    dead = torch.nonzero(sae.dead_mask()).reshape(-1)
    if len(dead) == 0:
        return 0
    x_n = sae.normalise(x_BD.float())
    err = (sae.decode_n(sae.encode_n(x_n)) - x_n).pow(2).sum(-1)
    pick = torch.multinomial(err.cpu() + 1e-12, len(dead), replacement=True, generator=gen).to(x_n.device)
    d = x_n[pick] - sae.b_dec
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-8)
    alive = ~sae.dead_mask()
    enc_norm = sae.W_enc[alive].norm(dim=1).mean() if alive.any() else torch.tensor(1.0)
    sae.W_dec[dead] = d
    sae.W_enc[dead] = d * enc_norm * 0.2
    sae.b_enc[dead] = 0.0
    for p, rows in ((sae.W_dec, dead), (sae.W_enc, dead), (sae.b_enc, dead)):
        for key in ("exp_avg", "exp_avg_sq"):
            if key in opt.state.get(p, {}):
                opt.state[p][key][rows] = 0.0
    sae.tokens_since_fired[dead] = 0
    return len(dead)


# ------------------------------------------------------------------------------------------------ the loop
def train(
    batches: Iterable[torch.Tensor],
    cfg: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device = "cpu",
    show_progress: bool = True,
    parallel: DataParallel | None = None,
) -> TrainResult:
    """Train ``cfg.sae`` for ``cfg.steps`` steps on ``batches`` ((B, D) tensors; with ``parallel``, this rank's
    (B / world, D) share of each step); see the module docstring."""
    world = parallel.world if parallel is not None else 1
    writer = parallel is None or parallel.rank == 0
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    sae = build_sae(cfg.sae).to(device)
    opt = _make_optimizer(sae, cfg)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    start, tokens = 0, 0
    latest = _latest_checkpoint(ckpt_dir) if resume else None
    if latest is not None:
        header, tensors = load_checkpoint(latest)
        if header["config"] != config_to_dict(cfg):
            raise BadInputError(latest, "checkpoint was written with a different config; remove it or use --force")
        _restore(sae, opt, gen, tensors)
        start, tokens = int(header["step"]), int(header["tokens"])
    loss_fn = torch.compile(sae.loss) if cfg.compile else sae.loss
    autocast = device.type == "cuda" and cfg.bf16_autocast
    it = iter(batches)
    for _ in range(start):  # replay the stream up to where the checkpoint stopped
        next(it)
    history: list[dict[str, float]] = []
    sae.train()
    t0 = time.perf_counter()
    tokens_run = 0
    with progress(disable=not show_progress) as bar:
        task = bar.add_task("SAE", total=cfg.steps, completed=start)
        for step in range(start, cfg.steps):
            try:
                x = next(it).to(device, non_blocking=True)
            except StopIteration:
                raise BadInputError(None, f"the activation stream ended after {step} of {cfg.steps} steps") from None
            if step == 0:
                if cfg.normalise_input:
                    sae.fit_input_scale(x)
                sae.init_b_dec(x, cfg.b_dec_init)
                if parallel is not None:
                    parallel.broadcast_state(sae, opt)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            warm = min(1.0, (step + 1) / cfg.sparsity_warmup_steps) if cfg.sparsity_warmup_steps else 1.0
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                out = loss_fn(x, warm)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            if parallel is not None:
                parallel.average_gradients(sae)
            sae.remove_parallel_decoder_grad()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
            opt.step()
            sae.project_decoder()
            if cfg.resample_every and (step + 1) % cfg.resample_every == 0:
                resample_dead(sae, opt, x, gen)
                if parallel is not None:
                    parallel.broadcast_state(sae, opt)
            tokens += x.shape[0] * world
            tokens_run += x.shape[0] * world
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps or callbacks:
                stats = {k: float(v.detach()) for k, v in out.items()}
                if parallel is not None:
                    stats = parallel.average_stats(stats)
                stats.update(step=step + 1, tokens=tokens, lr=lr_at(step, cfg))
                stats["dead_frac"] = float(sae.dead_mask().float().mean())
                stats["tokens_per_s"] = tokens_run / max(time.perf_counter() - t0, 1e-9)
                if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                    history.append(stats)
                    bar.update(
                        task,
                        description=f"SAE {stats['tokens_per_s']:,.0f} tok/s mse {stats['mse']:.4f} "
                        f"L0 {stats['l0']:.1f} dead {stats['dead_frac']:.1%}",
                    )
                for cb in callbacks:
                    cb(step + 1, sae, stats)
            bar.update(task, advance=1)
            if writer and ckpt_dir is not None and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                save_checkpoint(ckpt_dir / f"step-{step + 1:09d}.safetensors", sae, opt, cfg, step + 1, tokens, gen)
    if writer and ckpt_dir is not None and (not cfg.checkpoint_every or cfg.steps % cfg.checkpoint_every):
        save_checkpoint(ckpt_dir / f"step-{cfg.steps:09d}.safetensors", sae, opt, cfg, cfg.steps, tokens, gen)
    sae.eval()
    return TrainResult(sae, history, cfg.steps, tokens, time.perf_counter() - t0, resumed_from=start)


def config_from_checkpoint(path: str | Path) -> TrainConfig:
    header, _ = load_checkpoint(path)
    return config_from_dict(TrainConfig, header["config"])
