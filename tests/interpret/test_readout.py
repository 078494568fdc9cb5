"""The finding readout: planted signals, confound exclusion, the base-rate rule, negatives, save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlens.errors import BadInputError
from cxrlens.interpret.readout import FindingReadout, ReadoutConfig, finding_sentences, fit_readout, label_targets


def _data(n: int, seed: int, confound_holds: bool):
    """Labels A (planted in feature 0), B (no signal anywhere), C (rare, in feature 2); feature 1 copies A's
    label only while the confound holds (train), random otherwise; features 3.. are noise."""
    rng = np.random.default_rng(seed)
    y = np.stack([rng.random(n) < 0.3, rng.random(n) < 0.3, rng.random(n) < 0.1], axis=1).astype(int)
    x = rng.exponential(0.3, size=(n, 12)).astype(np.float32)
    x[:, 0] += 2.0 * y[:, 0] * rng.uniform(0.6, 1.0, n)
    x[:, 1] = 3.0 * (y[:, 0] if confound_holds else rng.random(n) < 0.3)
    x[:, 2] += 2.0 * y[:, 2]
    return x, y


def test_planted_finding_is_read_from_its_feature_and_the_confound_is_never_used() -> None:
    xtr, ytr = _data(800, 0, confound_holds=True)
    xva, yva = _data(400, 1, confound_holds=False)
    ro = fit_readout(xtr, ytr, xva, yva, ("A", "B", "C"), ReadoutConfig(candidates=6), exclude=[1])
    t = ro.table.set_index("label")
    assert t.at["A", "kept"] and t.at["C", "kept"]
    assert ro.weights_LF[0, 0] > 0 and ro.weights_LF[0, 1] == 0  # excluded: zero weight whatever train says
    assert ro.weights_LF[2, 2] > 0
    assert not t.at["B", "kept"]  # at β = 1 it edges past the base rate by stating B nearly always: not enriched
    assert "not enriched" in t.at["B", "reason"] or "does not beat stating it always" in t.at["B", "reason"]
    assert np.isinf(ro.threshold_L[1])  # never stated
    xte, yte = _data(400, 2, confound_holds=False)
    said = ro.stated(xte)
    tp = ((said[:, 0] == 1) & (yte[:, 0] == 1)).sum()
    assert tp / max((said[:, 0] == 1).sum(), 1) > 0.9 and tp / yte[:, 0].sum() > 0.9
    assert not (said[:, 1] == 1).any()


def test_without_the_exclusion_the_confound_takes_over_and_val_exposes_it() -> None:
    xtr, ytr = _data(800, 0, confound_holds=True)
    xva, yva = _data(400, 1, confound_holds=False)
    ro = fit_readout(xtr, ytr, xva, yva, ("A", "B", "C"), ReadoutConfig(candidates=6))
    t = ro.table.set_index("label")
    assert ro.weights_LF[0, 1] > 0  # train cannot tell the confound from the finding …
    clean = fit_readout(xtr, ytr, xva, yva, ("A", "B", "C"), ReadoutConfig(candidates=6), exclude=[1])
    assert clean.table.set_index("label").at["A", "val_fbeta"] > t.at["A", "val_fbeta"]  # … val can


def test_negative_cutoff_meets_its_npv_on_val() -> None:
    xtr, ytr = _data(800, 0, confound_holds=True)
    xva, yva = _data(400, 1, confound_holds=False)
    cfg = ReadoutConfig(candidates=6, negative_npv=0.95)
    ro = fit_readout(xtr, ytr, xva, yva, ("A", "B", "C"), cfg, exclude=[1])
    below = ro.logits(xva)[:, 0] < ro.negative_L[0]
    assert below.sum() >= 0.5 * (yva[:, 0] == 0).sum()
    assert (yva[below, 0] == 0).mean() >= 0.95


def test_too_few_positives_and_bad_shapes() -> None:
    xtr, ytr = _data(200, 0, True)
    xva, yva = _data(100, 1, False)
    yva[:, 2] = 0
    ro = fit_readout(xtr, ytr, xva, yva, ("A", "B", "C"), ReadoutConfig(candidates=6))
    assert "too few positives" in ro.table.set_index("label").at["C", "reason"]
    with pytest.raises(BadInputError):
        fit_readout(xtr, ytr[:, :2], xva, yva, ("A", "B", "C"))
    with pytest.raises(BadInputError):
        ReadoutConfig(betas=(1.0, 0.0))


def test_save_load_round_trip(tmp_path) -> None:
    xtr, ytr = _data(400, 0, True)
    xva, yva = _data(200, 1, False)
    ro = fit_readout(xtr, ytr, xva, yva, ("A", "B", "C"), ReadoutConfig(candidates=6))
    ro.table["positive_sentence"] = ["A here.", "", "C here."]
    ro.table["negative_sentence"] = ["No A.", "No B.", ""]
    ro.save(tmp_path)
    back = FindingReadout.load(tmp_path)
    assert back.labels == ro.labels
    np.testing.assert_array_equal(back.stated(xva), ro.stated(xva))
    assert back.sentences()["A"] == ("A here.", "No A.")
    assert back.beta_choice == ro.beta_choice and back.beta_choice["beta"] == 1.0
    with pytest.raises(BadInputError):
        FindingReadout.load(tmp_path / "nowhere")


def test_label_targets_and_finding_sentences() -> None:
    table = pd.DataFrame({"A": [1.0, -1.0, 0.0, np.nan], "B": [np.nan, 1.0, np.nan, 0.0]})
    np.testing.assert_array_equal(label_targets(table, ["A", "B"]), [[1, 0], [1, 1], [0, 0], [0, 0]])

    class Index:  # the SentenceIndex fields finding_sentences reads
        sentences = np.array(["A and B.", "A.", "No A.", "A is seen.", "No A or B."], dtype=object)
        counts = np.array([50, 10, 30, 5, 40])
        signature = np.array([[1, 1], [1, np.nan], [0, np.nan], [1, np.nan], [0, 0]], dtype=np.float32)

    words = finding_sentences(Index(), ["A", "B"], ["A", "B"]).set_index("label")
    assert words.at["A", "positive_sentence"] == "A." and words.at["A", "negative_sentence"] == "No A."
    assert words.at["B", "positive_sentence"] == "" and words.at["B", "negative_sentence"] == ""


def test_beta_maximises_the_worse_margin_over_the_baseline() -> None:
    """β is chosen on val: with no baseline the first (F1); with one the β whose smaller margin over it — micro
    precision or micro F1, both cross-fitted — is largest. A baseline that is imprecise but states nothing else of
    use (recall 0) makes precision the binding margin; a baseline with a high F1 makes F1 binding. Save/load keeps
    the choice."""
    rng = np.random.default_rng(5)
    n = 600
    y = (rng.random((2 * n, 1)) < 0.3).astype(int)
    x = rng.exponential(0.5, size=(2 * n, 6)).astype(np.float32)
    x[:, 0] += 1.2 * y[:, 0] + 0.4 * rng.normal(size=2 * n)  # a weak, noisy signal: precision trades with recall
    cfg = ReadoutConfig(candidates=4, betas=(1.0, 0.7, 0.5))
    free = fit_readout(x[:n], y[:n], x[n:], y[n:], ("A",), cfg)
    tried = {t["beta"]: t for t in free.beta_choice["tried"]}
    assert free.beta_choice["beta"] == 1.0 and free.beta_choice["baseline"] is None
    assert tried[0.5]["precision"] > tried[1.0]["precision"] and tried[0.5]["recall"] < tried[1.0]["recall"]
    assert tried[1.0]["f1"] > tried[0.5]["f1"]
    # precision binds: the most precise β wins
    p0 = tried[1.0]["precision"] - 0.01
    imprecise = fit_readout(x[:n], y[:n], x[n:], y[n:], ("A",), cfg, baseline={"precision": p0, "recall": 0.0})
    assert imprecise.beta_choice["beta"] == max(tried, key=lambda b: tried[b]["precision"]) == 0.5
    assert imprecise.table.at[0, "beta"] == 0.5
    # F1 binds: the β with the best F1 wins
    strong = fit_readout(x[:n], y[:n], x[n:], y[n:], ("A",), cfg, baseline={"precision": 0.5, "recall": 1.0})
    assert strong.beta_choice["beta"] == max(tried, key=lambda b: tried[b]["f1"]) == 1.0
    # in general: argmax over β of min(P − p, F1 − F1_b), recorded per β
    base = {"precision": tried[0.7]["precision"], "recall": tried[0.7]["recall"]}
    mid = fit_readout(x[:n], y[:n], x[n:], y[n:], ("A",), cfg, baseline=base)
    f1b = 2 * base["precision"] * base["recall"] / (base["precision"] + base["recall"])
    margins = {b: min(t["precision"] - base["precision"], t["f1"] - f1b) for b, t in tried.items()}
    assert mid.beta_choice["beta"] == max(margins, key=margins.get)
    for t in mid.beta_choice["tried"]:
        assert t["margin"] == pytest.approx(margins[t["beta"]])
    with pytest.raises(BadInputError):
        ReadoutConfig(baseline="test")
    with pytest.raises(BadInputError):
        ReadoutConfig(betas=())
