"""The batch report stage on the planted phantom workspace: one report per test image, evidence on every sentence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlens.errors import BadInputError
from cxrlens.interpret.run import InterpretConfig, run_interpret
from cxrlens.report.compile import CompileConfig
from cxrlens.report.run import ReportConfig, ReportModel, read_reports, run_report
from cxrlens.workspace import Workspace, read_manifest
from tests.interpret.planted import SAE_RUN, build_planted, hash_embed


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, ReportModel]:
    ws = Workspace(tmp_path_factory.mktemp("planted-report"))
    build_planted(ws)
    run_interpret(ws, InterpretConfig(sae=SAE_RUN), embed=hash_embed, show_progress=False)
    return ws, ReportModel.load(ws, SAE_RUN, embed=hash_embed, config=FEATURES)


FEATURES = CompileConfig(compiler="features")  # SAE-Rad's rule; the readout compiler has its own test below


def test_reports_for_the_test_split_with_evidence(planted) -> None:
    ws, model = planted
    result = run_report(ws, ReportConfig(interpret=SAE_RUN, compile=FEATURES), model=model, show_progress=False)
    df = read_reports(ws, result.path.name)
    n_test = int((pd.read_parquet(ws.activations("planted") / "index.parquet")["split"] == "test").sum())
    assert len(df) == n_test == result.manifest.rows["reports"]
    assert set(df["split"]) == {"test"}
    cfg = read_manifest(result.path).config
    assert cfg["dataset"] == "sprites" and cfg["activations"] == "planted" and cfg["stream"] == "final/cls"
    n_sentences = 0
    for row in df.itertuples():
        rep = row.report
        sentences = rep["findings"] + rep["impression"]
        assert row.generated_text == " ".join(s["text"] for s in sentences)
        assert row.reference_text  # sprites always have a report
        for s in sentences:
            n_sentences += 1
            assert s["evidence"], s
            for ev in s["evidence"]:
                assert ev["activation"] >= ev["threshold"] > 0
                assert ev["feature"] in model.bank.feature_sentences
        for s in rep["findings"]:  # a findings sentence is one of its evidence features' description sentences
            texts = {model.bank.texts[i] for ev in s["evidence"] for i in model.bank.feature_sentences[ev["feature"]]}
            assert s["text"] in texts
    assert n_sentences > len(df)  # most reports say something
    assert run_report(ws, ReportConfig(interpret=SAE_RUN, compile=FEATURES), model=model, show_progress=False).reused


def test_readout_reports_state_what_the_readout_decides_with_features_as_evidence(planted) -> None:
    from cxrlens.data.labeler import label_reports

    ws, _ = planted
    model = ReportModel.load(ws, SAE_RUN, embed=hash_embed)
    assert model.readout is not None and model.config.compiler == "readout"
    result = run_report(ws, ReportConfig(interpret=SAE_RUN), model=model, show_progress=False, run="ro")
    df = read_reports(ws, "ro")
    index = pd.read_parquet(ws.activations("planted") / "index.parquet")
    W, labels = model.readout.weights_LF, list(model.readout.labels)
    n_present = 0
    for row in df.itertuples():
        for s in row.report["findings"]:
            j = labels.index(s["finding"])
            present = s["score"] >= 0 and s["text"] not in {w[1] for w in model.readout.sentences().values()}
            for ev in s["evidence"]:  # evidence of a present finding pushes it up; of an absent one, down
                assert ev["contribution"] > 0 and np.sign(W[j, ev["feature"]]) == (1 if present else -1)
            if present:
                n_present += 1
                assert s["evidence"], s
                # the sentence states its finding (the labeler reads it present or uncertain)
                assert label_reports([s["text"]])[s["finding"]].iloc[0] in (1.0, -1.0), s["text"]
    assert n_present > 0.2 * len(df) and result.manifest.rows["reports"] == int((index["split"] == "test").sum())


def test_compile_respects_thresholds_and_max_features(planted) -> None:
    _, model = planted  # the features compiler
    codes = np.zeros(len(model.thresholds), np.float32)
    assert model.compile(codes).findings == []  # nothing active → nothing said
    finite = np.isfinite(model.thresholds)
    codes[finite] = model.thresholds[finite] * 2
    rep = model.compile(codes)
    used = {e.feature for s in rep.findings for e in s.evidence}
    assert 0 < len(used) <= model.config.max_features


def test_bad_inputs(planted, tmp_path) -> None:
    ws, model = planted
    with pytest.raises(BadInputError, match="interpretation run not found"):
        ReportModel.load(ws, "nope", embed=hash_embed)
    with pytest.raises(BadInputError, match="split"):
        ReportConfig(interpret=SAE_RUN, split="testing")
    with pytest.raises(BadInputError, match="no activations of dataset"):
        run_report(ws, ReportConfig(interpret=SAE_RUN, dataset="other"), model=model, show_progress=False)
    with pytest.raises(BadInputError, match="no backbone"):
        model.encode(np.zeros((1, 32, 32), np.float32))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    ((path, rep, err),) = model.report_files([bad])
    assert path == bad and rep is None and "bad.png" not in err and err


def test_downstream_stages_redo_when_an_upstream_artefact_changes_under_the_same_name(planted) -> None:
    """Reports of an interpretation that was redone differently (same run name) are not reused: they are stale."""
    import dataclasses

    from cxrlens.interpret.describe import DescribeConfig

    ws, model = planted
    cfg = ReportConfig(interpret=SAE_RUN)
    first = run_report(ws, cfg, model=model, show_progress=False)
    assert run_report(ws, cfg, model=model, show_progress=False).reused
    other = InterpretConfig(sae=SAE_RUN, describe=dataclasses.replace(DescribeConfig(), top_k=8))
    run_interpret(ws, other, embed=hash_embed, show_progress=False)  # same name, other content
    again = run_report(ws, cfg, model=ReportModel.load(ws, SAE_RUN, embed=hash_embed), show_progress=False)
    assert not again.reused and again.manifest.config_hash != first.manifest.config_hash
    assert again.manifest.inputs[f"interpret/{SAE_RUN}"] == read_manifest(ws.interpret(SAE_RUN)).config_hash
