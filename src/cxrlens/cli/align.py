"""``cxrlens align …``: language-aligned adapter (train), zero-shot AUCs, semantic search (index/search), probes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cxrlens.align import AlignConfig, ProbeConfig, SearchConfig, ZeroShotConfig
from cxrlens.cli.common import (
    FORCE_OPTION,
    WORKSPACE_OPTION,
    config_csv_option,
    config_option,
    kv_table,
    open_workspace,
    print_stage_result,
)
from cxrlens.cli.common import fmt_number as _fmt
from cxrlens.console import console

app = typer.Typer(
    help="Image–report contrastive adapter on frozen features: zero-shot, semantic search, data-efficient probes.",
    no_args_is_help=True,
)

RUN_OPTION = typer.Option(..., "--run", "-r", help="The align run (align/<run>, written by `align train`).")


@app.command("train")
def train(
    activations: str = typer.Option(..., "--activations", "-a", help="Activation store run (activations/<run>)."),
    dataset: str = config_option(
        AlignConfig, "dataset", help="Dataset with the reports \\[default: the store's dataset]."
    ),
    run: str | None = typer.Option(
        None,
        "--run",
        "-r",
        "--name",
        help="Output name (--name under torchrun, which takes --run for itself) \\[default: align-<activations>].",
    ),
    adapter: str = config_option(AlignConfig, "adapter", help="mlp or attention (attention needs a patch stream)."),
    pooled_stream: str = config_option(
        AlignConfig, "pooled_stream", help="Pooled stream \\[default: the store's …/cls, else …/mean]."
    ),
    patch_stream: str = config_option(
        AlignConfig, "patch_stream", help="Patch stream \\[default: …/patch of the same layer if stored; none]."
    ),
    embed_dim: int = config_option(AlignConfig, "embed_dim", help="Shared embedding size."),
    epochs: int = config_option(AlignConfig, "epochs", help="Training epochs."),
    batch_size: int = config_option(AlignConfig, "batch_size", help="Images per batch (the InfoNCE negatives)."),
    lr: float = config_option(AlignConfig, "lr", help="AdamW learning rate (cosine decay)."),
    sentence_weight: float = config_option(
        AlignConfig, "sentence_weight", help="Weight of the (image, sentence) loss; 0 = reports only."
    ),
    hard_negatives: bool = config_option(
        AlignConfig, "hard_negatives", "--hard-negatives/--no-hard-negatives", help="Negation hard negatives."
    ),
    seed: int = config_option(AlignConfig, "seed", help="Seed."),
    distributed: bool = typer.Option(
        False,
        "--distributed",
        help="One rank of a torchrun job: each rank embeds its share of every batch, rank 0 writes (docs/scale.md).",
    ),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Train the adapter (kill it any time: re-running resumes from the last epoch's checkpoint)."""
    from cxrlens.align.contrastive import run_align_train

    cfg = AlignConfig(
        activations=activations,
        dataset=dataset,
        pooled_stream=pooled_stream,
        patch_stream=patch_stream,
        adapter=adapter,
        embed_dim=embed_dim,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        sentence_weight=sentence_weight,
        hard_negatives=hard_negatives,
        seed=seed,
    )
    if distributed:  # every rank trains; rank 0 alone writes the artefact and reports it
        from cxrlens.scale.ddp import DistEnv, run_align_train_distributed

        result = run_align_train_distributed(open_workspace(workspace), cfg, run=run, force=force)
        if DistEnv.from_env().rank != 0:
            return
    else:
        result = run_align_train(open_workspace(workspace), cfg, run=run, force=force)
    m = result.manifest
    best = m.extra.get("best", {})
    console.print(
        kv_table(
            "Align train",
            [
                ("images", f"{m.rows['images']:,} ({m.rows['train_images']:,} train with a report)"),
                ("streams", f"{m.extra['pooled_stream']} + {m.extra['patch_stream'] or 'no patches'}"),
                ("sentences", f"{m.extra['unique_sentences']:,} unique ({m.extra['flippable_sentences']:,} flippable)"),
                ("best epoch", f"{m.extra['best_epoch'] + 1} of {m.config['epochs']}"),
                (
                    "val image→report R@1",
                    f"{_fmt(best.get('val_r@1'))} (chance {_fmt(best.get('chance_r@1'))})",
                ),
                ("val R@5", _fmt(best.get("val_r@5"))),
                ("temperature", _fmt(best.get("temperature"), 4)),
            ],
        )
    )
    print_stage_result(result, f"align run {result.path.name}")


