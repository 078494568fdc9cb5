"""``cxrlens lt-vit …``: the label-token ViT — train (with its CLS baseline), predict, explain (grounding + sanity)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cxrlens.cli.common import (
    FORCE_OPTION,
    WORKSPACE_OPTION,
    config_csv_option,
    config_default,
    config_option,
    open_workspace,
    print_stage_result,
)
from cxrlens.console import console
from cxrlens.labeltokens.model import LTViTConfig
from cxrlens.labeltokens.run import LTExplainConfig, LTPredictConfig, LTRunConfig
from cxrlens.labeltokens.train import LTTrainConfig

app = typer.Typer(help="Label-token ViT: per-label tokens whose attention is the label's map.", no_args_is_help=True)


def _fmt(v: float) -> str:
    return "—" if v != v else f"{v:.3f}"


@app.command("train")
def train_cmd(
    dataset: str = typer.Option("cxr-sprites", help="Dataset in the workspace (study table with label columns)."),
    run: str = typer.Option("lt-vit", help="Run name: writes lt-vit/<run>."),
    labels: str | None = typer.Option(
        None, help="Comma-separated label columns \\[default: CheXpert labels with ≥ 10 positives and negatives]."
    ),
    init: str | None = typer.Option(
        None, help="Initialise the ViT from a backbone spec (cxrlens:<name>, hf:<dir>) \\[default: random]."
    ),
    steps: int = config_option(LTTrainConfig, "steps", help="Optimiser steps."),
    batch_size: int = config_option(LTTrainConfig, "batch_size", help="Images per step."),
    lr: float = config_option(LTTrainConfig, "lr", help="Peak learning rate (AdamW)."),
    warmup: int = config_option(LTTrainConfig, "warmup_steps", help="Linear warm-up steps before the cosine decay."),
    weight_decay: float = config_option(LTTrainConfig, "weight_decay", help="AdamW weight decay."),
    uncertain: str = config_option(LTTrainConfig, "uncertain", help="Uncertain (-1) labels: ones | zeros | ignore."),
    class_balanced: bool = config_option(
        LTTrainConfig, "class_balanced", "--class-balanced", help="Weight positives by n_neg / n_pos."
    ),
    seed: int = config_option(LTTrainConfig, "seed", help="Seed of the init and the batch order."),
    image_size: int = config_option(
        LTViTConfig, "image_size", help="Input side (random init only; a backbone fixes its own)."
    ),
    patch_size: int = config_option(LTViTConfig, "patch_size", help="Patch side (random init only)."),
    dim: int = config_option(LTViTConfig, "dim", help="Token width (random init only)."),
    depth: int = config_option(LTViTConfig, "depth", help="Blocks (random init only)."),
    heads: int = config_option(LTViTConfig, "heads", help="Attention heads (random init only)."),
    join_at: int | None = typer.Option(None, help="First block the label tokens join \\[default: depth // 2]."),
    eval_split: str = config_option(LTRunConfig, "eval_split", help="Split the AUC is measured on."),
    baseline: bool = config_option(
        LTRunConfig, "baseline", "--baseline/--no-baseline", help="Also train the same-size CLS ViT."
    ),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Train LT-ViT and the same-size CLS ViT (same data, schedule, seed); per-label AUC → lt-vit/<run>."""

    from cxrlens.labeltokens.run import choose_labels, run_lt_vit_train

    ws = open_workspace(workspace)
    names = tuple(s.strip() for s in labels.split(",") if s.strip()) if labels else choose_labels(ws, dataset)
    model = None
    if init is not None:
        from cxrlens.backbones import load_backbone
        from cxrlens.labeltokens.pretrained import from_backbone

        model = from_backbone(load_backbone(init, workspace=ws), names, join_at=join_at, seed=seed)
        mcfg = model.cfg
    else:
        mcfg = LTViTConfig(
            labels=names,
            image_size=image_size,
            patch_size=patch_size,
            dim=dim,
            depth=depth,
            heads=heads,
            join_at=join_at,
        )
    tcfg = LTTrainConfig(
        model=mcfg,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup,
        weight_decay=weight_decay,
        uncertain=uncertain,
        class_balanced=class_balanced,
        seed=seed,
    )
    cfg = LTRunConfig(dataset=dataset, train=tcfg, eval_split=eval_split, baseline=baseline)
    result = run_lt_vit_train(ws, cfg, run, model=model, force=force)
    auc = result.open().table("auc")
    table = Table(title=f"Per-label AUC on {dataset}/{eval_split}", title_justify="left")
    table.add_column("label")
    table.add_column("n / pos", justify="right")
    kinds = list(dict.fromkeys(auc["model"]))
    for k in kinds:
        table.add_column({"label-tokens": "LT-ViT", "cls": "CLS ViT"}[k], justify="right")
    for name in names:
        rows = auc[auc["label"] == name].set_index("model")
        first = rows.iloc[0]
        table.add_row(name, f"{first['n']} / {first['n_pos']}", *[_fmt(float(rows.loc[k, "auc"])) for k in kinds])
    means = auc.groupby("model")["auc"].mean()
    table.add_row("mean", "", *[_fmt(float(means[k])) for k in kinds], style="bold")
    console.print(table)
    boot = result.manifest.extra.get("metrics", {}).get("lt_minus_cls_mean_auc")
    if boot:
        console.print(
            f"LT-ViT − CLS ViT, mean AUC: {boot['diff']:+.3f} (paired bootstrap 95 % CI {boot['lo']:+.3f} … "
            f"{boot['hi']:+.3f}; {boot['n_boot']} resamples of the {boot.get('n_units', '?')} "
            f"{boot.get('bootstrap_unit', 'image')} units of the {eval_split} split, "
            f"P(diff ≤ 0) = {boot['p_le_0']:.3f})"
        )
    print_stage_result(result, f"lt-vit run {run}")


