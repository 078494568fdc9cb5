"""The interpret stage on a planted phantom workspace: features, descriptions, thresholds, reuse, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from cxrlens.errors import BadInputError
from cxrlens.interpret.codes import load_sae_context
from cxrlens.interpret.run import InterpretConfig, run_interpret
from cxrlens.workspace import Workspace
from tests.interpret.planted import SAE_RUN, build_planted, hash_embed, present_kinds


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("planted"))
    build_planted(ws)
    run_interpret(ws, InterpretConfig(sae=SAE_RUN), embed=hash_embed, show_progress=False)
    return ws


def test_interpret_writes_features_descriptions_and_thresholds(planted: Workspace) -> None:
    out = planted.interpret(SAE_RUN)
    feats = pd.read_parquet(out / "features.parquet")
    desc = pd.read_parquet(out / "descriptions.parquet")
    n = 64
    assert len(feats) == len(desc) == n and feats["feature"].tolist() == list(range(n))
    thr = load_file(str(out / "thresholds.safetensors"))["thresholds"]
    assert thr.shape == (n,) and np.all((thr > 0) | np.isinf(thr))  # calibrated on val: inf = never active there
    assert np.isfinite(thr[(feats["n_active"] > 5).to_numpy()]).mean() > 0.8
    for col in ("frequency", "auc.Pleural Effusion", "factor.pleural_effusion", "verdict", "factor_auc"):
        assert col in feats.columns
    live = feats[feats["n_active"] > 0]
    # top images are really the highest activations, sorted, and never listed among the non-activating sample
    for row in live.itertuples():
        acts = list(row.top_activations)
        assert acts == sorted(acts, reverse=True) and len(acts) <= 16
        assert not set(row.top_image_ids) & set(row.random_image_ids)
    assert set(desc["describer"]) <= {"extractive", "label-anchored"} and "label-anchored" in set(desc["describer"])
    assert (out / "readout.safetensors").exists() and (out / "readout.parquet").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["extra"]["dataset"] == "sprites" and manifest["extra"]["stream"] == "final/cls"
    assert (out / "figures" / "overview.png").stat().st_size > 1000


def test_planted_findings_get_features_whose_descriptions_name_them(planted: Workspace) -> None:
    feats = pd.read_parquet(planted.interpret(SAE_RUN) / "features.parquet")
    desc = pd.read_parquet(planted.interpret(SAE_RUN) / "descriptions.parquet").set_index("feature")
    truth = present_kinds(planted)
    hits = 0
    for kind, word in (("pleural_effusion", "effusion"), ("edema", "edema"), ("pneumothorax", "pneumothorax")):
        best = feats.sort_values(f"factor.{kind}", ascending=False).iloc[0]
        assert best[f"factor.{kind}"] > 0.7, kind
        # the images it fires on most really show the finding
        assert truth.loc[list(best["top_image_ids"]), kind].mean() > 0.6, kind
        hits += word in str(desc.loc[int(best["feature"]), "description"]).lower()
    assert hits >= 2


def test_rerun_is_reused_and_force_redoes(planted: Workspace) -> None:
    cfg = InterpretConfig(sae=SAE_RUN)
    assert run_interpret(planted, cfg, embed=hash_embed, show_progress=False).reused
    other = run_interpret(planted, cfg, run="again", embed=hash_embed, show_progress=False)
    assert not other.reused
    a = pd.read_parquet(planted.interpret(SAE_RUN) / "descriptions.parquet")
    b = pd.read_parquet(planted.interpret("again") / "descriptions.parquet")
    pd.testing.assert_frame_equal(a, b)  # deterministic


def test_bad_inputs(planted: Workspace, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="SAE run not found"):
        load_sae_context(planted, "nope")
    with pytest.raises(BadInputError, match="describe_split"):
        InterpretConfig(sae=SAE_RUN, describe_split="training")
    with pytest.raises(BadInputError, match="threshold_quantile"):
        InterpretConfig(sae=SAE_RUN, threshold_quantile=1.0)
    cfg_path = planted.sae(SAE_RUN) / "config.json"
    header = json.loads(cfg_path.read_text())
    broken = Workspace(tmp_path / "ws")
    (broken.sae("x")).mkdir(parents=True)
    (broken.sae("x") / "config.json").write_text(json.dumps({k: v for k, v in header.items() if k != "activations"}))
    with pytest.raises(BadInputError, match="no activation store recorded"):
        load_sae_context(broken, "x")


def test_llm_describer_in_the_stage_and_dead_endpoint_fallback(planted: Workspace, monkeypatch) -> None:
    import socket

    from cxrlens.interpret.llm import LLMConfig
    from tests.interpret.test_llm import _chat, _group_a, _server

    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)

    def answer(body, n):  # "effusion" in the top reports (sprites name it only when present) → a description
        return _chat("Pleural effusion." if "pleural effusion." in _group_a(body) else "No consistent finding.")

    with _server(answer) as (url, log):
        cfg = InterpretConfig(sae=SAE_RUN, llm=LLMConfig(url=url, model="fake", timeout_s=5, retries=0))
        res = run_interpret(planted, cfg, run="llm", embed=hash_embed, show_progress=False)
    desc = pd.read_parquet(res.path / "descriptions.parquet")
    extractive = pd.read_parquet(res.path / "descriptions_extractive.parquet")
    assert len(log) > 0 and (desc["describer"] == "llm:fake").sum() == len(log)
    assert set(extractive["describer"]) <= {"extractive", "label-anchored"}  # the offline describers
    llm_rows = desc[desc["describer"] == "llm:fake"]
    assert set(llm_rows["description"]) <= {"Pleural effusion.", "no consistent finding"}
    assert "score_auc" in desc.columns and res.manifest.extra["description_scores"]["n_features"] == 64
    # describer robustness: the same features reported with either description set
    from cxrlens.report.run import ReportModel

    primary = ReportModel.load(planted, "llm", embed=hash_embed, signature=None)
    other = ReportModel.load(planted, "llm", describer="extractive", embed=hash_embed)
    assert "Pleural effusion." in set(primary.descriptions.values())
    assert other.descriptions == dict(zip(extractive["feature"], extractive["description"], strict=True))

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cfg = InterpretConfig(sae=SAE_RUN, llm=LLMConfig(url=dead, model="fake", timeout_s=1, retries=0, backoff_s=0))
    res = run_interpret(planted, cfg, run="dead", embed=hash_embed, show_progress=False)
    desc = pd.read_parquet(res.path / "descriptions.parquet")
    marked = desc["describer"].str.startswith("extractive (llm")
    assert marked.sum() > 0 and not (desc["describer"] == "llm:fake").any()
    base = pd.read_parquet(res.path / "descriptions_extractive.parquet").set_index("feature")
    for row in desc[marked].itertuples():  # the fallback is the extractive description itself
        assert row.description == base.loc[row.feature, "description"]


def test_interpret_on_another_store_with_the_same_stream(planted: Workspace) -> None:
    import shutil

    shutil.copytree(planted.activations("planted"), planted.activations("copy"))
    res = run_interpret(
        planted, InterpretConfig(sae=SAE_RUN, activations="copy"), run="on-copy", embed=hash_embed, show_progress=False
    )
    assert res.manifest.extra["activations"] == "copy"
    a = pd.read_parquet(planted.interpret(SAE_RUN) / "features.parquet")
    b = pd.read_parquet(res.path / "features.parquet")
    pd.testing.assert_frame_equal(a, b)  # same activations → same interpretation
    with pytest.raises(BadInputError, match="activations/nope"):
        load_sae_context(planted, SAE_RUN, "nope")


def test_untrained_sae_control_is_computed_and_recovers_less(planted: Workspace) -> None:
    """The random-weight control runs through the same stage and is measured, not assumed: an untrained SAE of the
    same config recovers fewer rendered kinds with naming descriptions than the trained one."""
    from cxrlens.config import config_from_dict
    from cxrlens.interpret.readout import FindingReadout
    from cxrlens.interpret.recovery import feature_recovery
    from cxrlens.interpret.run import read_interpretation
    from cxrlens.sae.run import SAERunConfig, run_sae_untrained

    cfg = config_from_dict(SAERunConfig, json.loads((planted.sae(SAE_RUN) / "manifest.json").read_text())["config"])
    run_sae_untrained(planted, cfg, run="planted-untrained")
    run_interpret(planted, InterpretConfig(sae="planted-untrained"), embed=hash_embed, show_progress=False)
    trained = feature_recovery(*read_interpretation(planted, SAE_RUN), min_auc=0.8)
    control = feature_recovery(*read_interpretation(planted, "planted-untrained"), min_auc=0.8)
    assert trained["renderable_kinds"] == control["renderable_kinds"] > 0
    assert trained["recovered"] > control["recovered"]
    # the readout was fitted for both runs, so report metrics can be compared too
    assert FindingReadout.load(planted.interpret("planted-untrained")).weights_LF.shape[1] == 64
