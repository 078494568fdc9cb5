"""What an interpretation shows besides its tables: heatmaps of the top images of described features
(``heatmaps.safetensors`` + ``figures/features.png``) and the overview figure (``figures/overview.png``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import save

from cxrlens.backbones.registry import load_backbone
from cxrlens.data.images import load_image
from cxrlens.data.store import image_file, read_studies
from cxrlens.files import atomic_write_bytes
from cxrlens.interpret.codes import SAEContext
from cxrlens.interpret.heatmaps import feature_heatmaps, heatmap_method, model_view, upsample
from cxrlens.workspace import Workspace, open_artefact

if TYPE_CHECKING:  # the stage imports this module; its config only types an argument here
    from cxrlens.interpret.run import InterpretConfig

__all__ = ["HEATMAPS_FILE", "feature_heatmaps_files", "overview_figure", "read_feature_heatmaps"]

HEATMAPS_FILE = "heatmaps.safetensors"


def feature_heatmaps_files(
    ws: Workspace, ctx: SAEContext, table: pd.DataFrame, desc: pd.DataFrame, cfg: InterpretConfig, tmp: Path
) -> dict[str, Any]:
    """Heatmaps of the top images of up to ``cfg.heatmap_features`` described features → ``heatmaps.safetensors``
    (key ``f<feature>``: (k, h, w) float16 on the patch grid, rows in ``top_image_ids`` order) and a figure."""
    if cfg.heatmap_features <= 0:
        return {"method": "none", "reason": "heatmap_features = 0"}
    if not ctx.backbone:
        return {"method": "none", "reason": "the activation store records no backbone"}

    described = set(desc.loc[desc["sentences"].map(len) > 0, "feature"].astype(int))
    chosen = table[table["feature"].isin(described)].sort_values("n_active", ascending=False)
    chosen = chosen.head(cfg.heatmap_features)
    backbone = load_backbone(ctx.backbone, workspace=ws)
    method = heatmap_method(backbone, ctx.token)
    studies = read_studies(ws, ctx.dataset).drop_duplicates("image_id").set_index("image_id")
    ds_dir = ws.dataset(ctx.dataset)
    cache: dict[str, Any] = {}

    def image(image_id: str) -> torch.Tensor:
        if image_id not in cache:
            path = image_file(ds_dir, studies.loc[image_id, "image_path"])
            cache[image_id] = torch.from_numpy(np.asarray(load_image(path)))
        return cache[image_id]

    maps: dict[str, np.ndarray] = {}
    shown: list[tuple[int, list[str], np.ndarray]] = []
    for row in chosen.itertuples():
        ids = [str(i) for i in row.top_image_ids]
        if not ids:
            continue
        res = feature_heatmaps(
            backbone,
            ctx.sae,
            layer=ctx.layer,
            token=ctx.token,
            images_BHW=_stack([image(i) for i in ids]),
            features=[int(row.feature)] * len(ids),
        )
        maps[f"f{int(row.feature)}"] = res.maps.numpy().astype(np.float16)
        shown.append((int(row.feature), ids, res.maps.numpy()))
    if maps:
        atomic_write_bytes(tmp / HEATMAPS_FILE, save(maps, metadata={"method": method}))
        texts = dict(zip(desc["feature"].astype(int), desc["description"].astype(str), strict=True))
        _heatmap_figure(backbone, shown[:6], texts, image, tmp / "figures" / "features.png")
    return {"method": method, "features": len(maps), "images_per_feature": cfg.top_k}


def read_feature_heatmaps(ws: Workspace, run: str, feature: int) -> np.ndarray | None:
    """The stored heatmaps of ``feature`` in ``interpret/<run>``: (K, h, w) float32, row ``k`` for the feature's
    ``k``-th top image (``features.parquet``'s ``top_image_ids``); ``None`` when the run stored none for it (only
    the most frequent described features get maps, see ``InterpretConfig.heatmap_features``)."""
    path = open_artefact(ws.interpret(run), "interpret", hint="run `cxrlens interpret`").path / HEATMAPS_FILE
    if not path.exists():
        return None
    with safe_open(str(path), framework="numpy") as fh:
        key = f"f{int(feature)}"
        if key not in fh.keys():  # noqa: SIM118 — safe_open handles have keys(), not __contains__
            return None
        return np.asarray(fh.get_tensor(key), np.float32)


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """(B, H, W) float32 from grayscale images; any of another size is resized (bilinear) to the first one's."""

    size = tuple(images[0].shape)
    out = [
        x if tuple(x.shape) == size else F.interpolate(x[None, None].float(), size=size, mode="bilinear")[0, 0]
        for x in images
    ]
    return torch.stack(out).float().clamp(0, 1)


def _heatmap_figure(backbone: Any, shown: list, texts: dict[int, str], image: Any, path: Path, cols: int = 6) -> None:
    """One row per feature: its top images with the heatmap overlaid, the description as the row title."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(shown), cols, figsize=(1.9 * cols, 2.1 * len(shown)), squeeze=False)
    for r, (feature, ids, maps) in enumerate(shown):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(ids):
                continue
            view = model_view(backbone, image(ids[c])[None].float())[0]
            heat = upsample(torch.from_numpy(maps[c : c + 1]), tuple(view.shape))[0].numpy()
            ax.imshow(view.numpy(), cmap="gray", vmin=0, vmax=1)
            ax.imshow(heat, cmap="inferno", alpha=0.45)
        axes[r, 0].set_title(f"f{feature}: {texts.get(feature, '')[:70]}", loc="left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def overview_figure(table: pd.DataFrame, desc: pd.DataFrame, path: Path) -> None:
    """Two panels: activation frequency of live features (log) and best-label AUC by confound verdict."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    live = table[table["n_active"] > 0]
    freq = live["frequency"].to_numpy()
    if len(freq):
        axes[0].hist(np.log10(freq), bins=40, color="#4477aa")
    axes[0].set_xlabel("log10 activation frequency (describe split)")
    axes[0].set_ylabel("features")
    axes[0].set_title(f"{len(live)} live / {len(table)} features")
    for verdict, colour in (("associated", "#228833"), ("confounded", "#ee6677"), ("undetermined", "#bbbbbb")):
        sel = table[table["verdict"] == verdict]["auc"].dropna().to_numpy()
        if len(sel):
            axes[1].hist(sel, bins=30, range=(0.5, 1.0), alpha=0.7, label=f"{verdict} ({len(sel)})", color=colour)
    described = int((desc["sentences"].map(len) > 0).sum())
    axes[1].set_xlabel("ROC AUC of the best-associated CheXpert label")
    axes[1].set_title(f"label association ({described} features described)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
