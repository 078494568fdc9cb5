"""Workspace stages of ``cxrlens analyze`` that run models: latent masking, TCAV and the sanity checks of maps."""

from __future__ import annotations

import dataclasses as dc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxrlens.analysis.data import SPRITE_FACTORS, factor_matrix, load_factors, load_images, upstream_of
from cxrlens.analysis.masking import MaskingConfig, difference_figure, fit_factor_reader, mask_channel, masking_effects
from cxrlens.analysis.tcav import LayerProbe, TCAVConfig, run_tcav, tcav_plot
from cxrlens.analysis.tcav_qa import QAPresenceLogits
from cxrlens.analysis.vae import decode, encode, latent_activity, load_vae
from cxrlens.backbones.registry import load_backbone
from cxrlens.config import save_toml
from cxrlens.console import warn_line
from cxrlens.data.images import is_image_file, load_image
from cxrlens.data.store import image_file, read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_json, atomic_write_parquet
from cxrlens.interpret.heatmaps import heatmap_sanity
from cxrlens.interpret.run import read_interpretation
from cxrlens.labeltokens.grounding import compute_maps, randomisation_groups
from cxrlens.labeltokens.run import load_run_models
from cxrlens.qa.model import load_qa_model
from cxrlens.sae.io import load_sae
from cxrlens.saliency.sanity import SanityConfig, cascading_randomization, sanity_plot, sanity_table
from cxrlens.workspace import StageResult, Workspace, read_manifest, run_stage

__all__ = [
    "MODEL_SPECS",
    "AnalyzeMaskConfig",
    "AnalyzeSanityConfig",
    "AnalyzeTCAVConfig",
    "parse_concept",
    "parse_model",
    "run_analyze_mask",
    "run_analyze_sanity",
    "run_analyze_tcav",
]


def _threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)


def _vae(ws: Workspace, run: str):

    path = ws.analysis(run) / "model.safetensors"
    if not path.exists():
        raise BadInputError(path, f"no trained VAE run {run!r}; run `cxrlens analyze train-vae --run {run}` first")
    return load_vae(path)


# -------------------------------------------------------------------------------------------------------- mask
@dataclass(frozen=True)
class AnalyzeMaskConfig:
    """``cxrlens analyze mask``: mask each latent channel of VAE run ``vae``, decode, count the factors it moves.

    The factor reader is trained on the VAE's reconstructions of ``reader_images`` training images; masking runs
    on ``n_images`` held-out (test split) images.
    """

    vae: str = "ae"
    dataset: str = "cxr-sprites"
    factors: tuple[str, ...] = SPRITE_FACTORS
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    n_images: int = 256
    reader_images: int = 2000
    reader_steps: int = 400
    seed: int = 0
    threads: int = 1


def run_analyze_mask(ws: Workspace, cfg: AnalyzeMaskConfig, run: str, *, force: bool = False) -> StageResult:

    def build(tmp: Path) -> dict[str, Any]:
        _threads(cfg.threads)
        trained = _vae(ws, cfg.vae)
        images, studies = load_images(ws, cfg.dataset, trained.cfg.image_size)
        fmat, _ = factor_matrix(load_factors(ws, cfg.dataset, studies), cfg.factors)
        rng = np.random.default_rng(cfg.seed)
        train = np.flatnonzero((studies["split"] == "train").to_numpy())
        test = np.flatnonzero((studies["split"] != "train").to_numpy())
        train = rng.choice(train, min(cfg.reader_images, len(train)), replace=False)
        test = rng.choice(test, min(cfg.n_images, len(test)), replace=False)
        z_train = encode(trained.model, images[train])
        reader, r2 = fit_factor_reader(
            decode(trained.model, z_train), fmat[train], steps=cfg.reader_steps, seed=cfg.seed
        )
        z = encode(trained.model, images[test])
        res = masking_effects(
            z,
            lambda zz: decode(trained.model, zz),
            reader.predict,
            cfg.factors,
            fmat[train].std(0),
            reader_r2=r2,
            mean_Cgg=z_train.mean(0),
            cfg=cfg.masking,
        )
        atomic_write_parquet(tmp / "effects.parquet", res.effects)
        atomic_write_parquet(tmp / "masking.parquet", res.table)
        np.save(tmp / "diff_CSS.npy", res.diff_CSS.astype(np.float32), allow_pickle=False)
        reader_r2 = dict(zip(cfg.factors, map(float, r2), strict=True))
        atomic_write_json(
            tmp / "masking.json",
            {"reader_r2": reader_r2, "counted_factors": res.counted_factors, "channels": res.table.to_dict("records")},
        )
        recon = decode(trained.model, z[:1]).numpy()
        difference_figure(recon, res.diff_CSS, res.table, tmp / "masking.png")
        save_toml(cfg, tmp / "config.toml")
        return {"rows": {"images": len(test), "channels": len(res.table)}, "extra": {"reader_r2": reader_r2}}

    upstream = upstream_of(ws, dataset=cfg.dataset, vae=cfg.vae)
    return run_stage(ws.analysis(run), stage="analyze.mask", config=cfg, build=build, force=force, upstream=upstream)