@app.command("zero-shot")
def zero_shot_cmd(
    run: str = RUN_OPTION,
    split: str = config_option(ZeroShotConfig, "split", help="Split scored."),
    n_boot: int = config_option(ZeroShotConfig, "n_boot", help="Bootstrap resamples for the 95 % CI."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Per-finding zero-shot AUC (positive vs negative prompt ensembles) with bootstrap CIs, and a negation check."""

    from cxrlens.align.stages import run_align_zero_shot

    result = run_align_zero_shot(
        open_workspace(workspace), ZeroShotConfig(run, split=split, n_boot=n_boot), force=force
    )
    table = result.open().table("zeroshot")
    neg = result.open().table("negation").set_index("finding")
    out = Table(title=f"Zero-shot AUC ({split}, 95 % bootstrap CI)", title_justify="left")
    for c in (
        "finding",
        "pos",
        "neg",
        "AUC",
        "95 % CI",
        "AUC neg-prompt only",
        "bal. acc @0",
        "cos(pos,neg) raw → proj",
    ):
        out.add_column(c, justify="left" if c == "finding" else "right")
    for r in table.itertuples():
        nr = neg.loc[r.finding] if r.finding in neg.index else None
        out.add_row(
            r.finding,
            str(r.n_pos),
            str(r.n_neg),
            _fmt(r.auc),
            f"{_fmt(r.ci_low)}–{_fmt(r.ci_high)}",
            _fmt(nr["auc_neg"]) if nr is not None else "–",
            _fmt(nr["bacc_at_0"]) if nr is not None else "–",
            f"{_fmt(nr['raw_cos'], 2)} → {_fmt(nr['proj_cos'], 2)}" if nr is not None else "–",
        )
    console.print(out)
    console.print(
        f"mean AUC over {result.manifest.extra.get('findings_scored', 0)} findings: "
        f"{_fmt(result.manifest.extra.get('mean_auc'))}"
        + (
            f" (95 % CI {_fmt(extra['mean_auc_ci_low'])}–{_fmt(extra['mean_auc_ci_high'])}, resampling studies)"
            if "mean_auc_ci_low" in (extra := result.manifest.extra)
            else ""
        )
    )
    print_stage_result(result, "zero-shot")


@app.command("index")
def index_cmd(
    run: str = RUN_OPTION,
    split: str = config_option(SearchConfig, "split", help="Split indexed and evaluated (all = every image)."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Build the faiss index over image embeddings and score the built-in query set (NDCG@5/@10)."""

    from cxrlens.align.stages import run_align_index

    result = run_align_index(open_workspace(workspace), SearchConfig(run, split=split), force=force)
    table = result.open().table("queries")
    out = Table(title=f"Semantic search ({split}; relevance 2/1/0)", title_justify="left")
    for c in ("query", "kind", "rel 2", "rel 1", "NDCG@5", "NDCG@10", "top-5 grades"):
        out.add_column(c, justify="left" if c in ("query", "kind", "top-5 grades") else "right")
    for _, r in table.iterrows():
        out.add_row(
            r["query"],
            r["kind"],
            str(r["n_rel2"]),
            str(r["n_rel1"]),
            _fmt(r["ndcg@5"]),
            _fmt(r["ndcg@10"]),
            r["top_relevance"],
        )
    console.print(out)
    ex = result.manifest.extra
    console.print(
        f"mean over {ex.get('queries_with_relevant')} queries with a relevant image: NDCG@5 "
        f"{_fmt(ex.get('mean_ndcg@5'))}, NDCG@10 {_fmt(ex.get('mean_ndcg@10'))} "
        f"(relevance: {ex.get('relevance_source')})"
    )
    print_stage_result(result, "search index")


@app.command("search")
def search_cmd(
    query: str = typer.Argument(..., help='Text query, e.g. "left pleural effusion".'),
    run: str = RUN_OPTION,
    k: int = typer.Option(10, "--k", "-k", help="Number of images returned."),
    workspace: Path | None = WORKSPACE_OPTION,
) -> None:
    """The k images closest to a text query (needs `align index`)."""
    from cxrlens.align.stages import search_text

    hits = search_text(open_workspace(workspace), run, query, k)
    out = Table(title=f"“{query}” — top {len(hits)}", title_justify="left")
    for c in hits.columns:
        out.add_column(c, justify="right" if c in ("rank", "score") else "left")
    for r in hits.itertuples(index=False):
        out.add_row(*[_fmt(v) if isinstance(v, float) else str(v) for v in r])
    console.print(out)


@app.command("probe")
def probe_cmd(
    run: str = RUN_OPTION,
    fractions: str = config_csv_option(ProbeConfig, "fractions", help="Comma-separated shares of the training labels."),
    seeds: int = config_option(ProbeConfig, "seeds", help="Seeds per fraction."),
    sae: str = config_option(
        ProbeConfig, "sae_run", "--sae", help="Also probe the codes of this SAE run (saes/<run>)."
    ),
    findings: str = config_csv_option(
        ProbeConfig, "findings", help="Comma-separated findings \\[default: all with enough positives]."
    ),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Logistic-regression probes on adapter embeddings vs raw backbone features (vs SAE codes); learning curve."""

    from cxrlens.align.stages import run_align_probe

    cfg = ProbeConfig(
        run,
        findings=tuple(f.strip() for f in findings.split(",") if f.strip()),
        fractions=tuple(float(f) for f in fractions.split(",") if f.strip()),
        seeds=seeds,
        sae_run=sae,
    )
    result = run_align_probe(open_workspace(workspace), cfg, force=force)
    summary = result.open().table("summary")
    wide = summary.assign(cell=[f"{m:.3f} ± {s:.3f}" for m, s in zip(summary.auc_mean, summary.auc_sd, strict=True)])
    wide = wide.pivot_table(index=["finding", "features"], columns="fraction", values="cell", aggfunc="first")
    out = Table(title="Probe AUC on test (mean ± sd over seeds)", title_justify="left")
    out.add_column("finding")
    out.add_column("features")
    for frac in wide.columns:
        out.add_column(f"{frac * 100:g} %", justify="right")
    for (finding, feats), row in wide.iterrows():
        out.add_row(finding, feats, *[str(v) for v in row])
    console.print(out)
    console.print(f"learning curve: {result.path / 'learning_curve.png'}")
    print_stage_result(result, "probes")
