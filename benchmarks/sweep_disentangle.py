"""Disentanglement sweep on cxr-sprites (issue #22): β-VAE / FactorVAE settings, chosen on validation MIG.

Two datasets, both built with ``cxrlens data build sprites`` (``--size`` px, ``--n`` images):

* **visible** — only the sprite factors whose effect on the image is clearly above the render noise vary
  (``--vary``); everything else (anatomy, findings, markings, …) is held at its neutral value
  (:data:`cxrlens.data.phantom.datasets.SPRITE_NEUTRAL`). "Visible" is decided before any model is trained: for
  each of the 16 scored factors (:data:`cxrlens.analysis.data.SPRITE_FACTORS`), the pixel-mean standard deviation
  over the factor's grid values of the image averaged over 16 render seeds, everything else neutral; a factor is
  visible when that is ≥ ``VISIBLE_MIN`` (0.015; the difference of two 8-seed averages of one spec is ≈ 0.006).
  Finding kinds are present with p = 0.5 here (a balanced binary factor).
* **full** — the default sprites (every factor varies, findings with p = 0.25), scored on the 16 factors as in
  docs/analysis.md.

Training: ``cxrlens analyze train-vae`` (the stage, in process) on the ``train`` split. Every model is then scored
on freshly rendered sprites of the same distribution, never on the training images:

* **validation** (seed ``VAL_SEED``): MIG on ``--n-eval`` samples — the only number used to choose settings;
* **test** (seed ``TEST_SEED``): MIG, DCI and SAP on another ``--n-eval`` samples, BetaVAE and FactorVAE scores from
  the interventional sampler (one factor held, the dataset's other factors drawn as in the dataset), active dims
  (posterior-mean variance ≥ 0.01) and reconstruction (Bernoulli NLL of the decoded posterior mean, nats/image).

The sweep (full mode) is sequential and adaptive, each step choosing on validation MIG only:

A. visible: β-VAE β ∈ {1, 4, 8, 16} and FactorVAE γ ∈ {10, 40}, 10-d latent, ``--steps`` steps;
B. visible: the best of A with a latent of as many dims as factors and of 16 dims, and with 2× the steps;
C. visible: the best of A ∪ B again with seeds 1 and 2 (seed spread of the chosen setting);
D. full: the docs' two settings (β-VAE β = 4, FactorVAE γ = 10) and the best of A ∪ B.

Usage: ``python benchmarks/sweep_disentangle.py [--quick] [--workspace DIR]`` (one torch thread; set
``OMP_NUM_THREADS=1``). Writes ``benchmarks/results/disentangle_sweep.json`` (``--quick``: into the workspace).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from torch.nn import functional as F

from cxrlens.analysis.data import SPRITE_FACTORS, factor_matrix
from cxrlens.analysis.disentanglement import (
    DisentanglementConfig,
    InterventionalCodes,
    disentanglement_report,
    mig,
)
from cxrlens.analysis.stages import AnalyzeTrainVAEConfig, run_analyze_train_vae
from cxrlens.analysis.vae import VAEConfig, encode, latent_activity, load_vae
from cxrlens.data.phantom.datasets import (
    SPRITE_GRID,
    SPRITE_NEUTRAL,
    SpritesConfig,
    _spec_from_factors,
    run_data_build_sprites,
    sample,
)
from cxrlens.data.phantom.render import render
from cxrlens.workspace import Workspace

RESULTS = Path(__file__).resolve().parent / "results" / "disentangle_sweep.json"
VISIBLE_MIN = 0.015
VAL_SEED, TEST_SEED = 101, 202


# ------------------------------------------------------------------------------------------------ visibility
def visibility(size: int, n_seeds: int = 16) -> dict[str, float]:
    """Per scored factor: pixel-mean std over its grid values of the seed-averaged image, all else neutral."""
    out: dict[str, float] = {}
    seeds = range(n_seeds)
    for f in SPRITE_FACTORS:
        means = []
        for v in SPRITE_GRID[f]:
            spec = _spec_from_factors({**SPRITE_NEUTRAL, f: v})
            means.append(np.mean([render(spec, size, s).image for s in seeds], axis=0))
        out[f] = float(np.stack(means).std(0).mean())
    return out


# -------------------------------------------------------------------------------------------------------- runs
@dataclasses.dataclass(frozen=True)
class Run:
    variant: str  # visible | full
    kind: str  # beta-vae | factor-vae
    beta: float
    gamma: float
    latent: int
    steps: int
    seed: int = 0
    step: str = "A"

    @property
    def name(self) -> str:
        hp = f"b{self.beta:g}" if self.kind == "beta-vae" else f"g{self.gamma:g}"
        return f"{self.variant}-{self.kind}-{hp}-z{self.latent}-s{self.steps}-seed{self.seed}"

    def setting(self) -> tuple:
        return (self.kind, self.beta, self.gamma, self.latent, self.steps)


class Variant:
    """A sprites dataset and its sampler (fresh renders cached by request, so every model sees the same ones)."""

    def __init__(self, name: str, factors: tuple[str, ...], cfg: SpritesConfig) -> None:
        self.name, self.factors, self.cfg = name, factors, cfg
        self.cache: dict[tuple, np.ndarray] = {}
        self.sets: dict[int, tuple[torch.Tensor, np.ndarray, list[bool]]] = {}

    def draw(self, n: int, fixed, seed: int) -> torch.Tensor:
        key = (n, tuple(sorted((fixed or {}).items())), seed)
        if key not in self.cache:
            images = sample(fixed, n, seed=seed, size=self.cfg.size, p_present=self.cfg.p_present, vary=self.cfg.vary)
            self.cache[key] = (images[0] * 255).round().astype(np.uint8)
        return torch.from_numpy(self.cache[key]).float() / 255

    def eval_set(self, n: int, seed: int) -> tuple[torch.Tensor, np.ndarray, list[bool]]:
        if seed not in self.sets:
            images, factors = sample(
                None, n, seed=seed, size=self.cfg.size, p_present=self.cfg.p_present, vary=self.cfg.vary
            )
            fmat, discrete = factor_matrix(factors, self.factors)
            self.sets[seed] = (torch.from_numpy(images), fmat, discrete)
        return self.sets[seed]


def _codes(model, images: torch.Tensor) -> np.ndarray:
    return encode(model, images).flatten(1).numpy().astype(np.float64)


@torch.no_grad()
def _recon(model, images: torch.Tensor) -> float:
    """Bernoulli NLL (nats per image) of the decoder's logits at the posterior mean."""
    total = 0.0
    for i in range(0, len(images), 256):
        x = images[i : i + 256].unsqueeze(1)
        logits = model.decode_logits(model.encode_params(x)[0])
        total += F.binary_cross_entropy_with_logits(logits, x, reduction="sum").item()
    return total / len(images)


