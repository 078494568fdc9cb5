"""Planted image–text pairs for the align tests: image features are a fixed random linear map of the text."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cxrlens.align.pairs import PairData


def planted_pairs(n: int = 600, d_img: int = 32, d_txt: int = 24, noise: float = 0.3, seed: int = 0) -> PairData:
    """n images, each with its own report (a random unit text vector t_i); image features x_i = W t_i + noise.

    Each report has one sentence (its own vector) whose polarity-flipped twin is ``-t_i``. Splits: 70/15/15 %.
    """
    rng = np.random.default_rng(seed)
    txt = rng.normal(size=(n, d_txt)).astype(np.float32)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    w = rng.normal(size=(d_txt, d_img)).astype(np.float32)
    img = txt @ w + noise * rng.normal(size=(n, d_img)).astype(np.float32)
    split = np.array(["train"] * int(0.7 * n) + ["val"] * int(0.15 * n), dtype=object)
    split = np.concatenate([split, np.array(["test"] * (n - len(split)), dtype=object)])
    return PairData(
        pooled_ND=torch.from_numpy(img),
        patches_NTD=None,
        report_NDt=torch.from_numpy(txt),
        report_group_N=np.arange(n),
        sentence_SDt=torch.from_numpy(txt),
        image_sentences=[np.array([i]) for i in range(n)],
        flipped_SDt=torch.from_numpy(-txt),
        has_flip_S=np.ones(n, dtype=bool),
        split_N=split.astype(str),
        has_text_N=np.ones(n, dtype=bool),
    )


def negation_pairs(n: int = 800, k: int = 6, p: float = 0.15, paraphrases: int = 40, seed: int = 0) -> PairData:
    """Findings with MiniLM-like negation: each image has finding j with probability p (features: sum of finding
    directions + noise); its report has one sentence per finding, a paraphrase of "j" if present else of "no j".
    "no j" = "j" + 0.3 × one shared negation direction (cosine ≈ 0.95, as MiniLM gives). The flipped twin of a
    sentence is the same paraphrase with the other polarity."""
    rng = np.random.default_rng(seed)
    dt, di = 32, 24
    a = rng.normal(size=(k, dt))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    neg_dir = rng.normal(size=dt)
    neg_dir /= np.linalg.norm(neg_dir)
    para = rng.normal(size=(k, paraphrases, dt))
    para /= np.linalg.norm(para, axis=2, keepdims=True)
    pos_s = (a[:, None, :] + 0.5 * para).reshape(-1, dt)
    neg_s = (a[:, None, :] + 0.3 * neg_dir + 0.5 * para).reshape(-1, dt)
    sent = np.concatenate([pos_s, neg_s])
    sent = (sent / np.linalg.norm(sent, axis=1, keepdims=True)).astype(np.float32)
    n_half = k * paraphrases
    flipped = np.concatenate([sent[n_half:], sent[:n_half]])
    z = rng.random((n, k)) < p
    x = z @ rng.normal(size=(k, di)) + 0.5 * rng.normal(size=(n, di))
    pick = rng.integers(0, paraphrases, (n, k))
    base = np.arange(k) * paraphrases
    img_sents = [np.sort(np.where(z[i], base + pick[i], n_half + base + pick[i])) for i in range(n)]
    rep = np.stack([sent[s].mean(0) for s in img_sents])
    rep /= np.linalg.norm(rep, axis=1, keepdims=True)
    n_tr, n_va = int(0.7 * n), int(0.15 * n)
    split = np.array(["train"] * n_tr + ["val"] * n_va + ["test"] * (n - n_tr - n_va))
    return PairData(
        pooled_ND=torch.tensor(x, dtype=torch.float32),
        patches_NTD=None,
        report_NDt=torch.tensor(rep, dtype=torch.float32),
        report_group_N=np.unique(z, axis=0, return_inverse=True)[1].ravel(),
        sentence_SDt=torch.from_numpy(sent),
        image_sentences=img_sents,
        flipped_SDt=torch.from_numpy(flipped),
        has_flip_S=np.ones(len(sent), dtype=bool),
        split_N=split,
        has_text_N=np.ones(n, dtype=bool),
    )


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


class HashingEncoder:
    """A fast stand-in for MiniLM: hashed bag of words (and word pairs) → 64-d unit vectors. Deterministic."""

    name = "test-hashing-64"
    dim = 64

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, texts):
        import hashlib
        import re

        self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            words = re.findall(r"[a-z]+", t.lower())
            for tok in words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]:
                h = int(hashlib.md5(tok.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm > 0 else out[i]
        return out


@pytest.fixture
def hashing_encoder() -> HashingEncoder:
    return HashingEncoder()
