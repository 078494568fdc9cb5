"""NLG metrics equal pycocoevalcap on fixed pairs; clinical F1 variants equal scikit-learn on known labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.evaluate.clinical import FIVE_FINDINGS, clinical_scores, per_label_scores
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


def test_clinical_variants_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    gen, ref = _random_labels(rng, 200), _random_labels(rng, 200)
    table = clinical_scores(gen, ref).set_index(["labels", "uncertain", "average", "metric"])["value"]
    for uncertain, u in (("positive", 1.0), ("negative", 0.0)):
        for set_name, cols in (("5", FIVE_FINDINGS), ("14", CHEXPERT_LABELS)):
            g = (gen[list(cols)].replace(-1.0, u).fillna(0.0).to_numpy() == 1).astype(int)
            r = (ref[list(cols)].replace(-1.0, u).fillna(0.0).to_numpy() == 1).astype(int)
            for average in ("micro", "macro"):
                for metric, fn in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
                    expected = fn(r, g, average=average, zero_division=0)
                    assert table[(set_name, uncertain, average, metric)] == pytest.approx(expected, abs=1e-12)


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
    assert "f1 macro · CheXpert-5 · uncertain=positive" in set(names)