def train(ws: Workspace, run: Run, dataset: str, args) -> tuple[Any, float]:
    vae = VAEConfig(
        kind=run.kind,
        image_size=args.size,
        latent_channels=run.latent,
        latent_grid=1,
        beta=run.beta,
        gamma=run.gamma,
        batch_size=args.batch_size,
        steps=run.steps,
        checkpoint_every=500,
        seed=run.seed,
    )
    meta = ws.analysis(run.name) / "sweep_wall.json"
    t0 = time.time()
    res = run_analyze_train_vae(ws, AnalyzeTrainVAEConfig(dataset=dataset, vae=vae, threads=1), run.name)
    wall = time.time() - t0
    if res.reused and meta.exists():
        wall = json.loads(meta.read_text())["wall_s"]
    else:
        meta.write_text(json.dumps({"wall_s": wall}))
    return load_vae(res.path / "model.safetensors").model, wall


def evaluate(model, variant: Variant, args) -> dict[str, Any]:
    """Validation MIG (the selection criterion) and the test metrics, on fresh samples of the variant."""
    x_val, f_val, _ = variant.eval_set(args.n_eval, VAL_SEED)
    out: dict[str, Any] = {"val_mig": mig(_codes(model, x_val), f_val)["mig"]}
    x_te, f_te, discrete = variant.eval_set(args.n_eval, TEST_SEED)
    codes = _codes(model, x_te)
    sampler = InterventionalCodes(
        variant.draw,
        lambda images: _codes(model, images),
        {f: SPRITE_GRID[f] for f in variant.factors},
        name="interventional (sprites sampler)",
    )
    cfg = DisentanglementConfig(
        batch_size=args.points_batch,
        num_train=args.points,
        num_eval=args.points,
        num_variance=min(2000, args.n_eval),
        seed=TEST_SEED,
    )
    rep = disentanglement_report("m", codes, f_te, variant.factors, sampler=sampler, discrete=discrete, cfg=cfg)
    act = latent_activity(torch.from_numpy(codes))
    out.update(
        test_mig=rep["mig"],
        beta_vae=rep["beta_vae"],
        factor_vae=rep["factor_vae"],
        dci_d=rep["dci_disentanglement"],
        dci_c=rep["dci_completeness"],
        dci_i=rep["dci_informativeness"],
        sap=rep["sap"],
        active=int((act >= 0.01).sum()),
        recon=_recon(model, x_te),
        mig_per_factor=rep["mig_per_factor"],
    )
    return out


