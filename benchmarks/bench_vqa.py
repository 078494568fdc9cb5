"""Visual question answering and report checking on iu-phantom, each beside its honest baseline in the same run.

Pipeline (each stage is skipped when current in ``--workspace``): ``data build iu-phantom`` (7,470 phantoms drawn
from the real IU X-ray reports, 224 px), ``extract`` with the shipped default backbone (``cxrlens:default``: pooled,
mean and 8 × 8 patch tokens), ``qa train`` (heads fit on train, calibrated and chosen on val). Everything below is
scored on the **test** split only (patients disjoint from train and val):

1. **Questions** — ``--questions`` questions drawn from the rendered truth of test images
   (:func:`cxrlens.qa.questionset.generate_questions`: presence, laterality, severity, device, device position,
   findings list, normal; yes/no answers balanced), asked as text (parsed, then answered). Accuracy per kind with a
   95 % CI over images, beside the **majority-answer baseline** (each kind's most frequent answer in a question set
   drawn from the train split).
2. **Report checks** — every test image's own report, untouched and perturbed (swap laterality, drop a finding,
   insert a false finding, change severity): detection accuracy on the balanced pairs and AUC, beside a checker that
   flags **at random with the same rate**.
3. **Heat maps** — pointing game of the presence heads' token maps against the rendered masks, beside the same map
   with the head's weights randomised, a centre prior and random maps.

ELIXR's figures (MIMIC-CXR, radiologist-graded, a different system on different data) are printed beside for
orientation only.

Usage: ``python benchmarks/bench_vqa.py [--quick] [--workspace DIR]``; writes ``benchmarks/results/vqa.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrlens.activations import ActivationStore, ExtractConfig, run_extract
from cxrlens.data.labeler import report_text
from cxrlens.data.phantom.datasets import IUPhantomConfig, run_data_build_iu_phantom
from cxrlens.data.store import read_studies
from cxrlens.qa.evaluate import (
    answer_table,
    findings_by_image,
    majority_answers,
    qa_pointing,
    question_scores,
    report_check_scores,
    report_check_table,
    truth_by_image,
)
from cxrlens.qa.model import QATrainConfig, load_qa_model, run_qa_train, store_features, truth_facts
from cxrlens.qa.questionset import generate_questions
from cxrlens.workspace import Workspace

RESULTS = Path(__file__).resolve().parent / "results" / "vqa.json"
ELIXR = {"vqa_accuracy": 0.587, "report_qa_accuracy": 0.625}  # ELIXR paper, MIMIC-CXR — different data


def _print(title: str, df: pd.DataFrame) -> None:
    print(f"\n{title}")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=None, help="reuse/keep this workspace (default: a temp dir)")
    ap.add_argument("--quick", action="store_true", help="600 questions, 400 reports")
    ap.add_argument("--questions", type=int, default=None)
    ap.add_argument("--reports", type=int, default=None, help="test reports checked (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n_q = args.questions or (600 if args.quick else 1400)
    n_r = args.reports or (400 if args.quick else 0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    tmp = None if args.workspace else tempfile.TemporaryDirectory(prefix="bench-vqa-")
    ws = Workspace(args.workspace or Path(tmp.name))
    timings = {}

    t = time.perf_counter()
    run_data_build_iu_phantom(ws, IUPhantomConfig(), workers=2)
    timings["data build"] = time.perf_counter() - t
    t = time.perf_counter()
    acts = "iu-phantom-default-patch"
    run_extract(
        ws,
        ExtractConfig("iu-phantom", "cxrlens:default", tokens=("cls", "mean", "patch")),
        run=acts,
        show_progress=False,
    )
    timings["extract"] = time.perf_counter() - t
    t = time.perf_counter()
    run_qa_train(ws, QATrainConfig(acts), run="qa")
    timings["qa train"] = time.perf_counter() - t

    t = time.perf_counter()
    model = load_qa_model(ws, "qa")
    store = ActivationStore(ws.activations(acts))
    X, P = store_features(store, model.meta["pooled_stream"], model.meta["patch_stream"])
    ids = store.index["image_id"].astype(str).to_numpy()
    split = store.index["split"].astype(str).to_numpy()
    facts, _ = truth_facts(ws, "iu-phantom")
    test, train = ids[split == "test"], ids[split == "train"]
    findings = findings_by_image(model, X[split == "test"], P[split == "test"], test)

    questions = generate_questions(facts, list(test), n=n_q, seed=args.seed)
    train_q = generate_questions(facts, list(train), n=n_q, seed=args.seed + 1)
    answered = answer_table(questions, findings)
    q_scores = question_scores(answered, majority_answers(train_q), seed=args.seed)

    studies = read_studies(ws, "iu-phantom").drop_duplicates("image_id").set_index("image_id")
    chosen = [
        i for i in test if isinstance(studies.at[i, "findings"], str) or isinstance(studies.at[i, "impression"], str)
    ]
    if n_r:
        chosen = list(np.random.default_rng(args.seed).choice(chosen, size=min(n_r, len(chosen)), replace=False))
    reports = {i: report_text(studies.at[i, "findings"], studies.at[i, "impression"]) for i in chosen}
    checks = report_check_table(reports, truth_by_image(facts), findings, seed=args.seed)
    r_scores = report_check_scores(checks, seed=args.seed)

    pointing = qa_pointing(model, P[split == "test"], test, facts, ws.dataset("iu-phantom") / "masks", seed=args.seed)
    timings["evaluate"] = time.perf_counter() - t

    _print(f"Questions (test split, {len(questions)} questions on {questions['image_id'].nunique()} images)", q_scores)
    _print(
        f"Report checks (test split, {len(reports)} reports; each perturbation paired with its untouched report)",
        r_scores,
    )
    _print(
        "Pointing game of the presence heads' token maps (test, certain positives with a mask)",
        pointing[pointing["finding"] == "all"],
    )
    overall_q = q_scores.set_index("kind").loc["overall"]
    overall_r = r_scores.set_index("perturbation").loc["overall"]
    print(
        f"\nVQA accuracy {overall_q['accuracy']:.3f} vs majority {overall_q['majority_baseline']:.3f} "
        f"(ratio {overall_q['accuracy'] / overall_q['majority_baseline']:.2f}); report QA accuracy "
        f"{overall_r['accuracy']:.3f} vs random {overall_r['random_accuracy']:.3f}"
    )
    print(
        f"ELIXR (MIMIC-CXR; different data, model and grading): VQA {ELIXR['vqa_accuracy']:.3f}, report QA "
        f"{ELIXR['report_qa_accuracy']:.3f}"
    )
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "torch_threads": torch.get_num_threads(),
                "quick": args.quick,
                "questions": q_scores.to_dict("records"),
                "report_checks": r_scores.to_dict("records"),
                "pointing": pointing.to_dict("records"),
                "heads": pd.read_parquet(model.path / "metrics.parquet").to_dict("records"),
                "elixr_different_data": ELIXR,
                "seconds": timings,
            },
            indent=1,
            default=float,
        )
    )
    print(f"wrote {RESULTS}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
