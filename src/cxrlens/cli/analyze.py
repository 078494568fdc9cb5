"""``cxrlens analyze …``: latent-space analysis (VAEs, random-forest ranking, masking, TCAV, embeddings,
disentanglement metrics, sanity checks). Each command runs one stage of :mod:`cxrlens.analysis.stages` and writes
``analysis/<run>/``."""

from __future__ import annotations

from pathlib import Path

import typer

from cxrlens.cli.common import FORCE_OPTION, WORKSPACE_OPTION, kv_table, open_workspace, print_stage_result
from cxrlens.console import console

app = typer.Typer(
    help="Latent-space analysis: which parts of a latent mean what, and are they entangled?", no_args_is_help=True
)

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
    from cxrlens.analysis.stages import AnalyzeTrainVAEConfig, run_analyze_train_vae
    from cxrlens.analysis.vae import VAEConfig

    grid = latent_grid if latent_grid is not None else (4 if kind == "ae" else 1)
    vae = VAEConfig(
        kind=kind,
        image_size=image_size,
        latent_channels=latent_channels,
        latent_grid=grid,
        width=width,
        beta=beta,
        gamma=gamma,
        lr=lr,
        batch_size=batch_size,
        steps=steps,
        seed=seed,
    )
    cfg = AnalyzeTrainVAEConfig(dataset=dataset, split=split, vae=vae, threads=threads)
    run = run or f"{kind}-{dataset}"
    result = run_analyze_train_vae(open_workspace(workspace), cfg, run, force=force)
    s = result.open().json("summary")
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


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


LATENTS_OPTION = typer.Option(
    "vae:beta-vae", "--latents", "-l", help="vae:<run>, activations:<run>:<stream> or sae:<sae run>:<run>:<stream>."
)
DATASET_OPTION = typer.Option("cxr-sprites", "--dataset", "-d", help="Dataset in the workspace.")


