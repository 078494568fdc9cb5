"""NLG metrics equal pycocoevalcap on fixed pairs; every named clinical F1 variant equals scikit-learn, including on
labels with no positive anywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import f1_score, precision_score, recall_score

from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.evaluate.clinical import (
    AVERAGES,
    FIVE_FINDINGS,
    clinical_scores,
    macro_over_all_labels,
    macro_over_reference_positive,
    micro_scores,
    per_label_scores,
    variant_name,
)
from cxrlens.evaluate.nlg import nlg_scores, tokenize_report

GEN = [
    "The heart is normal in size. No pleural effusion.",
    "Small left pleural effusion, XXXX atelectasis.",
    "",
    "Lungs are clear.",
]
REF = [
    "Heart size is normal. There is no pleural effusion or pneumothorax.",
    "There is a small left pleural effusion with adjacent atelectasis.",
    "No acute cardiopulmonary abnormality.",
    "The lungs are clear bilaterally.",
]


def test_tokenisation_is_documented_form() -> None:
    assert tokenize_report("No  pleural effusion, XXXX. Heart: normal") == "no pleural effusion . heart normal"


def test_nlg_equals_pycocoevalcap_directly() -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {str(i): [tokenize_report(r)] for i, r in enumerate(REF)}
    res = {str(i): [tokenize_report(g) or "."] for i, g in enumerate(GEN)}
    ours = nlg_scores(GEN, REF, meteor=False)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        assert ours[f"BLEU-{n + 1}"] == pytest.approx(bleu[n], abs=1e-12)
    assert ours["ROUGE-L"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-12)
    assert ours["CIDEr-D"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-12)
    assert ours["METEOR"] is None and ours["meteor_status"] == "not requested"


def test_nlg_known_values_and_meteor() -> None:
    same = nlg_scores(REF, REF)
    for n in range(1, 5):
        assert same[f"BLEU-{n}"] == pytest.approx(1.0, abs=1e-6)
    assert same["ROUGE-L"] == pytest.approx(1.0)
    scores = nlg_scores(GEN, REF)
    assert 0 < scores["BLEU-1"] < 1 and 0 < scores["ROUGE-L"] < 1
    if scores["METEOR"] is None:  # only when java is missing: then the status says so, never a number
        assert scores["meteor_status"].startswith("unavailable")
    else:
        assert 0 < scores["METEOR"] < 1 and scores["meteor_status"].startswith("ok")
    with pytest.raises(ValueError, match="2 generated reports but 1"):
        nlg_scores(["a", "b"], ["a"])


def _random_labels(rng: np.random.Generator, n: int) -> pd.DataFrame:
    x = rng.choice([1.0, 0.0, -1.0, np.nan], size=(n, len(CHEXPERT_LABELS)), p=[0.3, 0.3, 0.1, 0.3])
    return pd.DataFrame(x, columns=list(CHEXPERT_LABELS))


_SKLEARN_AVERAGE = {"micro": "micro", "macro-ref": "macro", "macro-all": "macro"}


def _sklearn(fn, r: np.ndarray, g: np.ndarray, average: str) -> float:
    """scikit-learn's value of one named variant (macro-ref: only the columns with a reference positive)."""
    labels = np.flatnonzero(r.sum(0) > 0) if average == "macro-ref" else None
    if labels is not None and len(labels) == 0:
        return float("nan")
    return float(fn(r, g, average=_SKLEARN_AVERAGE[average], labels=labels, zero_division=0))


def test_clinical_variants_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    gen, ref = _random_labels(rng, 200), _random_labels(rng, 200)
    ref.loc[:, "Fracture"] = np.nan  # a label with no reference positive …
    gen.loc[:, ["Fracture", "Pleural Other"]] = 0.0  # … one with none anywhere, one with reference positives only
    ref.loc[:, "Pleural Other"] = np.nan
    gen.loc[:10, "Pleural Other"] = 1.0  # now: Pleural Other = false positives only, Fracture = nothing anywhere
    ref.loc[:, "Edema"] = 0.0
    gen.loc[:, "Edema"] = np.nan  # Edema (in CheXpert-5): no positive in either text
    table = clinical_scores(gen, ref).set_index(["labels", "uncertain", "average", "metric"])
    assert set(table.index.get_level_values("average")) == set(AVERAGES)
    for uncertain, u in (("positive", 1.0), ("negative", 0.0)):
        for set_name, cols in (("5", FIVE_FINDINGS), ("14", CHEXPERT_LABELS)):
            g = (gen[list(cols)].replace(-1.0, u).fillna(0.0).to_numpy() == 1).astype(int)
            r = (ref[list(cols)].replace(-1.0, u).fillna(0.0).to_numpy() == 1).astype(int)
            for average in AVERAGES:
                for metric, fn in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
                    expected = _sklearn(fn, r, g, average)
                    row = table.loc[(set_name, uncertain, average, metric)]
                    assert row["value"] == pytest.approx(expected, abs=1e-12), (set_name, uncertain, average, metric)
                    assert row["variant"] == variant_name(metric, average, set_name, uncertain)
            assert table.loc[(set_name, uncertain, "macro-all", "f1"), "n_labels"] == len(cols)
            assert table.loc[(set_name, uncertain, "macro-ref", "f1"), "n_labels"] == int((r.sum(0) > 0).sum())


