"""``cxrlens analyze …``: latent-space analysis (VAEs, random-forest ranking, masking, TCAV, embeddings,
disentanglement metrics, sanity checks). Each command runs one stage of :mod:`cxrlens.analysis.stages` and writes
``analysis/<run>/``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cxrlens.cli.common import FORCE_OPTION, WORKSPACE_OPTION, kv_table, open_workspace, print_stage_result
from cxrlens.console import console

app = typer.Typer(help="Latent-space analysis: which parts of a latent mean what, and are they entangled?",
                  no_args_is_help=True)  # fmt: skip

THREADS_OPTION = typer.Option(1, help="torch CPU threads (0 = torch's default).")


@app.command("train-vae")
def train_vae_cmd(
    kind: str = typer.Option("beta-vae", help="ae, beta-vae or factor-vae."),
    dataset: str = typer.Option("cxr-sprites", "--dataset", "-d", help="Dataset in the workspace."),
    split: str = typer.Option("train", help="Split to train on (train, val, test or all); all images are encoded."),
    image_size: int = typer.Option(64, help="Images are resized to this (a power of two)."),
    latent_channels: int = typer.Option(10, help="Latent channels (dims of a vector latent, maps of a spatial one)."),
    latent_grid: int | None = typer.Option(None, help="Latent map side; 1 = vector [default: 4 for ae, 1 otherwise]."),
    width: int = typer.Option(32, help="Conv channels."),
    beta: float = typer.Option(4.0, help="β-VAE KL weight."),
    gamma: float = typer.Option(10.0, help="FactorVAE total-correlation weight."),
    steps: int = typer.Option(2000, help="Training steps."),
    batch_size: int = typer.Option(64, help="Images per step."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    seed: int = typer.Option(0, help="Seed of initialisation, batches and noise."),
    run: str | None = typer.Option(None, help="Output name under analysis/ [default: <kind>-<dataset>]."),
    threads: int = THREADS_OPTION,
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Train an autoencoder / β-VAE / FactorVAE; write the model, latents of every image and a traversal grid."""
    from cxrlens.analysis.stages import TrainVAEStage, train_vae_stage
    from cxrlens.analysis.vae import VAEConfig

    grid = latent_grid if latent_grid is not None else (4 if kind == "ae" else 1)
    vae = VAEConfig(kind=kind, image_size=image_size, latent_channels=latent_channels, latent_grid=grid, width=width,
                    beta=beta, gamma=gamma, lr=lr, batch_size=batch_size, steps=steps, seed=seed)  # fmt: skip
    cfg = TrainVAEStage(dataset=dataset, split=split, vae=vae, threads=threads)
    run = run or f"{kind}-{dataset}"
    result = train_vae_stage(open_workspace(workspace), cfg, run, force=force)
    s = json.loads((result.path / "summary.json").read_text())
    last, first = s["final_losses_mean_last_100"], s["first_losses"]
    rows = [
        ("model", f"{kind}, latent {latent_channels}×{grid}×{grid}, {steps} steps on {s['images']['train']:,} images"),
        ("reconstruction (nats/image)", f"{first['recon']:.1f} → {last['recon']:.1f} (mean of the last 100 steps)"),
        ("KL", f"{last['kl']:.2f}"),
        ("active latent channels", f"{s['active_units']} of {latent_channels} (variance of the code ≥ 0.01)"),
    ]
    if "tc" in last:
        rows.append(("total correlation (discriminator estimate)", f"{last['tc']:.3f}"))
    console.print(kv_table("Trained latent model", rows))
    console.print(f"  traversal grid: {result.path / 'traversal.png'}")
    print_stage_result(result, f"analysis {result.path.name}")
