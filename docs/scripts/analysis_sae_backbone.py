"""Backbone features and SAE codes next to the VAE latents (docs/analysis.md, sections 6 and 7).

No backbone with weights ships offline, so the "backbone" here is the image stream of a label-token ViT trained on
cxr-sprites (``cxrlens lt-vit train``); a TopK SAE (cxrlens.sae) is trained on its final patch tokens. The script

1. adds two rows (backbone features, SAE codes pooled over patches) to the disentanglement table of a previous
   ``cxrlens analyze disentangle`` run and draws the combined heatmap;
2. runs the cascading-randomisation sanity check on SAE heatmaps (a latent's activation over the patch grid),
   randomising the SAE first and then the ViT blocks from the top, with the generic
   :func:`cxrlens.saliency.sanity.cascading_randomization`.

Usage: ``python docs/scripts/analysis_sae_backbone.py WORKSPACE LT_VIT_RUN DISENTANGLE_RUN OUT_DIR``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrlens.analysis.data import SPRITE_FACTORS, factor_matrix, load_factors, load_images
from cxrlens.analysis.disentanglement import DisentanglementConfig, disentanglement_report, report_table
from cxrlens.analysis.stages import disentanglement_plot
from cxrlens.labeltokens.grounding import randomisation_groups
from cxrlens.labeltokens.run import load_run_models
from cxrlens.sae import SAEConfig
from cxrlens.sae.train import TrainConfig, train
from cxrlens.saliency.sanity import cascading_randomization, sanity_plot, sanity_table
from cxrlens.workspace import Workspace


@torch.no_grad()
def patch_tokens(model, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """(N, P, D) final-layer patch tokens of the image stream (CLS dropped)."""
    pre = model.cfg.input_preprocessor()
    return torch.cat(
        [model(pre(images[i : i + batch])).tokens[:, 1 : model.n_img] for i in range(0, len(images), batch)]
    )


def main(root: str, lt_run: str, dis_run: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    ws, out = Workspace(root), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lt = load_run_models(ws, lt_run)["label-tokens"].eval()
    images, studies = load_images(ws, "cxr-sprites", int(lt.cfg.image_size))
    tokens = patch_tokens(lt, images)  # (N, P, D)
    n, p, d = tokens.shape
    train_rows = torch.from_numpy((studies["split"] == "train").to_numpy(copy=True))
    flat = tokens[train_rows].reshape(-1, d)
    gen = torch.Generator().manual_seed(0)

    def batches():
        while True:
            yield flat[torch.randint(0, len(flat), (1024,), generator=gen)]

    cfg = TrainConfig(
        sae=SAEConfig(arch="topk", d_in=d, n_latents=256, k=8, aux_k=64),
        steps=1500,
        batch_size=1024,
        lr=1e-3,
        warmup_steps=50,
    )
    sae = train(batches(), cfg, show_progress=False).sae.eval()
    with torch.no_grad():
        codes = torch.cat([sae.encode(tokens[i : i + 64].reshape(-1, d)) for i in range(0, n, 64)]).view(n, p, -1)
    sae_image = codes.mean(1).numpy()
    alive = (codes.amax(1) > 0).float().mean(0).numpy() > 0.01  # latents firing on > 1 % of images
    backbone = tokens.mean(1).numpy()

    fmat, discrete = factor_matrix(load_factors(ws, "cxr-sprites", studies), SPRITE_FACTORS)
    mcfg = DisentanglementConfig(batch_size=64, num_train=300, num_eval=200, n_trees=20)
    rows = [
        disentanglement_report(
            f"lt-vit:{lt_run} image tokens (backbone)", backbone, fmat, SPRITE_FACTORS, discrete=discrete, cfg=mcfg
        ),
        disentanglement_report(
            f"TopK SAE on lt-vit patch tokens ({int(alive.sum())} live of 256)",
            sae_image[:, alive],
            fmat,
            SPRITE_FACTORS,
            discrete=discrete,
            cfg=mcfg,
        ),
    ]
    extra = report_table(rows)
    extra.to_csv(out / "disentanglement_sae_backbone.csv", index=False)
    dis = ws.analysis(dis_run) / "disentanglement.parquet"
    table = pd.concat([pd.read_parquet(dis), extra], ignore_index=True) if dis.exists() else extra
    disentanglement_plot(table, out / "analysis-disentanglement.png")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    # SAE heatmaps: latent activation over the patch grid for the three most frequently active latents
    top = np.argsort(-(codes.amax(1) > 0).float().mean(0).numpy())[:3].tolist()
    grid = round(p**0.5)
    test = torch.from_numpy((studies["split"] == "test").to_numpy(copy=True))
    sample = images[test][:16]

    class LTWithSAE(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lt, self.sae = lt, sae

    def sae_heatmaps(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        t = patch_tokens(model.lt, x)
        with torch.no_grad():
            c = model.sae.encode(t.reshape(-1, d)).view(len(x), p, -1)[:, :, top]
        return c.permute(0, 2, 1).reshape(len(x), len(top), grid, grid)

    wrapped = LTWithSAE()
    groups = [("sae", [f"sae.{n}" for n, _ in sae.named_parameters()])]
    groups += [(g, [f"lt.{n}" for n in names]) for g, names in randomisation_groups(lt)]
    res = cascading_randomization(wrapped, sae_heatmaps, sample, groups=groups, method="SAE heatmaps (lt-vit + TopK)")
    sanity_table([res]).to_csv(out / "sanity_sae.csv", index=False)
    print(
        json.dumps(
            {
                "method": res.method,
                "passed": res.passed,
                "spearman_abs": res.spearman_abs,
                "ssim": res.ssim,
                "steps": res.steps,
            },
            indent=1,
        )
    )
    sanity_plot([res], out / "analysis-sanity-sae.png")


if __name__ == "__main__":
    main(*sys.argv[1:5])