def test_toy_case_macro_variants_are_named_and_share_one_label_set_across_systems() -> None:
    """Two labels right, one false positive on a label absent from the reference, the rest never positive. The old
    single "macro" (labels positive in *either* text) gave 2/3 to this system and 1 to the same system without the
    false positive: each averaged over its own labels. Named now: scikit-learn's macro (zero_division=0) gives 2/14
    over CheXpert-14 to both, the reference-positive macro 1 to both, over the same labels."""
    ref = pd.DataFrame(np.nan, index=range(3), columns=list(CHEXPERT_LABELS))
    gen = ref.copy()
    ref.loc[0, "Atelectasis"] = gen.loc[0, "Atelectasis"] = 1.0
    ref.loc[1, "Cardiomegaly"] = gen.loc[1, "Cardiomegaly"] = 1.0
    clean = gen.copy()
    gen.loc[2, "Edema"] = 1.0
    r = (ref.fillna(0).to_numpy() == 1).astype(int)
    tables = {}
    for name, system in (("with false positive", gen), ("clean", clean)):
        table = clinical_scores(system, ref).set_index("variant")
        tables[name] = table
        g = (system.fillna(0).to_numpy() == 1).astype(int)
        all14 = table.loc[variant_name("f1", "macro-all", "14", "positive"), "value"]
        assert all14 == pytest.approx(2 / 14)
        assert all14 == pytest.approx(f1_score(r, g, average="macro", zero_division=0))
        assert table.loc[variant_name("f1", "macro-all", "5", "positive"), "value"] == pytest.approx(2 / 5)
        assert table.loc[variant_name("f1", "macro-ref", "14", "positive"), "value"] == pytest.approx(1.0)
        macro = table[table["average"] != "micro"]
        assert not np.isclose(macro["value"], 2 / 3).any()  # the old either-text macro of the first system
    for variant in tables["clean"].index:  # one label set per variant, whatever the system says
        assert tables["clean"].loc[variant, "n_labels"] == tables["with false positive"].loc[variant, "n_labels"]
    # the false positive is seen by micro F1 (and by the hallucination rates), not by macro F1 on an absent label
    micro = variant_name("f1", "micro", "14", "positive")
    assert tables["with false positive"].loc[micro, "value"] < tables["clean"].loc[micro, "value"]


_matrices = st.integers(1, 12).flatmap(
    lambda n: st.integers(2, 6).flatmap(  # ≥ 2 columns: sklearn reads one column as a binary target
        lambda k: st.tuples(
            hnp.arrays(np.bool_, (n, k)),
            hnp.arrays(np.bool_, (n, k)),
            st.lists(st.integers(0, k - 1), max_size=k),  # columns forced empty in both texts
            st.lists(st.integers(0, k - 1), max_size=k),  # columns forced empty in the reference only
        )
    )
)


@settings(max_examples=150, deadline=None)
@given(_matrices)
def test_each_named_variant_equals_sklearn_including_labels_with_no_positive_anywhere(case) -> None:
    g, r, dead, ref_dead = case
    g, r = g.copy(), r.copy()
    g[:, dead] = r[:, dead] = False
    r[:, ref_dead] = False
    for fn, metric in ((f1_score, "f1"), (precision_score, "precision"), (recall_score, "recall")):
        all_ = macro_over_all_labels(g, r)[metric]
        assert all_ == pytest.approx(_sklearn(fn, r.astype(int), g.astype(int), "macro-all"), abs=1e-12)
        ref_ = macro_over_reference_positive(g, r)[metric]
        expected = _sklearn(fn, r.astype(int), g.astype(int), "macro-ref")
        assert (np.isnan(ref_) and np.isnan(expected)) or ref_ == pytest.approx(expected, abs=1e-12)
        micro = micro_scores(g, r)[metric]
        if not np.isnan(micro):
            assert micro == pytest.approx(float(fn(r, g, average="micro", zero_division=0)), abs=1e-12)
    assert macro_over_all_labels(g, r)["n_labels"] == g.shape[1]
    assert macro_over_reference_positive(g, r)["n_labels"] == int(r.any(0).sum())


def test_per_label_counts_on_hand_example() -> None:
    ref = pd.DataFrame([[np.nan] * 14] * 3, columns=list(CHEXPERT_LABELS))
    gen = ref.copy()
    ref.loc[:, "Edema"] = [1.0, -1.0, 0.0]
    gen.loc[:, "Edema"] = [1.0, 0.0, 1.0]
    pos = per_label_scores(gen, ref, uncertain="positive").set_index("label").loc["Edema"]
    assert (pos["tp"], pos["fp"], pos["fn"]) == (1, 1, 1) and pos["f1"] == pytest.approx(0.5)
    neg = per_label_scores(gen, ref, uncertain="negative").set_index("label").loc["Edema"]
    assert (neg["tp"], neg["fp"], neg["fn"]) == (1, 1, 0) and neg["f1"] == pytest.approx(2 / 3)
    names = clinical_scores(gen, ref)["variant"]
    assert "f1 macro over all labels, zero_division=0 · CheXpert-5 · uncertain=positive" in set(names)
    assert "f1 macro over labels with a reference positive · CheXpert-5 · uncertain=positive" in set(names)
