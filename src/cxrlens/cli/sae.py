"""``cxrlens sae train``: an SAE on an activation store → ``saes/<run>/`` (model, metrics, checkpoints)."""

from __future__ import annotations

from pathlib import Path

import typer

from cxrlens.cli.common import (
    FORCE_OPTION,
    WORKSPACE_OPTION,
    config_option,
    kv_table,
    open_workspace,
    print_stage_result,
)
from cxrlens.console import console
from cxrlens.sae.base import SAEConfig
from cxrlens.sae.run import SAERunConfig
from cxrlens.sae.train import TrainConfig

app = typer.Typer(help="Sparse autoencoders: train on an activation store, report metrics.", no_args_is_help=True)


def _parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _typed(default: object, value: object) -> object:
    """A ``--set`` string converted to the type of the field's default (bool, int, float, tuple of ints)."""
    if not isinstance(value, str) or default is None or isinstance(default, str):
        return value
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(default, list):
        return tuple(int(v) for v in value.split(",") if v.strip())
    return type(default)(value)


@app.command("train")
def train_cmd(
    activations: str = typer.Option(..., "--activations", "-a", help="Activation store name (activations/<RUN>)."),
    stream: str = config_option(
        SAERunConfig, "stream", help="Stream '<layer>/<token>' (default: the first CLS stream)."
    ),
    arch: str = config_option(SAEConfig, "arch", help="relu, topk, batchtopk, jumprelu, gated, matryoshka or hybrid."),
    latents: int | None = typer.Option(None, help="Dictionary size (default: 16× the width; 64× for hybrid)."),
    k: int = config_option(SAEConfig, "k", help="Active latents per token (TopK family)."),
    sparsity_coeff: float = config_option(
        SAEConfig, "sparsity_coeff", help="Sparsity weight (ReLU, JumpReLU, Gated, hybrid)."
    ),
    steps: int = config_option(TrainConfig, "steps", help="Optimiser steps."),
    batch_size: int = config_option(TrainConfig, "batch_size", help="Tokens per step."),
    lr: float = config_option(TrainConfig, "lr", help="Peak learning rate."),
    optimizer: str = config_option(TrainConfig, "optimizer", help="adam or adamw."),
    seed: int = config_option(TrainConfig, "seed", help="Seed of the init, the shuffle and resampling."),
    split: str = config_option(SAERunConfig, "split", help="Rows to train on: train, val, test or all."),
    eval_split: str = config_option(SAERunConfig, "eval_split", help="Rows for metrics.json."),
    checkpoint_every: int = config_option(
        TrainConfig, "checkpoint_every", help="Steps between checkpoints (resume after a crash)."
    ),
    resample_every: int = config_option(
        TrainConfig, "resample_every", help="Steps between dead-latent resamplings (0: never)."
    ),
    set_: list[str] = typer.Option([], "--set", help="Any other SAE config field, e.g. --set hybrid_sparsity_norm=l1."),
    run: str | None = typer.Option(
        None,
        "--run",
        "--name",
        help="Output name (--name under torchrun, which takes --run for itself) \\[default: "
        "<activations>-<arch>-<latents>].",
    ),
    device: str | None = typer.Option(None, help="cpu, cuda … \\[default: cuda if available]."),
    compile_: bool = config_option(TrainConfig, "compile", "--compile", help="torch.compile the loss."),
    distributed: bool = typer.Option(
        False, "--distributed", help="One rank of a torchrun job: data parallel, rank 0 writes (docs/scale.md)."
    ),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Train an SAE on a stored activation stream (re-running resumes from the last checkpoint)."""
    from cxrlens.activations import ActivationStore
    from cxrlens.config import config_from_dict, config_to_dict
    from cxrlens.errors import BadInputError
    from cxrlens.sae.registry import ARCHS, default_latents
    from cxrlens.sae.run import default_stream, run_sae_train

    if arch not in ARCHS:
        raise BadInputError(None, f"unknown --arch {arch!r}; choose from {', '.join(ARCHS)}")
    ws = open_workspace(workspace)
    store = ActivationStore(ws.activations(activations))
    stream = stream or default_stream(store)
    d = store.info(stream).dim
    n_latents = latents or default_latents(arch, d)
    fields = {"arch": arch, "d_in": d, "n_latents": n_latents, "k": k, "sparsity_coeff": sparsity_coeff}
    fields.update(_parse_set(set_))
    try:
        base = config_to_dict(SAEConfig())
        typed = {key: _typed(base.get(key), val) for key, val in fields.items()}
        sae_cfg = config_from_dict(SAEConfig, typed)
    except (TypeError, ValueError) as exc:
        raise BadInputError(None, f"bad SAE option: {exc}") from None
    cfg = SAERunConfig(
        activations=activations,
        stream=stream,
        split=split,
        eval_split=eval_split,
        train=TrainConfig(
            sae=sae_cfg,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            seed=seed,
            checkpoint_every=checkpoint_every,
            resample_every=resample_every,
            compile=compile_,
            warmup_steps=min(100, max(1, steps // 10)),
            sparsity_warmup_steps=steps // 20 if arch in ("relu", "gated", "hybrid", "jumprelu") else 0,
        ),
    )
    name = run or f"{activations}-{arch}-{n_latents}"
    if distributed:  # every rank trains; rank 0 alone writes the artefact and reports it
        from cxrlens.scale.ddp import DistEnv, run_sae_train_distributed

        result = run_sae_train_distributed(ws, cfg, run=name, force=force)
        if DistEnv.from_env().rank != 0:
            return
    else:
        result = run_sae_train(ws, cfg, run=name, device=device, force=force)
    m = result.manifest
    full = result.open().json("metrics")
    rows = [
        ("stream", f"{m.extra['stream']} ({d}-d) → {n_latents:,} latents ({arch})"),
        ("trained", f"{m.rows['train_tokens']:,} tokens, {full.get('train_tokens_per_s', 0):,.0f} tokens/s"),
        ("eval", f"{m.rows['eval_tokens']:,} tokens of split {eval_split}"),
        ("FVE / nMSE", f"{full['fve']:.4f} / {full['nmse']:.4f}"),
        ("L0", f"{full['l0_mean']:.1f}"),
        ("dead / dense", f"{full['dead_frac']:.1%} / {full['dense_frac']:.1%}"),
    ]
    probe = full.get("probe")
    if probe and probe.get("per_label"):
        rows.append(
            (
                "probe AUC",
                f"codes {probe['mean_auc_codes']:.3f} vs raw {probe['mean_auc_raw']:.3f} "
                f"({len(probe['per_label'])} labels)",
            )
        )
    console.print(kv_table("SAE", rows))
    print_stage_result(result, f"sae {result.path.name}")
