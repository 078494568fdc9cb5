"""TCAV through a QA model (``--model qa:<run>``): the shipped default backbone with presence heads fitted on
planted images — a concept that causes the label is significant at the backbone's blocks, a random one is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrlens.analysis.stages_maps import parse_model
from cxrlens.analysis.tcav import LayerProbe, TCAVConfig, run_tcav
from cxrlens.analysis.tcav_qa import QAPresenceLogits
from cxrlens.errors import BadInputError
from cxrlens.qa.heads import fit_head
from cxrlens.qa.model import QAModel
from tests.conftest import run_cli

SIZE = 128


def _images(n: int, square: np.ndarray, bar: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Grey noisy images; ``square`` plants a bright 28-px square in the lower-right quadrant, ``bar`` a bright
    horizontal bar in the upper-left one (the finding of an unrelated head)."""
    x = np.clip(0.35 + 0.08 * rng.standard_normal((n, SIZE, SIZE)), 0, 1).astype(np.float32)
    for i in np.flatnonzero(square):
        r, c = rng.integers(68, 96, 2)
        x[i, r : r + 28, c : c + 28] = 0.95
    for i in np.flatnonzero(bar):
        r, c = rng.integers(8, 48), rng.integers(4, 20)
        x[i, r : r + 6, c : c + 40] = 0.95
    return torch.from_numpy(x)


@pytest.fixture(scope="module")
def qa_model() -> tuple[QAPresenceLogits, QAModel, np.random.Generator]:
    """A QA model on ``cxrlens:default`` (final layer): presence/Pleural Effusion = the square, presence/Fracture =
    the bar, each a calibrated head of :func:`cxrlens.qa.heads.fit_head` on the backbone's features."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    meta = {"layer": "final", "pooled_stream": "final/cls", "grid": [8, 8], "backbone": "cxrlens:default"}
    qa = QAModel({}, meta)
    sq, bar = rng.random(320) < 0.5, rng.random(320) < 0.5
    X, _ = qa.encode_gray(list(_images(320, sq, bar, rng).numpy()))
    tr, va = slice(0, 240), slice(240, 320)
    for name, y in (("presence/Pleural Effusion", sq), ("presence/Fracture", bar)):
        y = y.astype(np.int64)
        qa.heads[name] = fit_head(name, ("no", "yes"), X[tr], y[tr], X[va], y[va])
        assert qa.heads[name].val["auc"] > 0.95, name
    return QAPresenceLogits(qa).eval(), qa, rng


def test_the_module_gives_the_heads_calibrated_logits(qa_model) -> None:
    model, qa, rng = qa_model
    assert model.labels == ("Pleural Effusion", "Fracture")  # CheXpert order
    assert set(model.layer_modules) == {"block.0", "block.1", "block.2", "block.3", "final"}
    x = _images(6, np.arange(6) % 2 == 0, np.arange(6) % 3 == 0, rng)
    X, _ = qa.encode_gray(list(x.numpy()))
    for k, label in enumerate(model.labels):
        head = qa.heads[f"presence/{label}"]
        a, b = head.platt
        want = a * head.logits(X)[:, 0] + b
        with torch.no_grad():
            np.testing.assert_allclose(model(x)[:, k].numpy(), want, rtol=1e-3, atol=1e-3)
        with torch.enable_grad():  # the differentiable path gives the same logits
            np.testing.assert_allclose(model(x)[:, k].detach().numpy(), want, rtol=1e-3, atol=1e-3)


def test_planted_concept_significant_for_its_label_random_concept_never(qa_model) -> None:
    model, _, rng = qa_model
    none = np.zeros(300, bool)
    pool = _images(300, none, none, rng)
    concepts = {"square": _images(80, ~none[:80], none[:80], rng), "random-set": pool[:80]}
    classes = {"Pleural Effusion": (0, _images(40, ~none[:40], none[:40], rng))}
    probe = LayerProbe(model, model.layer_modules["block.2"], batch_size=40)
    table = run_tcav(probe, classes, concepts, pool[80:], TCAVConfig(n_random=20), set_size=30)
    row = table.set_index("concept")
    assert row.loc["square", "cav_accuracy"] > 0.9
    assert row.loc["square", "significant"] and row.loc["square", "tcav_mean"] > row.loc["square", "null_mean"]
    assert row.loc["random-set", "cav_accuracy"] < 0.7 and not row.loc["random-set", "significant"]


def test_model_specs() -> None:
    assert parse_model("qa:qa") == ("qa", "qa", "")
    assert parse_model("lt-vit:run:cls") == ("lt-vit", "run", "cls")
    for bad in ("qa", "qa:", "qa:a:b", "lt-vit:run:nope", "vae:ae"):
        with pytest.raises(BadInputError, match="expected lt-vit"):
            parse_model(bad)


def test_a_bad_model_spec_is_one_error_line(tmp_path) -> None:
    res = run_cli("analyze", "tcav", "-w", str(tmp_path / "ws"), "--model", "qa:", "-c", "x=view==PA")
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "qa:<run>" in lines[0] and "Traceback" not in res.stderr, res.stderr