@app.command("importance")
def importance_cmd(
    target: str = typer.Option(..., "--target", "-t", help="Label column (e.g. Cardiomegaly) or factor (e.g. ctr)."),
    latents: str = LATENTS_OPTION,
    dataset: str = DATASET_OPTION,
    n_trees: int = typer.Option(200, help="Random-forest trees."),
    repeats: int = typer.Option(20, help="Shuffles per dim on the held-out split."),
    seed: int = typer.Option(0, help="Seed of forest and shuffles."),
    run: str | None = typer.Option(None, help="Output name [default: importance-<target>-<latents>]."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Rank latent dims/maps by held-out permutation importance of a random forest predicting a label or factor."""

    from cxrlens.analysis.importance import ImportanceConfig
    from cxrlens.analysis.stages import AnalyzeImportanceConfig, run_analyze_importance

    cfg = AnalyzeImportanceConfig(
        latents, dataset, target, ImportanceConfig(n_trees=n_trees, n_repeats=repeats, seed=seed)
    )
    run = run or _slug(f"importance-{target}-{latents}")
    result = run_analyze_importance(open_workspace(workspace), cfg, run, force=force)
    s = result.open().json("importance")
    table = result.open().table("importance").head(8)
    rows = [
        (
            "forest",
            f"held-out {s['metric']} {s['heldout_score']:.3f} vs baseline {s['baseline_score']:.3f} "
            f"(train {s['n_train']:,} / test {s['n_test']:,})",
        ),
    ]
    rows += [
        (f"#{r['rank']} {r['name']}", f"{r['mean']:+.4f}  [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]")
        for _, r in table.iterrows()
    ]
    console.print(kv_table(f"Permutation importance for {target} (mean drop, 95 % interval)", rows))
    console.print(f"  bar plot: {result.path / 'importance.png'}")
    print_stage_result(result, f"analysis {result.path.name}")


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower()


@app.command("embed")
def embed_cmd(
    latents: str = LATENTS_OPTION,
    dataset: str = DATASET_OPTION,
    method: str = typer.Option("umap", help="umap or tsne."),
    colour_by: str = typer.Option("Cardiomegaly,Pleural Effusion,view", help="Comma-separated labels/factors."),
    split: str = typer.Option("all", help="Images to embed: train, val, test or all."),
    max_points: int = typer.Option(3000, help="Subsample (seeded) above this many images."),
    seed: int = typer.Option(0, help="Seed of the embedding and subsample."),
    run: str | None = typer.Option(None, help="Output name [default: embed-<method>-<latents>]."),
    threads: int = THREADS_OPTION,
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """UMAP / t-SNE of a latent, coloured by labels or factors, with validation numbers."""
    from cxrlens.analysis.embedding import EmbeddingConfig
    from cxrlens.analysis.stages import AnalyzeEmbedConfig, run_analyze_embed

    emb = EmbeddingConfig(method=method, max_points=max_points, seed=seed, threads=max(threads, 1))
    cfg = AnalyzeEmbedConfig(latents, dataset, _split_list(colour_by), split, emb)
    result = run_analyze_embed(open_workspace(workspace), cfg, run or _slug(f"embed-{method}-{latents}"), force=force)
    metrics = result.open().json("embedding")["metrics"]
    rows = [
        (
            name,
            f"RF {m['metric']} 2-D {m['score_2d']:.3f} vs full {m['score_full']:.3f} (chance {m['chance']:.3f}); "
            f"trustworthiness@{m['trust_k']} {m['trustworthiness']:.3f}",
        )
        for name, m in metrics.items()
    ]
    console.print(kv_table(f"{method.upper()} of {latents}: what the 2-D picture keeps", rows))
    console.print(f"  plot: {result.path / 'embedding.png'}")
    print_stage_result(result, f"analysis {result.path.name}")


@app.command("disentangle")
def disentangle_cmd(
    latents: str = typer.Option("vae:beta-vae", "--latents", "-l", help="Comma-separated latent sources."),
    dataset: str = DATASET_OPTION,
    factors: str | None = typer.Option(None, help="Comma-separated factors [default: the visible sprite factors]."),
    interventional: bool = typer.Option(True, help="VAE sources: BetaVAE/FactorVAE from the sprites sampler."),
    batch_size: int = typer.Option(64, help="Samples per BetaVAE/FactorVAE point."),
    num_train: int = typer.Option(300, help="BetaVAE points / FactorVAE votes for fitting."),
    num_eval: int = typer.Option(200, help="… for evaluating."),
    seed: int = typer.Option(0, help="Seed of all sampling."),
    run: str = typer.Option("disentanglement", help="Output name."),
    threads: int = THREADS_OPTION,
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """BetaVAE, FactorVAE, MIG, DCI and SAP of each latent against the ground-truth factors; one comparison table."""

    from cxrlens.analysis.data import SPRITE_FACTORS
    from cxrlens.analysis.disentanglement import DisentanglementConfig
    from cxrlens.analysis.stages import AnalyzeDisentangleConfig, run_analyze_disentangle

    metrics = DisentanglementConfig(batch_size=batch_size, num_train=num_train, num_eval=num_eval, seed=seed)
    cfg = AnalyzeDisentangleConfig(
        _split_list(latents),
        dataset,
        _split_list(factors) if factors else SPRITE_FACTORS,
        interventional,
        metrics,
        threads,
    )
    result = run_analyze_disentangle(open_workspace(workspace), cfg, run, force=force)
    table = result.open().table("disentanglement")
    from rich.table import Table

    out = Table(title="Disentanglement (1 = perfect; see docs/analysis.md for each metric's variant)")
    cols = ["beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap"]
    out.add_column("representation")
    out.add_column("sampler")
    for c in cols:
        out.add_column(c.replace("dci_", "DCI ").replace("_", " "), justify="right")
    for _, r in table.iterrows():
        out.add_row(r["representation"], r["sampler"], *[f"{r[c]:.3f}" for c in cols])
    console.print(out)
    console.print(f"  heatmap: {result.path / 'disentanglement.png'}")
    print_stage_result(result, f"analysis {result.path.name}")


@app.command("mask")
def mask_cmd(
    vae: str = typer.Option("ae", help="VAE run (from train-vae) whose latent channels are masked."),
    dataset: str = DATASET_OPTION,
    factors: str | None = typer.Option(None, help="Comma-separated factors [default: the visible sprite factors]."),
    mode: str = typer.Option("mean", help="zero or mean replacement."),
    threshold: float = typer.Option(0.1, help="Effect (in factor std) that counts as 'affected'."),
    n_images: int = typer.Option(256, help="Held-out images to mask."),
    reader_steps: int = typer.Option(400, help="Training steps of the factor reader."),
    run: str | None = typer.Option(None, help="Output name [default: mask-<vae>]."),
    threads: int = THREADS_OPTION,
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Mask each latent map, decode, show the difference and count the ground-truth factors it moves."""

    from cxrlens.analysis.data import SPRITE_FACTORS
    from cxrlens.analysis.masking import MaskingConfig
    from cxrlens.analysis.stages_maps import AnalyzeMaskConfig, run_analyze_mask

    cfg = AnalyzeMaskConfig(
        vae,
        dataset,
        _split_list(factors) if factors else SPRITE_FACTORS,
        MaskingConfig(mode=mode, threshold=threshold),
        n_images=n_images,
        reader_steps=reader_steps,
        threads=threads,
    )
    result = run_analyze_mask(open_workspace(workspace), cfg, run or f"mask-{vae}", force=force)
    info = result.open().json("masking")
    table = result.open().table("masking").sort_values("mean_abs_diff", ascending=False)
    rows = [("factor reader R² (held out)", ", ".join(f"{k} {v:.2f}" for k, v in info["reader_r2"].items()))]
    rows += [
        (
            f"z{r['channel']}",
            f"|Δimage| {r['mean_abs_diff']:.4f}; {r['entanglement']} factor(s): {r['affected'] or '—'}",
        )
        for _, r in table.iterrows()
    ]
    console.print(kv_table(f"Masking the latent channels of {vae} ({mode} replacement)", rows))
    console.print(f"  difference images: {result.path / 'masking.png'}")
    print_stage_result(result, f"analysis {result.path.name}")


@app.command("tcav")
def tcav_cmd(
    concepts: list[str] = typer.Option(..., "--concept", "-c", help="name=column==value or name=folder:/dir."),
    classes: str = typer.Option("Cardiomegaly", help="Comma-separated class labels of the model."),
    model: str = typer.Option("lt-vit:lt-vit", help="lt-vit:<run>[:label-tokens|cls]."),
    layer: str = typer.Option("model.blocks.2", help="Module name of the layer (e.g. model.blocks.2)."),
    dataset: str = DATASET_OPTION,
    split: str = typer.Option("test", help="Split supplying class examples, concept examples and random sets."),
    n_random: int = typer.Option(20, help="Random counterpart sets / null CAVs (≥ 20)."),
    set_size: int = typer.Option(40, help="Examples per concept and random set."),
    alpha: float = typer.Option(0.05, help="Benjamini–Hochberg false-discovery rate."),
    seed: int = typer.Option(0, help="Seed of the sets and classifiers."),
    run: str = typer.Option("tcav", help="Output name."),
    threads: int = THREADS_OPTION,
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """TCAV scores with random-concept nulls, t-tests and Benjamini–Hochberg; only significant scores count."""
    from cxrlens.analysis.stages_maps import AnalyzeTCAVConfig, run_analyze_tcav
    from cxrlens.analysis.tcav import TCAVConfig

    cfg = AnalyzeTCAVConfig(
        model,
        dataset,
        layer,
        _split_list(classes),
        tuple(concepts),
        split,
        set_size,
        tcav=TCAVConfig(n_random=n_random, alpha=alpha, seed=seed),
        threads=threads,
    )
    result = run_analyze_tcav(open_workspace(workspace), cfg, run, force=force)
    rows = result.open().json("tcav")["rows"]
    out = []
    for r in rows:
        verdict = "significant" if r["significant"] else "not significant"
        stats = f"TCAV {r['tcav_mean']:.2f} ± {r['tcav_std']:.2f} vs null {r['null_mean']:.2f}"
        out.append((f"{r['class']} ← {r['concept']}", f"{stats}; p {r['p']:.1e}, q {r['q']:.1e}  {verdict}"))
    console.print(kv_table(f"TCAV at {layer} ({n_random} random sets, BH q < {alpha})", out))
    console.print(f"  plot: {result.path / 'tcav.png'}")
    print_stage_result(result, f"analysis {result.path.name}")


@app.command("sanity")
def sanity_cmd(
    vae: str | None = typer.Option(None, help="VAE run whose masking maps are checked."),
    lt_vit: str | None = typer.Option(None, help="lt-vit run whose attention/rollout/Grad-CAM maps are checked."),
    interpret: str | None = typer.Option(None, help="Interpretation run whose SAE feature heatmaps are checked."),
    dataset: str = DATASET_OPTION,
    n_images: int = typer.Option(16, help="Test images."),
    threshold: float = typer.Option(0.5, help="Pass when final Spearman(|map|) and SSIM are both below this."),
    run: str = typer.Option("sanity", help="Output name."),
    threads: int = THREADS_OPTION,
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Cascading parameter randomisation of the project's maps: a method passes when its maps change."""
    from cxrlens.analysis.stages_maps import AnalyzeSanityConfig, run_analyze_sanity
    from cxrlens.saliency.sanity import SanityConfig

    cfg = AnalyzeSanityConfig(
        dataset,
        vae or "",
        lt_vit or "",
        interpret=interpret or "",
        n_images=n_images,
        sanity=SanityConfig(threshold=threshold),
        threads=threads,
    )
    result = run_analyze_sanity(open_workspace(workspace), cfg, run, force=force)
    info = result.open().json("sanity")["methods"]
    rows = [
        (
            m,
            f"{'pass' if v['passed'] else 'FAIL'}: after full randomisation Spearman(|map|) "
            f"{v['final_spearman_abs']:.3f}, SSIM {v['final_ssim']:.3f}",
        )
        for m, v in info.items()
    ]
    console.print(kv_table("Sanity check: cascading model-parameter randomisation", rows))
    console.print(f"  curves: {result.path / 'sanity.png'}")
    print_stage_result(result, f"analysis {result.path.name}")
