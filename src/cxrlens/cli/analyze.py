"""``cxrlens analyze …``: latent-space analysis (VAEs, random-forest ranking, masking, TCAV, embeddings,
disentanglement metrics, sanity checks). Each command runs one stage of :mod:`cxrlens.analysis.stages` and writes
``analysis/<run>/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cxrlens.analysis.disentanglement import DisentanglementConfig
from cxrlens.analysis.embedding import EmbeddingConfig
from cxrlens.analysis.importance import ImportanceConfig
from cxrlens.analysis.masking import MaskingConfig
from cxrlens.analysis.stages import (
    AnalyzeDisentangleConfig,
    AnalyzeEmbedConfig,
    AnalyzeImportanceConfig,
    AnalyzeTrainVAEConfig,
)
from cxrlens.analysis.stages_maps import AnalyzeMaskConfig, AnalyzeSanityConfig, AnalyzeTCAVConfig
from cxrlens.analysis.tcav import TCAVConfig
from cxrlens.analysis.vae import VAEConfig
from cxrlens.cli.common import (
    FORCE_OPTION,
    WORKSPACE_OPTION,
    config_csv_option,
    config_default,
    config_option,
    kv_table,
    open_workspace,
    print_stage_result,
)
from cxrlens.console import console
from cxrlens.saliency.sanity import SanityConfig

app = typer.Typer(
    help="Latent-space analysis: which parts of a latent mean what, and are they entangled?", no_args_is_help=True
)


def _threads_option(config_cls: type) -> Any:
    return config_option(config_cls, "threads", help="torch CPU threads (0 = torch's default).")


def _dataset_option(config_cls: type) -> Any:
    return config_option(config_cls, "dataset", "--dataset", "-d", help="Dataset in the workspace.")


def _latents_option(config_cls: type) -> Any:
    return config_option(
        config_cls,
        "latents",
        "--latents",
        "-l",
        help="vae:<run>, activations:<run>:<stream> or sae:<sae run>:<run>:<stream>.",
    )


@app.command("train-vae")
def train_vae_cmd(
    kind: str = config_option(VAEConfig, "kind", help="ae, beta-vae or factor-vae."),
    dataset: str = _dataset_option(AnalyzeTrainVAEConfig),
    split: str = config_option(
        AnalyzeTrainVAEConfig, "split", help="Split to train on (train, val, test or all); all images are encoded."
    ),
    image_size: int = config_option(VAEConfig, "image_size", help="Images are resized to this (a power of two)."),
    latent_channels: int = config_option(
        VAEConfig, "latent_channels", help="Latent channels (dims of a vector latent, maps of a spatial one)."
    ),
    latent_grid: int | None = typer.Option(
        None, help="Latent map side; 1 = vector \\[default: 4 for ae, 1 otherwise]."
    ),
    width: int = config_option(VAEConfig, "width", help="Conv channels."),
    beta: float = config_option(VAEConfig, "beta", help="β-VAE KL weight."),
    gamma: float = config_option(VAEConfig, "gamma", help="FactorVAE total-correlation weight."),
    steps: int = config_option(VAEConfig, "steps", help="Training steps."),
    batch_size: int = config_option(VAEConfig, "batch_size", help="Images per step."),
    lr: float = config_option(VAEConfig, "lr", help="Adam learning rate."),
    seed: int = config_option(VAEConfig, "seed", help="Seed of initialisation, batches and noise."),
    run: str | None = typer.Option(None, help="Output name under analysis/ \\[default: <kind>-<dataset>]."),
    threads: int = _threads_option(AnalyzeTrainVAEConfig),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Train an autoencoder / β-VAE / FactorVAE; write the model, latents of every image and a traversal grid."""
    from cxrlens.analysis.stages import run_analyze_train_vae

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


