"""A small phantom workspace with *planted* activations, shared by the interpret / report / evaluate tests.

Sprites phantoms (templated reports consistent with the rendered findings) + an activation store in which every
rendered finding kind adds its own direction: an SAE trained on it should find features for the frequent kinds,
and their descriptions should name those findings. Building it takes a few seconds.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from cxrlens.activations import write_array_store
from cxrlens.data.phantom.datasets import SpritesConfig, run_data_build_sprites
from cxrlens.data.phantom.spec import KINDS
from cxrlens.data.store import read_side_table, read_studies
from cxrlens.sae.base import SAEConfig
from cxrlens.sae.run import SAERunConfig, run_sae_train
from cxrlens.sae.train import TrainConfig
from cxrlens.workspace import Workspace

DATASET = "sprites"
STORE = "planted"
SAE_RUN = "planted-topk"
DIM = 24


def hash_embed(texts: Sequence[str], dim: int = 256) -> np.ndarray:
    """A fast deterministic stand-in for MiniLM: L2-normalised hashed bag of words (+ word bigrams)."""
    out = np.zeros((len(texts), dim), np.float32)
    for i, t in enumerate(texts):
        words = re.findall(r"[a-z]+", t.lower())
        for tok in words + [a + " " + b for a, b in itertools.pairwise(words)]:
            out[i, int(hashlib.md5(tok.encode()).hexdigest()[:8], 16) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-9)


def build_planted(ws: Workspace, n: int = 480, seed: int = 0) -> None:
    """datasets/sprites (n images, 32 px), activations/planted (final/cls, 24-d) and saes/planted-topk."""
    run_data_build_sprites(ws, SpritesConfig(n=n, size=32, seed=seed, p_present=0.2), name=DATASET, workers=1)
    studies = read_studies(ws, DATASET)
    factors = read_side_table(ws, DATASET, "factors").set_index("image_id").reindex(studies["image_id"])
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(len(KINDS), DIM)).astype(np.float32)
    present = np.stack([factors[f"{k}.present"].to_numpy(float) > 0 for k in KINDS], axis=1)
    severity = np.stack([factors[f"{k}.severity"].fillna(0).to_numpy(float) for k in KINDS], axis=1)
    x = (present * (1.0 + severity)) @ directions + 0.1 * rng.normal(size=(len(studies), DIM))
    index = studies[["study_id", "image_id", "split"]].reset_index(drop=True)
    write_array_store(
        ws.activations(STORE),
        {"final/cls": torch.from_numpy(x.astype(np.float32))},
        index,
        extra={"dataset": DATASET},
    )
    sae = SAEConfig(arch="topk", d_in=DIM, n_latents=64, k=4, aux_k=8, dead_tokens=256)
    cfg = SAERunConfig(
        activations=STORE,
        stream="final/cls",
        split="train",
        eval_split="val",
        shuffle_buffer=1024,
        train=TrainConfig(sae=sae, steps=300, batch_size=128, lr=3e-3, warmup_steps=10, log_every=50),
    )
    run_sae_train(ws, cfg, run=SAE_RUN, device="cpu", show_progress=False)


def present_kinds(ws: Workspace) -> pd.DataFrame:
    """(image_id → kind presence) of the planted dataset."""
    factors = read_side_table(ws, DATASET, "factors").set_index("image_id")
    return factors[[f"{k}.present" for k in KINDS]].rename(columns=lambda c: c.split(".")[0]) > 0