@app.command("predict")
def predict_cmd(
    run: str = typer.Option("lt-vit", help="Trained run (lt-vit/<run>)."),
    dataset: str = typer.Option("cxr-sprites", help="Dataset to predict on."),
    split: str = typer.Option(
        config_default(LTPredictConfig, "split") or "all", help="Split (train | val | test); 'all' for every image."
    ),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Per-label probabilities of every model of a run → lt-vit/<run>-predict-<dataset>-<split>."""
    from cxrlens.labeltokens.run import run_lt_vit_predict

    cfg = LTPredictConfig(run=run, dataset=dataset, split=None if split == "all" else split)
    result = run_lt_vit_predict(open_workspace(workspace), cfg, force=force)
    console.print(f"{result.manifest.rows.get('images', 0):,} images")
    print_stage_result(result, "predictions")
    console.print(f"  {result.path / 'predictions.parquet'}")


@app.command("explain")
def explain_cmd(
    run: str = typer.Option("lt-vit", help="Trained run (lt-vit/<run>)."),
    dataset: str | None = typer.Option(None, help="Dataset with finding masks \\[default: the run's dataset]."),
    split: str = config_option(LTExplainConfig, "split", help="Split to ground on."),
    methods: str = config_csv_option(LTExplainConfig, "methods", help="Map methods (comma-separated)."),
    max_images: int = config_option(LTExplainConfig, "max_images", help="At most this many images of the split."),
    sanity_images: int = config_option(
        LTExplainConfig, "sanity_images", help="Images in the cascading-randomisation sanity check."
    ),
    rel_threshold: float = config_option(
        LTExplainConfig, "rel_threshold", help="IoU: map ≥ this fraction of its max counts as inside."
    ),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Pointing game + IoU vs finding masks per label (attention, rollout, Grad-CAM; LT-ViT and CLS), sanity check,
    per-label map figure → lt-vit/<run>-explain."""

    from cxrlens.labeltokens.run import run_lt_vit_explain
    from cxrlens.workspace import open_artefact

    ws = open_workspace(workspace)
    hint = f"no trained lt-vit run {run!r}; run `cxrlens lt-vit train` first"
    man = open_artefact(ws.lt_vit(run), "lt-vit.train", hint=hint).manifest
    cfg = LTExplainConfig(
        run=run,
        dataset=dataset or man.config["dataset"],
        split=split,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        max_images=max_images,
        sanity_images=sanity_images,
        rel_threshold=rel_threshold,
    )
    result = run_lt_vit_explain(ws, cfg, force=force)
    g = result.open().table("grounding")
    table = Table(title="Grounding: pointing game / IoU per label (positives with a mask)", title_justify="left")
    table.add_column("label")
    table.add_column("n", justify="right")
    table.add_column("chance", justify="right")
    combos = list(dict.fromkeys(zip(g["model"], g["method"], strict=True)))
    short = {"label-tokens": "LT", "cls": "CLS"}
    for kind, method in combos:
        table.add_column(f"{short.get(kind, kind)} {method}", justify="right")
    idx = g.set_index(["model", "method", "label"])
    for name in dict.fromkeys(g["label"]):
        first = idx.loc[(*combos[0], name)]
        cells = [f"{_fmt(idx.loc[(*c, name), 'pointing'])} / {_fmt(idx.loc[(*c, name), 'iou'])}" for c in combos]
        table.add_row(name, str(int(first["n"])), _fmt(first["chance"]), *cells)
    means = g.groupby(["model", "method"], sort=False)[["pointing", "iou"]].mean()
    table.add_row("mean", "", "", *[f"{_fmt(means.loc[c, 'pointing'])} / {_fmt(means.loc[c, 'iou'])}" for c in combos])
    console.print(table)
    s = result.open().table("sanity")
    st = Table(title="Sanity check: cascading randomisation, Spearman ρ / SSIM vs trained maps", title_justify="left")
    st.add_column("model · method")
    steps = list(dict.fromkeys(s["randomised_through"]))
    for step in steps:
        st.add_column(f"→ {step}", justify="right")
    st.add_column("passes")
    for (kind, method), rows in s.groupby(["model", "method"], sort=False):
        rows = rows.set_index("randomised_through")
        st.add_row(
            f"{kind} · {method}",
            *[f"{rows.loc[k, 'spearman']:.2f} / {rows.loc[k, 'ssim']:.2f}" for k in steps],
            "yes" if bool(rows["passed"].iloc[0]) else "NO",
        )
    console.print(st)
    print_stage_result(result, f"lt-vit explanation of {run}")
    console.print(f"  {result.path / 'maps.png'}")