@app.command("importance")
def importance_cmd(
    target: str = typer.Option(..., "--target", "-t", help="Label column (e.g. Cardiomegaly) or factor (e.g. ctr)."),
    latents: str = _latents_option(AnalyzeImportanceConfig),
    dataset: str = _dataset_option(AnalyzeImportanceConfig),
    n_trees: int = config_option(ImportanceConfig, "n_trees", help="Random-forest trees."),
    repeats: int = config_option(
        ImportanceConfig, "n_repeats", "--repeats", help="Shuffles per dim on the held-out split."
    ),
    seed: int = config_option(ImportanceConfig, "seed", help="Seed of forest and shuffles."),
    run: str | None = typer.Option(None, help="Output name \\[default: importance-<target>-<latents>]."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Rank latent dims/maps by held-out permutation importance of a random forest predicting a label or factor."""

    from cxrlens.analysis.stages import run_analyze_importance

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
    latents: str = _latents_option(AnalyzeEmbedConfig),
    dataset: str = _dataset_option(AnalyzeEmbedConfig),
    method: str = config_option(EmbeddingConfig, "method", help="umap or tsne."),
    colour_by: str = config_csv_option(AnalyzeEmbedConfig, "colour_by", help="Comma-separated labels/factors."),
    split: str = config_option(AnalyzeEmbedConfig, "split", help="Images to embed: train, val, test or all."),
    max_points: int = config_option(EmbeddingConfig, "max_points", help="Subsample (seeded) above this many images."),
    seed: int = config_option(EmbeddingConfig, "seed", help="Seed of the embedding and subsample."),
    run: str | None = typer.Option(None, help="Output name \\[default: embed-<method>-<latents>]."),
    threads: int = _threads_option(EmbeddingConfig),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """UMAP / t-SNE of a latent, coloured by labels or factors, with validation numbers."""
    from cxrlens.analysis.stages import run_analyze_embed

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
    latents: str = config_csv_option(
        AnalyzeDisentangleConfig, "latents", "--latents", "-l", help="Comma-separated latent sources."
    ),
    dataset: str = _dataset_option(AnalyzeDisentangleConfig),
    factors: str | None = typer.Option(None, help="Comma-separated factors \\[default: the visible sprite factors]."),
    interventional: bool = config_option(
        AnalyzeDisentangleConfig, "interventional", help="VAE sources: BetaVAE/FactorVAE from the sprites sampler."
    ),
    batch_size: int = config_option(DisentanglementConfig, "batch_size", help="Samples per BetaVAE/FactorVAE point."),
    num_train: int = config_option(
        DisentanglementConfig, "num_train", help="BetaVAE points / FactorVAE votes for fitting."
    ),
    num_eval: int = config_option(DisentanglementConfig, "num_eval", help="… for evaluating."),
    seed: int = config_option(DisentanglementConfig, "seed", help="Seed of all sampling."),
    run: str = typer.Option("disentanglement", help="Output name."),
    threads: int = _threads_option(AnalyzeDisentangleConfig),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """BetaVAE, FactorVAE, MIG, DCI and SAP of each latent against the ground-truth factors; one comparison table."""

    from cxrlens.analysis.stages import run_analyze_disentangle

    metrics = DisentanglementConfig(batch_size=batch_size, num_train=num_train, num_eval=num_eval, seed=seed)
    cfg = AnalyzeDisentangleConfig(
        _split_list(latents),
        dataset,
        _split_list(factors) if factors else config_default(AnalyzeDisentangleConfig, "factors"),
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
    vae: str = config_option(
        AnalyzeMaskConfig, "vae", help="VAE run (from train-vae) whose latent channels are masked."
    ),
    dataset: str = _dataset_option(AnalyzeMaskConfig),
    factors: str | None = typer.Option(None, help="Comma-separated factors \\[default: the visible sprite factors]."),
    mode: str = config_option(MaskingConfig, "mode", help="zero or mean replacement."),
    threshold: float = config_option(
        MaskingConfig, "threshold", help="Effect (in factor std) that counts as 'affected'."
    ),
    n_images: int = config_option(AnalyzeMaskConfig, "n_images", help="Held-out images to mask."),
    reader_steps: int = config_option(AnalyzeMaskConfig, "reader_steps", help="Training steps of the factor reader."),
    run: str | None = typer.Option(None, help="Output name \\[default: mask-<vae>]."),
    threads: int = _threads_option(AnalyzeMaskConfig),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Mask each latent map, decode, show the difference and count the ground-truth factors it moves."""

    from cxrlens.analysis.stages_maps import run_analyze_mask

    cfg = AnalyzeMaskConfig(
        vae,
        dataset,
        _split_list(factors) if factors else config_default(AnalyzeMaskConfig, "factors"),
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
    classes: str = config_csv_option(AnalyzeTCAVConfig, "classes", help="Comma-separated class labels of the model."),
    model: str = config_option(
        AnalyzeTCAVConfig,
        "model",
        help="lt-vit:<run>\\[:label-tokens|cls], or qa:<run>: the calibrated presence heads of `cxrlens qa train` "
        "on their backbone (one logit per finding with a head).",
    ),
    layer: str = config_option(
        AnalyzeTCAVConfig,
        "layer",
        help="lt-vit: module name of the layer (e.g. model.blocks.2); qa: backbone layer (block.0 … or final).",
    ),
    dataset: str = _dataset_option(AnalyzeTCAVConfig),
    split: str = config_option(
        AnalyzeTCAVConfig, "split", help="Split supplying class examples, concept examples and random sets."
    ),
    n_random: int = config_option(TCAVConfig, "n_random", help="Random counterpart sets / null CAVs (≥ 20)."),
    set_size: int = config_option(AnalyzeTCAVConfig, "set_size", help="Examples per concept and random set."),
    alpha: float = config_option(TCAVConfig, "alpha", help="Benjamini–Hochberg false-discovery rate."),
    seed: int = config_option(TCAVConfig, "seed", help="Seed of the sets and classifiers."),
    pool: str = config_option(
        TCAVConfig, "pool", help="flatten (a CAV over every value of the layer) or mean (over its tokens: D-dim CAVs)."
    ),
    run: str = typer.Option("tcav", help="Output name."),
    threads: int = _threads_option(AnalyzeTCAVConfig),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """TCAV scores with random-concept nulls, t-tests and Benjamini–Hochberg; only significant scores count."""
    from cxrlens.analysis.stages_maps import run_analyze_tcav

    cfg = AnalyzeTCAVConfig(
        model,
        dataset,
        layer,
        _split_list(classes),
        tuple(concepts),
        split,
        set_size,
        tcav=TCAVConfig(n_random=n_random, alpha=alpha, seed=seed, pool=pool),
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
    vae: str = config_option(AnalyzeSanityConfig, "vae", help="VAE run whose masking maps are checked."),
    lt_vit: str = config_option(
        AnalyzeSanityConfig, "lt_vit", help="lt-vit run whose attention/rollout/Grad-CAM maps are checked."
    ),
    interpret: str = config_option(
        AnalyzeSanityConfig, "interpret", help="Interpretation run whose SAE feature heatmaps are checked."
    ),
    dataset: str = _dataset_option(AnalyzeSanityConfig),
    n_images: int = config_option(AnalyzeSanityConfig, "n_images", help="Test images."),
    threshold: float = config_option(
        SanityConfig, "threshold", help="Pass when final Spearman(|map|) and SSIM are both below this."
    ),
    run: str = typer.Option("sanity", help="Output name."),
    threads: int = _threads_option(AnalyzeSanityConfig),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Cascading parameter randomisation of the project's maps: a method passes when its maps change."""
    from cxrlens.analysis.stages_maps import run_analyze_sanity

    cfg = AnalyzeSanityConfig(
        dataset,
        vae,
        lt_vit,
        interpret=interpret,
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