# -------------------------------------------------------------------------------------------------------- tcav
def parse_concept(spec: str) -> tuple[str, str, str, Any]:
    """``name=column==value`` (a factor or study-table column) or ``name=folder:/path`` → (name, kind, key, value)."""
    name, sep, rule = spec.partition("=")
    if not sep or not name or not rule:
        raise BadInputError(None, f"concept {spec!r}: expected name=column==value or name=folder:/path")
    if rule.startswith("folder:"):
        return name, "folder", rule[len("folder:") :], None
    col, sep, value = rule.partition("==")
    if not sep:
        raise BadInputError(None, f"concept {spec!r}: expected name=column==value or name=folder:/path")
    try:
        parsed: Any = float(value)
    except ValueError:
        parsed = value
    return name, "column", col, parsed


class _LTLogits(nn.Module):
    """An LT-ViT (or its CLS baseline) as a module from grey images ``(N, S, S)`` to logits ``(N, L)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.pre = model.cfg.input_preprocessor()  # type: ignore[attr-defined]

    def forward(self, x_NSS: torch.Tensor) -> torch.Tensor:
        return self.model(self.pre(x_NSS)).logits


MODEL_SPECS = "lt-vit:<run>[:label-tokens|cls] or qa:<run>"
"""The classifier sources ``cxrlens analyze tcav --model`` accepts."""


def parse_model(spec: str) -> tuple[str, str, str]:
    """``lt-vit:<run>[:label-tokens|cls]`` or ``qa:<run>`` → (kind, run, which); a bad spec is a one-line
    :class:`BadInputError`."""
    kind, _, rest = spec.partition(":")
    run, _, which = rest.partition(":")
    ok = bool(run) and (
        (kind == "qa" and ":" not in rest) or (kind == "lt-vit" and which in ("", "label-tokens", "cls"))
    )
    if not ok:
        raise BadInputError(None, f"model {spec!r}: expected {MODEL_SPECS}")
    return kind, run, which


def _load_classifier(ws: Workspace, spec: str) -> tuple[nn.Module, tuple[str, ...], int | None, dict[str, str]]:
    """(module, its logit labels, image side to load images at — None: the dataset's own size —, layer aliases)."""
    kind, run, which = parse_model(spec)
    if kind == "qa":
        qa = QAPresenceLogits(load_qa_model(ws, run))
        return qa, qa.labels, None, qa.layer_modules
    models = load_run_models(ws, run)
    which = which or "label-tokens"
    if which not in models:
        raise BadInputError(ws.lt_vit(run), f"run has no {which!r} model; it has {', '.join(models)}")
    lt = models[which].eval()
    return _LTLogits(lt), tuple(lt.cfg.labels), int(lt.cfg.image_size), {}


@dataclass(frozen=True)
class AnalyzeTCAVConfig:
    """``cxrlens analyze tcav``: TCAV of ``classes`` of a classifier for ``concepts`` at ``layer``.

    ``model`` is ``lt-vit:<run>[:label-tokens|cls]`` (``layer`` a module name, e.g. ``model.blocks.2``) or
    ``qa:<run>``, the calibrated presence heads of ``cxrlens qa train`` on their backbone
    (:class:`~cxrlens.analysis.tcav_qa.QAPresenceLogits`; ``layer`` a backbone layer, ``block.0`` … or ``final``).
    A random-set concept (``random-control``) is always added: it must come out not significant. Each concept keeps
    up to ``concept_pool`` matching images; every CAV draws ``set_size`` of them.
    """

    model: str = "lt-vit:lt-vit"
    dataset: str = "cxr-sprites"
    layer: str = "model.blocks.2"
    classes: tuple[str, ...] = ("Cardiomegaly",)
    concepts: tuple[str, ...] = ("large-heart=ctr==0.46",)
    split: str = "test"
    set_size: int = 40
    concept_pool: int = 200
    class_examples: int = 100
    tcav: TCAVConfig = field(default_factory=TCAVConfig)
    threads: int = 1


def _folder_images(path: str, size: int) -> torch.Tensor:

    files = sorted(p for p in Path(path).expanduser().iterdir() if p.is_file() and is_image_file(p))
    out = []
    for f in files:
        try:
            t = torch.from_numpy(np.ascontiguousarray(load_image(f), dtype=np.float32))[None, None]
        except BadInputError as err:
            warn_line(f"skipped {err}")
            continue
        out.append(nn.functional.interpolate(t, size=(size, size), mode="area")[0, 0])
    if len(out) < 4:
        raise BadInputError(path, f"a concept folder needs at least 4 readable images, found {len(out)}")
    return torch.stack(out)


def _native_size(ws: Workspace, dataset: str) -> int:
    """Side of the dataset's first image (images of another size are area-resized to it)."""
    studies = read_studies(ws, dataset)
    if studies.empty:
        raise BadInputError(ws.dataset(dataset), "the dataset has no images")
    return int(max(np.asarray(load_image(image_file(ws.dataset(dataset), str(studies["image_path"].iloc[0])))).shape))


def run_analyze_tcav(ws: Workspace, cfg: AnalyzeTCAVConfig, run: str, *, force: bool = False) -> StageResult:
    parse_model(cfg.model)

    def build(tmp: Path) -> dict[str, Any]:
        _threads(cfg.threads)
        model, labels, size, aliases = _load_classifier(ws, cfg.model)
        if aliases and cfg.layer not in aliases:
            raise BadInputError(None, f"layer {cfg.layer!r}: {cfg.model} has layers {', '.join(aliases)}")
        images, studies = load_images(ws, cfg.dataset, size or _native_size(ws, cfg.dataset), split=cfg.split)
        size = int(images.shape[-1])
        factors = load_factors(ws, cfg.dataset, studies)
        rng = np.random.default_rng(cfg.tcav.seed)
        concepts: dict[str, torch.Tensor] = {}
        for spec in cfg.concepts:
            name, kind, key, value = parse_concept(spec)
            if kind == "folder":
                concepts[name] = _folder_images(key, size)
                continue
            table = factors if key in factors.columns else studies
            if key not in table.columns:
                raise BadInputError(None, f"concept {spec!r}: no factor or study column {key!r}")
            col = table[key]
            hit = np.flatnonzero((col.astype(str) == str(value)) | (pd.to_numeric(col, errors="coerce") == value))
            if len(hit) < cfg.set_size:
                raise BadInputError(
                    None, f"concept {spec!r}: {len(hit)} images in split {cfg.split!r}, need {cfg.set_size}"
                )
            concepts[name] = images[rng.choice(hit, min(len(hit), cfg.concept_pool), replace=False)]
        pool = min(len(images), cfg.concept_pool)
        concepts["random-control"] = images[rng.choice(len(images), pool, replace=False)]
        class_inputs = {}
        for cls in cfg.classes:
            if cls not in labels:
                raise BadInputError(None, f"class {cls!r} is not a label of {cfg.model} ({', '.join(labels)})")
            pos = np.flatnonzero((studies[cls] == 1).to_numpy())
            pick = rng.choice(pos, min(cfg.class_examples, len(pos)), replace=False)
            class_inputs[cls] = (labels.index(cls), images[pick])
        probe = LayerProbe(model, aliases.get(cfg.layer, cfg.layer), batch_size=cfg.tcav.batch_size, pool=cfg.tcav.pool)
        table = run_tcav(probe, class_inputs, concepts, images, cfg.tcav, set_size=cfg.set_size)
        table["layer"] = cfg.layer
        atomic_write_parquet(tmp / "tcav.parquet", table)
        scalar = table.drop(columns=["scores", "null_scores"])
        atomic_write_json(tmp / "tcav.json", {"alpha": cfg.tcav.alpha, "rows": scalar.to_dict("records")})
        tcav_plot(table, tmp / "tcav.png", title=f"TCAV of {cfg.model} at {cfg.layer} (BH q < {cfg.tcav.alpha})")
        save_toml(cfg, tmp / "config.toml")
        return {"rows": {"tests": len(table)}, "extra": {"significant": int(table["significant"].sum())}}

    upstream = upstream_of(ws, dataset=cfg.dataset, sources=[cfg.model])
    return run_stage(ws.analysis(run), stage="analyze.tcav", config=cfg, build=build, force=force, upstream=upstream)


# ------------------------------------------------------------------------------------------------------ sanity
@dataclass(frozen=True)
class AnalyzeSanityConfig:
    """``cxrlens analyze sanity``: cascading randomisation of every map the project draws that is available:

    * ``masking`` of VAE run ``vae``: |difference image| of masking each of its most active channels;
    * the label-token ViT's maps (``attention``, ``rollout``, ``gradcam``) of lt-vit run ``lt_vit``;
    * the SAE feature heatmaps of interpretation run ``interpret``
      (:func:`cxrlens.interpret.heatmaps.heatmap_sanity`: the features' encoder rows re-drawn, then the backbone
      cascade), for its ``sae_features`` most frequent described features on 4 of their top-activating images each.

    Runs on ``n_images`` test images (VAE, LT-ViT).
    """

    dataset: str = "cxr-sprites"
    vae: str = ""
    lt_vit: str = ""
    lt_methods: tuple[str, ...] = ("attention", "rollout", "gradcam")
    interpret: str = ""
    sae_features: int = 3
    n_images: int = 16
    channels: int = 3
    sanity: SanityConfig = field(default_factory=SanityConfig)
    threads: int = 1


def _vae_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
    """Decoder layers from the output back, then the latent heads, then encoder layers from the top."""
    groups: list[tuple[str, list[str]]] = []
    for part in ("decoder", "unhead", "head", "encoder"):
        mod = getattr(model, part)
        children = [(n, m) for n, m in mod.named_children() if any(True for _ in m.parameters())] or [("", mod)]
        if part in ("decoder", "encoder"):
            children = children[::-1]
        for n, m in children:
            names = [f"{part}.{n}.{p}" if n else f"{part}.{p}" for p, _ in m.named_parameters()]
            groups.append((f"{part}.{n}" if n else part, names))
    return groups


def run_analyze_sanity(ws: Workspace, cfg: AnalyzeSanityConfig, run: str, *, force: bool = False) -> StageResult:

    if not cfg.vae and not cfg.lt_vit and not cfg.interpret:
        raise BadInputError(None, "nothing to check: give --vae, --lt-vit and/or --interpret")

    def build(tmp: Path) -> dict[str, Any]:
        _threads(cfg.threads)
        results = []
        if cfg.vae:
            trained = _vae(ws, cfg.vae)
            images, _ = load_images(ws, cfg.dataset, trained.cfg.image_size, split="test", limit=cfg.n_images)
            act = latent_activity(encode(trained.model, images))
            top = [int(c) for c in np.argsort(-act)[: cfg.channels]]

            def masking_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
                z = encode(model, x)
                base = decode(model, z)
                mean = z.mean(0)
                return torch.stack([(decode(model, mask_channel(z, c, "mean", mean)) - base).abs() for c in top], 1)

            results.append(
                cascading_randomization(
                    trained.model,
                    masking_maps,
                    images,
                    groups=_vae_groups(trained.model),
                    method=f"masking ({cfg.vae})",
                    cfg=cfg.sanity,
                )
            )
        if cfg.lt_vit:
            lt = load_run_models(ws, cfg.lt_vit)["label-tokens"]
            images, _ = load_images(ws, cfg.dataset, lt.cfg.image_size, split="test", limit=cfg.n_images)
            for method in cfg.lt_methods:
                results.append(
                    cascading_randomization(
                        lt,
                        lambda m, x, meth=method: compute_maps(m, x, meth),
                        images,
                        groups=randomisation_groups(lt),
                        method=f"lt-vit {method}",
                        cfg=cfg.sanity,
                    )
                )
        if cfg.interpret:
            results.extend(_sae_heatmap_sanity(ws, cfg))
        table = sanity_table(results)
        atomic_write_parquet(tmp / "sanity.parquet", table)
        summary = {
            r.method: {"passed": r.passed, "final_spearman_abs": r.spearman_abs[-1], "final_ssim": r.ssim[-1]}
            for r in results
        }
        atomic_write_json(tmp / "sanity.json", {"threshold": cfg.sanity.threshold, "methods": summary})
        sanity_plot(results, tmp / "sanity.png")
        save_toml(cfg, tmp / "config.toml")
        return {"rows": {"methods": len(results)}, "extra": {"methods": summary}}

    upstream = upstream_of(ws, dataset=cfg.dataset, vae=cfg.vae, lt_vit=cfg.lt_vit, interpret=cfg.interpret)
    return run_stage(ws.analysis(run), stage="analyze.sanity", config=cfg, build=build, force=force, upstream=upstream)


def _sae_heatmap_sanity(ws: Workspace, cfg: AnalyzeSanityConfig) -> list:
    """The two analyses of :func:`~cxrlens.interpret.heatmaps.heatmap_sanity` for an interpretation run's maps."""

    manifest = read_manifest(ws.interpret(cfg.interpret))
    if manifest is None:
        raise BadInputError(ws.interpret(cfg.interpret), "interpretation run not found; run `cxrlens interpret`")
    feats, desc = read_interpretation(ws, cfg.interpret)
    described = desc.loc[desc["sentences"].map(len) > 0, "feature"]
    pool = feats[feats["feature"].isin(described)] if len(described) else feats[feats["n_active"] > 0]
    pool = pool.sort_values("n_active", ascending=False).head(cfg.sae_features)
    if pool.empty:
        raise BadInputError(ws.interpret(cfg.interpret), "no active feature to draw heatmaps of")
    extra = manifest.extra
    studies = read_studies(ws, extra["dataset"]).drop_duplicates("image_id").set_index("image_id")
    ds_dir = ws.dataset(extra["dataset"])
    images, features = [], []
    for row in pool.itertuples():
        for image_id in list(row.top_image_ids)[:4]:
            path = image_file(ds_dir, studies.loc[image_id, "image_path"])
            images.append(torch.from_numpy(np.asarray(load_image(path))))
            features.append(int(row.feature))
    sizes = {tuple(x.shape) for x in images}
    if len(sizes) > 1:
        raise BadInputError(ds_dir, f"heatmap sanity needs images of one size, found {sorted(sizes)}")
    backbone = load_backbone(str(extra["backbone"]), workspace=ws)
    sae = load_sae(ws.sae(str(manifest.config["sae"])))
    layer, token = str(extra["stream"]).split("/")
    check = heatmap_sanity(
        backbone,
        sae,
        layer=layer,
        token=token,
        images_BHW=torch.stack(images).float(),
        features=features,
        cfg=cfg.sanity,
    )
    label = f"SAE heatmaps ({cfg.interpret})"
    return [
        dc.replace(check.feature, method=f"{label}: {check.feature.method}"),
        dc.replace(check.backbone, method=f"{label}: {check.backbone.method}"),
    ]
