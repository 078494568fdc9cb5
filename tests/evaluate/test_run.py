"""The evaluation stage on a tiny phantom workspace: files, scores, baselines, reuse, bad input and the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cxrlens.activations import write_array_store
from cxrlens.data.phantom.spec import FindingSpec, ImageSpec
from cxrlens.data.schema import finalize_study_table
from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.errors import BadInputError
from cxrlens.evaluate.bootstrap import cluster_bootstrap
from cxrlens.evaluate.clinical import clinical_scores_from_text
from cxrlens.evaluate.leak import LeakyEvaluationError, leak_check
from cxrlens.evaluate.names import AGREEMENT, HEADLINE, MACRO_QUOTED
from cxrlens.evaluate.run import EvaluateConfig, run_evaluate_reports
from cxrlens.evaluate.tables import gap_table, headline_table
from cxrlens.workspace import Workspace, run_stage
from tests.conftest import run_cli

# patient → (split, findings, impression, what is drawn); one study of two images per patient, as in IU X-ray
PATIENTS = {
    "P0": ("train", "Heart size normal.", "Lungs are clear.", ()),
    "P1": ("train", "heart size normal.", " lungs are clear.", ()),
    "P2": ("train", "Right pleural effusion.", "No pneumothorax.", (FindingSpec("pleural_effusion", "right"),)),
    "P3": ("train", "Cardiomegaly.", "Lungs are clear.", (FindingSpec("cardiomegaly"),)),
    "P4": ("train", "Left lower lobe atelectasis.", "", (FindingSpec("atelectasis", "left", "lower"),)),
    "P5": ("test", "Right pleural effusion.", "", (FindingSpec("pleural_effusion", "right"),)),
    "P6": ("test", "Cardiomegaly.", "", (FindingSpec("cardiomegaly"),)),
    "P7": ("test", "Heart size normal.", "Lungs are clear.", ()),
}
CONSTANT = "Heart size normal. Lungs are clear."  # P0 and P1 share it after normalisation; "H" < "h" breaks the tie
# each test patient's images lie near one training patient's images in activation space
NEAR = {"P5": "P2", "P6": "P3", "P7": "P0"}
GENERATED = {
    "P5": "Right pleural effusion.",
    "P6": "Cardiomegaly. Left pleural effusion.",  # the effusion is a hallucination
    "P7": "Lungs are clear.",
    "P0": "Heart size normal. Lungs are clear.",  # a training image evaluated too: retrieval must skip its patient
}


@dataclasses.dataclass(frozen=True)
class _DatasetCfg:
    n: int = 16


@dataclasses.dataclass(frozen=True)
class _RunCfg:
    dataset: str = "tinyph"
    activations: str = "tinyph-acts"
    stream: str = "final/cls"
    split: str = "test"


def _image_ids(patient: str) -> list[str]:
    return [f"{patient}-a", f"{patient}-b"]


def _build_workspace(root: Path) -> tuple[Workspace, np.ndarray, pd.DataFrame]:
    ws = Workspace(root)
    rows, factors = [], []
    for p, (split, findings, impression, drawn) in PATIENTS.items():
        for image_id in _image_ids(p):
            rows.append(
                {
                    "study_id": f"S{p}",
                    "image_id": image_id,
                    "patient_id": p,
                    "image_path": "",
                    "view": "PA",
                    "split": split,
                    "findings": findings,
                    "impression": impression,
                    "source": "test",
                }
            )
            factors.append({"image_id": image_id, **ImageSpec(findings=drawn).to_row(), "unrendered": []})
    studies = finalize_study_table(pd.DataFrame(rows))
    import_dataset(
        ws,
        "tinyph",
        stage="test.tinyph",
        config=_DatasetCfg(),
        load=lambda: LoadedDataset(studies, {"factors": pd.DataFrame(factors)}, [], []),
    )
    rng = np.random.default_rng(0)
    centre = {p: rng.normal(size=8) for p in PATIENTS if p not in NEAR}
    vecs = []
    for p in PATIENTS:
        base = centre[NEAR.get(p, p)]
        for _ in _image_ids(p):
            vecs.append(base + 0.05 * rng.normal(size=8))
    x = np.array(vecs, dtype=np.float32)
    index = studies[["image_id", "study_id", "patient_id", "split"]]
    write_array_store(ws.activations("tinyph-acts"), {"final/cls": torch.from_numpy(x)}, index)
    return ws, x, studies


def _line(image_id: str, generated: str, reference: str) -> str:
    return json.dumps(
        {
            "image_id": image_id,
            "study_id": f"S{image_id.split('-')[0]}",
            "split": "test",
            "generated_text": generated,
            "reference_text": reference,
            "report": {"findings": [], "impression": []},
        }
    )


def _reference(p: str) -> str:
    _, f, i, _ = PATIENTS[p]
    return " ".join(t.strip() for t in (f, i) if t.strip())


def _good_lines() -> list[str]:
    return [_line(i, GENERATED[p], _reference(p)) for p in GENERATED for i in _image_ids(p)]


def _write_run(ws: Workspace, name: str, lines: list[str], cfg: _RunCfg | None = None) -> Path:
    def build(tmp: Path) -> None:
        (tmp / "reports.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    return run_stage(ws.reports(name), stage="report.test", config=cfg or _RunCfg(), build=build, force=True).path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    ws, x, studies = _build_workspace(tmp_path_factory.mktemp("eval") / "ws")
    _write_run(ws, "good", _good_lines())
    return ws, x, studies


def _brute_nearest(x: np.ndarray, studies: pd.DataFrame, image_id: str) -> str:
    row = {i: k for k, i in enumerate(studies["image_id"])}
    me = studies.set_index("image_id").loc[image_id, "patient_id"]
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    best, best_sim = None, -np.inf
    for r in studies[(studies["split"] == "train") & (studies["patient_id"] != me)].itertuples():
        sim = float(xn[row[image_id]] @ xn[row[r.image_id]])
        if sim > best_sim:
            best, best_sim = r.image_id, sim
    return best


def test_stage_writes_every_file_and_scores_consistently(tiny) -> None:
    ws, x, studies = tiny
    result = run_evaluate_reports(ws, EvaluateConfig("good", meteor=False, bootstrap=200))
    out = ws.reports("good") / "evaluation"
    assert result.path == out and not result.reused
    for f in ("metrics.json", "metrics.parquet", "per_report.parquet", "manifest.json"):
        assert (out / f).is_file(), f
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["systems"]) == {"cxrlens", "constant", "random", "nearest", AGREEMENT}
    assert m["n_reports"] == 8 and m["skipped_lines"] == {} and m["meteor_status"] == "not requested"

    per = pd.read_parquet(out / "per_report.parquet")
    assert len(per) == 5 * 8
    assert m["baselines"]["constant"]["text"] == CONSTANT
    assert (per[per.system == "constant"].generated_text == CONSTANT).all()
    train_texts = {_reference(p) for p, v in PATIENTS.items() if v[0] == "train"}
    assert set(per[per.system == "random"].generated_text) <= train_texts

    near = per[per.system == "nearest"].set_index("image_id")
    for image_id in near.index:
        assert near.loc[image_id, "neighbour_image_id"] == _brute_nearest(x, studies, image_id)
    assert not near.loc["P0-a", "neighbour_image_id"].startswith("P0")  # its own image has cosine 1: excluded
    for p, q in NEAR.items():  # the planted neighbours' reports come back
        assert {near.loc[i, "generated_text"] for i in _image_ids(p)} == {_reference(q)}

    # headline and gaps agree with clinical scores computed directly on the texts
    gen = [GENERATED[i.split("-")[0]] for i in near.index]
    ref = [_reference(i.split("-")[0]) for i in near.index]
    direct = clinical_scores_from_text(gen, ref).set_index("variant").loc[HEADLINE, "value"]
    assert m["gaps"]["cxrlens"] == pytest.approx(direct)
    clin = {r["variant"]: r["value"] for r in m["systems"]["nearest"]["clinical"]}
    assert len(clin) == 36  # 2 label sets × 2 uncertain policies × 3 averages × 3 metrics, all named
    for name, g in m["gaps"]["vs"].items():
        base = {r["variant"]: r["value"] for r in m["systems"][name]["clinical"]}[HEADLINE]
        assert g["gap"] == pytest.approx(direct - base)
        assert g["ci95"][0] <= g["gap"] + 1e-9 and g["gap"] - 1e-9 <= g["ci95"][1]

    # phantom grounding: the cxrlens claims are effusion ✓, cardiomegaly ✓, effusion ✗ (P6) → 2 of 6 are hallucinated
    long = pd.read_parquet(out / "metrics.parquet")
    assert list(long.columns) == ["system", "metric", "variant", "value", "leaky"]
    assert not long["leaky"].any() and m["leaky"] is False and m["leak"] is None
    pick = long[(long.system == "cxrlens") & (long.metric == "hallucination rate")].set_index("variant").value
    assert pick["per finding · uncertain=positive"] == pytest.approx(2 / 6)
    assert pick["per report · uncertain=positive"] == pytest.approx(2 / 8)
    ref_rows = long[(long.system == AGREEMENT) & (long.metric == "grounding f1")].set_index("variant").value
    assert ref_rows["micro · 13 drawable labels · uncertain=positive"] == pytest.approx(1.0)

    table = headline_table(m)
    assert list(table.index) == ["cxrlens", "constant", "random", "nearest", AGREEMENT]
    assert table.loc["cxrlens", "clinical F1 micro-5 (u=pos)"] == pytest.approx(direct)
    assert np.isnan(table.loc["cxrlens", "METEOR"])
    assert table.loc["cxrlens", "hallucination / finding (u=pos)"] == pytest.approx(2 / 6)
    assert table.loc["cxrlens", "clinical F1 macro-14 over all labels, zero_division=0 (u=pos)"] == pytest.approx(
        {r["variant"]: r["value"] for r in m["systems"]["cxrlens"]["clinical"]}[MACRO_QUOTED]
    )
    assert "clinical F1 macro-14 (u=pos)" not in table.columns  # no unnamed macro left
    assert m["macro_quoted"] == f"clinical {MACRO_QUOTED}"


def test_intervals_resample_studies_with_their_images(tiny) -> None:
    """The gap interval is the study-level cluster bootstrap: recomputed here from the per-image counts with the
    study ids as groups it comes out identical, and every output says the unit and how many units."""
    ws, _, _ = tiny
    result = run_evaluate_reports(ws, EvaluateConfig("good", meteor=False, bootstrap=300, seed=3))
    m = json.loads((result.path / "metrics.json").read_text())
    assert m["bootstrap"]["unit"] == "study" and m["bootstrap"]["n_units"] == 4 and m["bootstrap"]["n_images"] == 8
    per = pd.read_parquet(result.path / "per_report.parquet")
    a, b = per[per.system == "cxrlens"], per[per.system == "nearest"]
    assert (a.study_id.to_numpy() == b.study_id.to_numpy()).all()

    def micro(frame: pd.DataFrame, w: np.ndarray) -> np.ndarray:
        tp, fp, fn = (w @ frame[c].to_numpy(float) for c in ("tp5", "fp5", "fn5"))
        return np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=2 * tp + fp + fn > 0)

    expected = cluster_bootstrap(
        lambda w: micro(a, w) - micro(b, w), len(a), groups=a.study_id.to_numpy(), unit="study", n_boot=300, seed=3
    )
    got = m["gaps"]["vs"]["nearest"]
    assert got["ci95"] == pytest.approx(expected.ci()) and got["gap"] == pytest.approx(expected.estimate)
    assert got["bootstrap_unit"] == "study" and got["n_units"] == 4
    image_level = cluster_bootstrap(lambda w: micro(a, w) - micro(b, w), len(a), n_boot=300, seed=3)
    assert image_level.ci() != expected.ci()  # the old image-level interval is not what the stage reports

    gaps = gap_table(m)
    assert set(gaps.metric) == {
        f"clinical {HEADLINE}",
        f"clinical {MACRO_QUOTED}",
        "grounding f1 micro · 13 drawable labels · uncertain=positive",
        "hallucination rate per finding · uncertain=positive",
    }
    assert set(gaps.baseline) == {"constant", "random", "nearest"}
    finite = gaps.dropna(subset=["ci_low"])
    assert ((finite.ci_low <= finite.gap + 1e-9) & (finite.gap <= finite.ci_high + 1e-9)).all()
    assert gaps.set_index(["metric", "baseline"]).loc[
        ("hallucination rate per finding · uncertain=positive", "nearest"), "lower_is_better"
    ]
    assert set(gaps.label) == {
        "clinical F1 micro-5 (u=pos)",
        "clinical F1 macro-14 over all labels, zero_division=0 (u=pos)",
        "grounding F1 micro-13 (u=pos)",
        "hallucination / finding (u=pos)",
    } and set(gaps.label) <= set(headline_table(m).columns)  # the short names are the metrics table's columns
    cx = {r["metric"]: r for r in m["intervals"] if r["system"] == "cxrlens"}
    assert cx["hallucination rate per finding · uncertain=positive"]["value"] == pytest.approx(2 / 6)

    by_patient = run_evaluate_reports(
        ws, EvaluateConfig("good", meteor=False, bootstrap=50, bootstrap_unit="patient", baselines=("constant",))
    )
    mp = json.loads((by_patient.path / "metrics.json").read_text())
    assert mp["bootstrap"]["unit"] == "patient" and mp["gaps"]["vs"]["constant"]["bootstrap_unit"] == "patient"
    with pytest.raises(BadInputError, match="bootstrap_unit must be one of study, patient"):
        EvaluateConfig("good", bootstrap_unit="image")


def test_empty_reports_get_their_own_row_and_a_non_empty_denominator(tiny) -> None:
    ws, _, _ = tiny
    lines = [_line(i, "" if p == "P7" else GENERATED[p], _reference(p)) for p in GENERATED for i in _image_ids(p)]
    _write_run(ws, "withempty", lines)
    result = run_evaluate_reports(ws, EvaluateConfig("withempty", baselines=("constant",), meteor=False, bootstrap=0))
    m = json.loads((result.path / "metrics.json").read_text())
    assert m["systems"]["cxrlens"]["empty_reports"] == {"n": 2, "fraction": 0.25}
    table = headline_table(m)
    # P6's two images hallucinate an effusion: 2 of all 8 reports, 2 of the 6 non-empty ones
    assert table.loc["cxrlens", "hallucination / report, all reports (u=pos)"] == pytest.approx(2 / 8)
    assert table.loc["cxrlens", "hallucination / non-empty report (u=pos)"] == pytest.approx(2 / 6)
    assert table.loc["cxrlens", "empty reports (share)"] == pytest.approx(0.25)
    assert table.loc["constant", "empty reports (share)"] == 0.0
    assert "reference" not in table.index and table.loc[AGREEMENT, "empty reports (share)"] == 0.0
    assert "not a ceiling" in m["grounding"]["agreement_row"]


def test_reused_then_redone_when_reports_change(tiny) -> None:
    ws, _, _ = tiny
    path = _write_run(ws, "again", _good_lines())
    cfg = EvaluateConfig("again", baselines=("constant",), meteor=False, bootstrap=0)
    first = run_evaluate_reports(ws, cfg)
    assert not first.reused
    assert run_evaluate_reports(ws, cfg).reused
    lines = _good_lines()
    lines[0] = _line("P5-a", "Left pleural effusion. Cardiomegaly.", _reference("P5"))
    (path / "reports.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    third = run_evaluate_reports(ws, cfg)
    assert not third.reused and third.manifest.config_hash != first.manifest.config_hash
    per = pd.read_parquet(path / "evaluation" / "per_report.parquet")
    assert "Left pleural effusion. Cardiomegaly." in set(per.generated_text)
    assert not run_evaluate_reports(ws, dataclasses.replace(cfg, seed=1)).reused  # a config change redoes it too
    assert not run_evaluate_reports(ws, dataclasses.replace(cfg, seed=1), force=True).reused


def test_bad_lines_are_skipped_counted_and_reported(tiny, capsys) -> None:
    ws, _, _ = tiny
    good = _good_lines()
    lines = [
        *good[:4],
        "{not json",
        json.dumps({"image_id": "P7-a", "reference_text": "x"}),  # no generated_text
        json.dumps([1, 2]),
        good[0],  # duplicate image_id
        _line("P7-a", "Lungs clear.", "   "),
        _line("nobody-a", "Lungs clear.", "Lungs clear."),
        "",
        *good[4:],
    ]
    _write_run(ws, "messy", lines)
    result = run_evaluate_reports(
        ws, EvaluateConfig("messy", baselines=("constant", "random"), meteor=False, bootstrap=0)
    )
    m = json.loads((result.path / "metrics.json").read_text())
    assert m["n_reports"] == 8
    assert m["skipped_lines"] == {
        "not valid JSON": 1,
        "missing or non-string generated_text": 1,
        "not a JSON object": 1,
        "duplicate image_id": 1,
        "empty reference_text": 1,
        "image_id not in dataset 'tinyph'": 1,
    }
    assert result.manifest.skipped == m["skipped_lines"]
    err = capsys.readouterr().err
    assert "reports.jsonl:5: skipped (not valid JSON)" in err.replace("\n", "")


def test_missing_store_skips_nearest_with_a_warning(tiny, capsys) -> None:
    ws, _, _ = tiny
    _write_run(ws, "nostore", _good_lines(), _RunCfg(activations="gone"))
    result = run_evaluate_reports(ws, EvaluateConfig("nostore", meteor=False, bootstrap=0))
    m = json.loads((result.path / "metrics.json").read_text())
    assert "nearest" not in m["systems"] and "nearest" not in m["gaps"]["vs"]
    assert "gone" in m["baselines"]["nearest"]["skipped"]
    assert {"constant", "random"} <= set(m["gaps"]["vs"])
    assert "nearest-neighbour baseline skipped" in capsys.readouterr().err.replace("\n", " ")
    _write_run(ws, "badstream", _good_lines(), _RunCfg(stream="final/nope"))
    result = run_evaluate_reports(ws, EvaluateConfig("badstream", baselines=("nearest",), meteor=False, bootstrap=0))
    m = json.loads((result.path / "metrics.json").read_text())
    assert "no stream 'final/nope'" in m["baselines"]["nearest"]["skipped"]


def test_bad_input_gives_one_clear_error(tiny) -> None:
    ws, _, _ = tiny
    fast = {"meteor": False, "bootstrap": 0}
    with pytest.raises(BadInputError, match="no report run 'absent'"):
        run_evaluate_reports(ws, EvaluateConfig("absent", **fast))
    half = ws.reports("half")
    half.mkdir(parents=True)
    (half / "reports.jsonl").write_text(_good_lines()[0] + "\n")
    with pytest.raises(BadInputError, match=r"manifest\.json: missing or unreadable"):
        run_evaluate_reports(ws, EvaluateConfig("half", **fast))
    _write_run(ws, "nodata", _good_lines(), _RunCfg(dataset="vanished"))
    with pytest.raises(BadInputError, match=r"dataset 'vanished' .* is not in the workspace"):
        run_evaluate_reports(ws, EvaluateConfig("nodata", **fast))
    _write_run(ws, "allbad", ["{oops", json.dumps({"image_id": 3})])
    with pytest.raises(BadInputError, match="no valid report line"):
        run_evaluate_reports(ws, EvaluateConfig("allbad", **fast))
    with pytest.raises(BadInputError, match="unknown baseline"):
        EvaluateConfig("good", baselines=("constant", "oracle"))


def test_cli_prints_the_table_and_bad_input_as_one_line(tiny) -> None:
    ws, _, _ = tiny
    res = run_cli(
        "evaluate", "reports", "--reports", "good", "--no-meteor", "--bootstrap", "50", "--workspace", str(ws.root)
    )
    assert res.returncode == 0, res.stderr
    for text in ("Evaluation of good (8 reports)", "clinical F1 micro-5", "gap vs nearest", "gap vs random", "wrote"):
        assert text in res.stdout, text
    bad = run_cli("evaluate", "reports", "--reports", "absent", "--workspace", str(ws.root))
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "no report run 'absent'" in bad.stderr
    for text in ("4 studies (8 images) resampled", "Gaps, cxrlens − baseline", "reference-render agreement"):
        assert text in res.stdout.replace("\n", " ") or text in res.stdout, text


# ---------------------------------------------------------------------------------------------------- leak guard
@dataclasses.dataclass(frozen=True)
class _InterpCfg:
    sae: str = "s"
    describe_split: str = "train"
    calibrate_split: str = "val"


@dataclasses.dataclass(frozen=True)
class _InterpretedRunCfg:
    interpret: str = "interp"
    dataset: str = "tinyph"
    activations: str = "tinyph-acts"
    stream: str = "final/cls"
    split: str = "val"


def _write_interpretation(ws: Workspace, name: str = "interp", dataset: str = "tinyph", **splits: str) -> None:
    run_stage(
        ws.interpret(name),
        stage="interpret.test",
        config=_InterpCfg(**splits),
        build=lambda tmp: {"extra": {"dataset": dataset, "activations": "tinyph-acts", "stream": "final/cls"}},
        force=True,
    )


def test_leak_guard_refuses_a_split_the_interpretation_used_unless_allowed(tiny) -> None:
    ws, _, _ = tiny
    _write_interpretation(ws)
    _write_run(ws, "onval", _good_lines(), _InterpretedRunCfg(split="val"))
    fast = {"meteor": False, "bootstrap": 0, "baselines": ("constant",)}
    with pytest.raises(LeakyEvaluationError) as err:
        run_evaluate_reports(ws, EvaluateConfig("onval", **fast))
    msg = str(err.value)
    assert "\n" not in msg and "'onval'" in msg and "'val'" in msg and "--allow-leaky" in msg
    assert "calibrat" in msg and not (ws.reports("onval") / "evaluation").exists()

    result = run_evaluate_reports(ws, EvaluateConfig("onval", allow_leaky=True, **fast))
    m = json.loads((result.path / "metrics.json").read_text())
    assert m["leaky"] is True and m["leak"]["splits"] == ["val"]
    assert "calibrate_split" in m["leak"]["uses"]["val"] and "--allow-leaky" in m["leak"]["why"]
    assert result.manifest.extra["leaky"] is True
    assert pd.read_parquet(result.path / "metrics.parquet")["leaky"].all()
    assert pd.read_parquet(result.path / "per_report.parquet")["leaky"].all()

    _write_run(ws, "ontest", _good_lines(), _InterpretedRunCfg(split="test"))
    ok = run_evaluate_reports(ws, EvaluateConfig("ontest", **fast))
    mo = json.loads((ok.path / "metrics.json").read_text())
    assert mo["leaky"] is False and "report split 'test' vs interpretation 'interp'" in mo["leak_check"]


def test_leak_check_reads_both_splits_and_the_dataset(tiny) -> None:
    ws, _, _ = tiny
    _write_interpretation(ws, "i2", describe_split="val", calibrate_split="val")
    base = {"interpret": "i2", "dataset": "tinyph"}
    assert not leak_check(ws, {**base, "split": "train"}).leaky
    both = leak_check(ws, {**base, "split": "val"})
    assert both.leaky and both.splits == ("val",) and "describe_split" in both.why() and "calibrate" in both.why()
    assert leak_check(ws, {**base, "split": "all"}).splits == ("val",)
    _write_interpretation(ws, "i3", describe_split="all")
    assert leak_check(ws, {"interpret": "i3", "dataset": "tinyph", "split": "test"}).splits == ("test",)
    _write_interpretation(ws, "other", dataset="elsewhere")
    assert not leak_check(ws, {"interpret": "other", "dataset": "tinyph", "split": "train"}).leaky
    assert "names no interpretation" in leak_check(ws, {"dataset": "tinyph", "split": "val"}).checked
    assert "no readable manifest" in leak_check(ws, {"interpret": "gone", "dataset": "tinyph", "split": "val"}).checked


def test_cli_refuses_a_leaky_split_in_one_line_and_marks_an_allowed_one(tiny) -> None:
    ws, _, _ = tiny
    _write_interpretation(ws)
    _write_run(ws, "ontrain", _good_lines(), _InterpretedRunCfg(split="train"))
    args = ("evaluate", "reports", "--reports", "ontrain", "--no-meteor", "--bootstrap", "0", "--baselines", "constant")
    bad = run_cli(*args, "--workspace", str(ws.root))
    assert bad.returncode == 2
    line = bad.stderr.strip()
    assert len(line.splitlines()) == 1 and "'ontrain'" in line and "'train'" in line and "--allow-leaky" in line
    ok = run_cli(*args, "--allow-leaky", "--workspace", str(ws.root))
    assert ok.returncode == 0, ok.stderr
    assert "LEAKY" in ok.stdout and "(8 reports) — LEAKY" in ok.stdout


def test_demo_summary_shows_study_level_intervals_the_named_macro_and_a_leak_mark(tiny) -> None:
    from types import SimpleNamespace

    from cxrlens.demo import write_summary

    ws, _, _ = tiny
    result = run_evaluate_reports(ws, EvaluateConfig("good", meteor=False, bootstrap=100))
    m = json.loads((result.path / "metrics.json").read_text())
    interp = SimpleNamespace(
        manifest=SimpleNamespace(
            config={"sae": "s"},
            extra={"activations": "tinyph-acts", "stream": "final/cls"},
            rows={"features": 8, "described": 2},
        )
    )
    text = write_summary(ws, "good", interp, headline_table(m), m).read_text()
    assert "## Study-level 95 % intervals" in text
    assert "4 studies (8 images) resampled with their images kept together, 100 resamples" in text
    assert f"Macro F1 quoted: `clinical {MACRO_QUOTED}`" in text
    assert "clinical F1 macro-14 over all labels, zero_division=0 (u=pos)" in text  # the table column
    gap = m["gaps"]["vs"]["nearest"]
    lo, hi = gap["ci95"]
    row = f"| clinical F1 micro-5 (u=pos) | nearest | {gap['gap']:+.3f} | [{lo:+.3f}, {hi:+.3f}] |"
    assert row in text
    assert f"Row `{AGREEMENT}`" in text and "not** a ceiling" in text
    assert "non-empty report" in text and "LEAKY" not in text
    leaky = {**m, "leaky": True, "leak": {"why": "evaluated split(s) val used by interpretation 'i'"}}
    assert (
        write_summary(ws, "good", interp, headline_table(m), leaky)
        .read_text()
        .startswith("# cxrlens demo — good\n\n> **LEAKY: evaluated split(s) val")
    )
