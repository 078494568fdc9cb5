"""The small SAE job shared by tests/scale/test_ddp.py and its torchrun worker (one definition, both sides)."""

from __future__ import annotations

import pandas as pd

from cxrlens.activations import write_array_store
from cxrlens.sae import SAEConfig
from cxrlens.sae.run import SAERunConfig
from cxrlens.sae.synthetic import make_sparse_data
from cxrlens.sae.train import TrainConfig
from cxrlens.workspace import Workspace

STEPS, BATCH, CHECKPOINT_EVERY = 200, 128, 50
EXACT_STEPS, EXACT_BATCH = 30, 64


def make_store(ws: Workspace) -> None:
    """``activations/syn``: 4,096 tokens of 32-d sparse synthetic activations (64 atoms, 3 per token)."""
    data = make_sparse_data(4096, 32, 64, 3, seed=0)
    write_array_store(ws.activations("syn"), {"final/cls": data.x}, pd.DataFrame({"split": ["train"] * 4096}))


def run_config() -> SAERunConfig:
    sae = SAEConfig(arch="topk", d_in=32, n_latents=128, k=4, aux_k=16, dead_tokens=4096)
    train = TrainConfig(
        sae=sae, steps=STEPS, batch_size=BATCH, lr=2e-3, warmup_steps=10, checkpoint_every=CHECKPOINT_EVERY
    )
    return SAERunConfig(activations="syn", split="all", eval_split="all", eval_max_rows=2048, train=train)


def exact_config() -> TrainConfig:
    """A ReLU SAE whose loss is a plain batch mean and whose init needs no data (no input scale, ``b_dec`` = 0): two
    ranks on the halves of each batch must then take the very steps one process takes on the whole batch."""
    sae = SAEConfig(arch="relu", d_in=16, n_latents=64, sparsity_coeff=0.5)
    return TrainConfig(
        sae=sae,
        steps=EXACT_STEPS,
        batch_size=EXACT_BATCH,
        lr=3e-3,
        warmup_steps=5,
        normalise_input=False,
        b_dec_init="zeros",
        checkpoint_every=0,
        log_every=5,
    )


def exact_batches() -> list:
    """The global batches of the exactness test, (EXACT_BATCH, 16) each, from a fixed generator."""
    data = make_sparse_data(EXACT_STEPS * EXACT_BATCH, 16, 32, 2, seed=1).x
    return list(data.split(EXACT_BATCH))


def align_exact_config():
    """A small adapter run (3 epochs of 6 steps of 32 pairs) for the 2-rank vs 1-process exactness test."""
    from cxrlens.align.config import AlignConfig

    return AlignConfig(
        activations="planted", epochs=3, batch_size=32, lr=1e-2, embed_dim=16, hidden_dim=32, text_hidden=32
    )


def align_exact_data():
    """280 planted image–report pairs (196 train), see ``tests/align/conftest.py``."""
    from tests.align.conftest import planted_pairs

    return planted_pairs(n=280, d_img=16, d_txt=12)


ALIGN_IMAGES, ALIGN_BATCH = 160, 16


def make_align_store(ws: Workspace) -> None:
    """``datasets/planted`` (160 studies, reports naming an effusion and/or an enlarged heart; splits train, train,
    train, val, test) and ``activations/planted``: 16-d pooled features that carry the two findings plus noise."""
    import numpy as np
    import torch

    from cxrlens.activations import write_array_store
    from cxrlens.data.schema import finalize_study_table
    from cxrlens.data.store import LoadedDataset, import_dataset

    rng = np.random.default_rng(0)
    eff, cm = rng.random(ALIGN_IMAGES) < 0.4, rng.random(ALIGN_IMAGES) < 0.3
    dirs = rng.normal(size=(2, 16))
    x = 0.3 * rng.normal(size=(ALIGN_IMAGES, 16)) + np.outer(eff, dirs[0]) + np.outer(cm, dirs[1])
    ids = [f"i{i}" for i in range(ALIGN_IMAGES)]
    splits = [("train", "train", "train", "val", "test")[i % 5] for i in range(ALIGN_IMAGES)]
    findings = [
        ("There is a left pleural effusion." if e else "No pleural effusion.")
        + (" The heart is enlarged." if c else " Heart size is normal.")
        for e, c in zip(eff, cm, strict=True)
    ]
    studies = finalize_study_table(
        pd.DataFrame(
            {
                "study_id": [f"s{i}" for i in range(ALIGN_IMAGES)],
                "image_id": ids,
                "patient_id": [f"p{i}" for i in range(ALIGN_IMAGES)],
                "image_path": [f"images/{i}.png" for i in ids],
                "view": "PA",
                "split": splits,
                "findings": findings,
                "impression": "",
                "source": "test",
                "Pleural Effusion": eff.astype(float),
                "Cardiomegaly": cm.astype(float),
            }
        )
    )
    import_dataset(
        ws,
        "planted",
        stage="test.planted",
        config=SAERunConfig(activations="planted"),  # any config: names the toy dataset's identity
        load=lambda: LoadedDataset(studies=studies, tables={}, errors=[], inputs=[]),
    )
    index = pd.DataFrame({"image_id": ids, "study_id": [f"s{i}" for i in range(ALIGN_IMAGES)], "split": splits})
    write_array_store(ws.activations("planted"), {"final/cls": torch.tensor(x, dtype=torch.float32)}, index)


def align_stage_config():
    """3 epochs of 6 steps of 16 pairs (8 per rank) on ``activations/planted``."""
    from cxrlens.align.config import AlignConfig

    return AlignConfig(
        activations="planted",
        dataset="planted",
        epochs=3,
        batch_size=ALIGN_BATCH,
        lr=1e-2,
        embed_dim=16,
        hidden_dim=32,
        text_hidden=32,
    )