# ------------------------------------------------------------------------------------------------------- table
COLS = ("run", "step", "factors", "kind", "β", "γ", "latent", "steps", "seed", "val MIG")
COLS_TEST = ("MIG", "BetaVAE", "FactorVAE", "DCI-D", "SAP", "active", "recon", "train s")


def row_cells(r: dict[str, Any]) -> list[str]:
    run = r["run"]
    cells = [
        str(r["index"]),
        run["step"],
        f"{run['variant']} ({r['n_factors']})",
        run["kind"],
        f"{run['beta']:g}" if run["kind"] == "beta-vae" else "1",
        f"{run['gamma']:g}" if run["kind"] == "factor-vae" else "–",
        str(run["latent"]),
        f"{run['steps']:,}",
        str(run["seed"]),
        f"{r['val_mig']:.3f}",
        f"{r['test_mig']:.3f}",
        f"{r['beta_vae']:.3f}",
        f"{r['factor_vae']:.3f}",
        f"{r['dci_d']:.3f}",
        f"{r['sap']:.3f}",
        f"{r['active']}/{run['latent']}",
        f"{r['recon']:.1f}",
        f"{r['train_wall_s']:.0f}",
    ]
    return cells


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    head = (*COLS, *COLS_TEST)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=Path("/tmp/sweep22/ws"))
    ap.add_argument("--quick", action="store_true", help="small datasets, short training, two settings per step")
    ap.add_argument("--n", type=int, default=5000, help="images per dataset")
    ap.add_argument("--size", type=int, default=32, help="image side in pixels")
    ap.add_argument("--steps", type=int, default=3000, help="training steps of sweep step A")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-eval", type=int, default=2000, help="fresh samples for validation and for test metrics")
    ap.add_argument("--points", type=int, default=200, help="BetaVAE points / FactorVAE votes (train and eval each)")
    ap.add_argument("--points-batch", type=int, default=32, help="L: samples per BetaVAE point / FactorVAE vote")
    ap.add_argument("--out", type=Path, default=None, help=f"results JSON [default: {RESULTS}]")
    args = ap.parse_args()
    if args.quick:
        args.n, args.steps, args.n_eval, args.points, args.points_batch = 1200, 200, 500, 40, 16
    out_path = args.out or (args.workspace / "disentangle_sweep.quick.json" if args.quick else RESULTS)
    torch.set_num_threads(1)
    ws = Workspace(args.workspace)
    t_start = time.time()

    vis = visibility(args.size)
    visible = tuple(f for f in SPRITE_FACTORS if vis[f] >= VISIBLE_MIN)
    print("factor visibility (pixel-mean std over grid values):")
    for f, v in sorted(vis.items(), key=lambda kv: -kv[1]):
        print(f"  {f:26s} {v:.4f}{'  visible' if f in visible else ''}")
    variants = {
        "visible": Variant("visible", visible, SpritesConfig(n=args.n, size=args.size, p_present=0.5, vary=visible)),
        "full": Variant("full", SPRITE_FACTORS, SpritesConfig(n=args.n, size=args.size)),
    }
    for v in variants.values():
        run_data_build_sprites(ws, v.cfg, name=f"sprites-{v.name}", workers=1)

    rows: list[dict[str, Any]] = []

    def do(run: Run) -> dict[str, Any]:
        for r in rows:
            if r["run"] == dataclasses.asdict(run):
                return r
        variant = variants[run.variant]
        print(f"[{time.time() - t_start:6.0f} s] train {run.name}", flush=True)
        model, wall = train(ws, run, f"sprites-{run.variant}", args)
        t0 = time.time()
        res = evaluate(model, variant, args)
        row = {
            "index": len(rows) + 1,
            "run": dataclasses.asdict(run),
            "name": run.name,
            "n_factors": len(variant.factors),
            "train_wall_s": wall,
            "eval_wall_s": time.time() - t0,
            **res,
        }
        rows.append(row)
        print(markdown([row]).splitlines()[-1], flush=True)
        return row

    def best(cands: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return max(cands, key=lambda r: r["val_mig"])

    s = args.steps
    if args.quick:
        step_a = [Run("visible", "beta-vae", 4, 0, 10, s), Run("visible", "factor-vae", 1, 10, 10, s)]
    else:
        step_a = [Run("visible", "beta-vae", b, 0, 10, s) for b in (1, 4, 8, 16)]
        step_a += [Run("visible", "factor-vae", 1, g, 10, s) for g in (10, 40)]
    a_rows = [do(r) for r in step_a]
    b0 = Run(**best(a_rows)["run"])
    latents = (len(visible),) if args.quick else (len(visible), 16)
    step_b = [dataclasses.replace(b0, latent=z, step="B") for z in latents if z != b0.latent]
    step_b.append(dataclasses.replace(b0, steps=2 * s, step="B"))
    b_rows = [do(r) for r in step_b]
    chosen = best(a_rows + b_rows)
    c0 = Run(**chosen["run"])
    seeds = (1,) if args.quick else (1, 2)
    c_rows = [do(dataclasses.replace(c0, seed=k, step="C")) for k in seeds]
    step_d = [Run("full", "beta-vae", 4, 0, 10, s, step="D")]
    if not args.quick:
        step_d.append(Run("full", "factor-vae", 1, 10, 10, s, step="D"))
    d_best = dataclasses.replace(c0, variant="full", seed=0, step="D")
    if d_best.setting() not in {r.setting() for r in step_d}:
        step_d.append(d_best)
    d_rows = [do(r) for r in step_d]
    chosen_full = best(d_rows)

    spread = [chosen, *c_rows]
    summary = {
        "chosen_visible": {
            "name": chosen["name"],
            "val_mig": chosen["val_mig"],
            "test_mig": chosen["test_mig"],
            "test_mig_over_seeds": [r["test_mig"] for r in spread],
            "test_mig_mean": float(np.mean([r["test_mig"] for r in spread])),
        },
        "chosen_full": {
            "name": chosen_full["name"],
            "val_mig": chosen_full["val_mig"],
            "test_mig": chosen_full["test_mig"],
        },
        "best_test_mig_any_run": max(r["test_mig"] for r in rows),
    }
    print()
    print(markdown(rows))
    print(json.dumps(summary, indent=2))
    result = {
        "command": "python benchmarks/sweep_disentangle.py" + (" --quick" if args.quick else ""),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "visibility": vis,
        "visible_min": VISIBLE_MIN,
        "variants": {k: {"factors": list(v.factors), "config": dataclasses.asdict(v.cfg)} for k, v in variants.items()},
        "seeds": {"validation": VAL_SEED, "test": TEST_SEED},
        "runs": rows,
        "summary": summary,
        "wall_s": time.time() - t_start,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
