"""Phantom datasets: interventional sampler, report → spec mapping, small builds into a scratch workspace."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from cxrlens.data.phantom import ImageSpec, read_label_masks
from cxrlens.data.phantom.datasets import (
    SPRITE_GRID,
    SPRITE_NEUTRAL,
    IUPhantomConfig,
    SpritesConfig,
    mesh_to_findings,
    run_data_build_iu_phantom,
    run_data_build_sprites,
    sample,
    sprite_report,
)
from cxrlens.data.schema import CHEXPERT_LABELS, finalize_study_table, validate_study_table
from cxrlens.files import file_sha256
from tests.conftest import run_cli


def test_interventional_sampler_fixes_exactly_the_requested_factors():
    fixed = {"pleural_effusion.present": 1, "pleural_effusion.side": "left", "view": "AP"}
    images, factors = sample(fixed, n=12, seed=3, size=48)
    assert images.shape == (12, 48, 48) and images.dtype == np.float32
    for key, val in fixed.items():
        assert (factors[key] == val).all()
    free = [k for k in SPRITE_GRID if k not in fixed and len(SPRITE_GRID[k]) > 1]
    varying = [k for k in free if factors[k].nunique() > 1]
    assert len(varying) >= 0.8 * len(free)  # everything else still varies
    assert factors["anatomy"].nunique() > 1
    again, _ = sample(fixed, n=12, seed=3, size=48)
    assert np.array_equal(images, again)


def test_sampler_rejects_unknown_factors_and_off_grid_values():
    with pytest.raises(ValueError, match="unknown factor"):
        sample({"pleural_effusion.colour": "red"}, n=2, size=32)
    with pytest.raises(ValueError, match="no grid value"):
        sample({"pleural_effusion.side": "up"}, n=2, size=32)


def test_vary_holds_every_other_factor_at_its_neutral_value():
    vary = ("rotation", "edema.present")
    _, factors = sample(None, n=40, seed=5, size=32, vary=vary, p_present=0.5)
    _, everything = sample(None, n=40, seed=5, size=32, p_present=0.5)
    for key in vary:  # the varied factors vary, with the same draws as when everything varies
        assert factors[key].nunique() > 1
        assert factors[key].tolist() == everything[key].tolist()
    for key, val in SPRITE_NEUTRAL.items():  # side/zone/severity of an absent kind are not drawn (nor recorded)
        if key not in vary and ("." not in key or key.endswith(".present")):
            assert (factors[key] == val).all(), key
    _, effusions = sample({"pleural_effusion.present": 1}, n=6, seed=0, size=32, vary=("rotation",))
    for attr in ("side", "severity"):  # a present kind whose attributes do not vary has them at the neutral value
        assert (effusions[f"pleural_effusion.{attr}"] == SPRITE_NEUTRAL[f"pleural_effusion.{attr}"]).all()
    assert everything["anatomy"].nunique() > 1 and everything["exposure"].nunique() > 1
    # nothing varies: the images differ by render noise only, far less than sprites with every factor free
    held, _ = sample(None, n=16, seed=1, size=32, vary=())
    free, _ = sample(None, n=16, seed=1, size=32)
    assert held.mean(0).std() > 0.05 and held.std(0).mean() < 0.5 * free.std(0).mean()
    # fixing a factor still wins over its neutral value
    _, fixed = sample({"exposure": 0.5}, n=4, seed=0, size=32, vary=("rotation",))
    assert (fixed["exposure"] == 0.5).all() and (fixed["scale"] == SPRITE_NEUTRAL["scale"]).all()


def test_vary_rejects_unknown_factors():
    with pytest.raises(ValueError, match="unknown factor"):
        sample(None, n=2, size=32, vary=("rotation", "colour"))
    with pytest.raises(ValueError, match="unknown factor"):
        SpritesConfig(vary=("colour",))
    with pytest.raises(ValueError, match="twice"):
        SpritesConfig(vary=("scale", "scale"))
    assert SpritesConfig().vary is None  # the default dataset varies every factor


def test_build_sprites_with_vary_records_it(workspace):
    res = run_data_build_sprites(workspace, SpritesConfig(n=8, size=32, vary=("scale", "anatomy")), workers=1)
    factors = pd.read_parquet(res.path / "factors.parquet")
    assert factors["scale"].nunique() > 1 and (factors["exposure"] == SPRITE_NEUTRAL["exposure"]).all()
    assert res.manifest.config["vary"] == ["scale", "anatomy"] and res.manifest.extra["vary"] == ["scale", "anatomy"]
    assert res.manifest.extra["held"]["rotation"] == 0.0 and "scale" not in res.manifest.extra["held"]
    default = run_data_build_sprites(workspace, SpritesConfig(n=8, size=32), name="all", workers=1)
    assert "vary" not in default.manifest.extra


def test_mesh_tags_become_findings_with_locations():
    rng = np.random.default_rng(0)
    found, used, unrendered = mesh_to_findings(
        [
            "Pleural Effusion/right/small",
            "Opacity/lung/base/left",
            "Spine/degenerative",
            "normal",
            "Calcified Granuloma/lung/upper lobe/right",
            "Cardiomegaly/borderline",
        ],
        rng,
    )
    eff = found["pleural_effusion"]
    assert (eff.side, eff.severity) == ("right", 0.25)
    opa = found["lung_opacity"]
    assert (opa.side, opa.zone) == ("left", "lower")
    les = found["lung_lesion"]
    assert (les.side, les.zone) == ("right", "upper") and les.severity < 0.5  # a granuloma is a nodule
    assert found["cardiomegaly"].uncertain and found["cardiomegaly"].intensity == 0.5
    assert unrendered == ["Spine/degenerative"] and "normal" not in used


def test_sprite_reports_name_what_is_drawn():
    spec = ImageSpec.from_row(
        {
            "pleural_effusion.present": 1,
            "pleural_effusion.side": "left",
            "pleural_effusion.zone": "none",
            "pleural_effusion.severity": 1.0,
            "pleural_effusion.intensity": 1.0,
            "pleural_effusion.uncertain": False,
        }
    )
    findings, impression = sprite_report(spec)
    assert "large left pleural effusion" in findings and "No pneumothorax" in findings
    assert "left pleural effusion" in impression
    assert sprite_report(ImageSpec())[1] == "No acute cardiopulmonary abnormality."


def test_build_sprites_small_is_complete_and_byte_identical_on_rebuild(workspace):
    cfg = SpritesConfig(n=10, size=64, seed=1, p_present=0.4)
    res = run_data_build_sprites(workspace, cfg, workers=1)
    root = res.path
    studies = pd.read_parquet(root / "studies.parquet")
    validate_study_table(studies)
    factors = pd.read_parquet(root / "factors.parquet")
    assert len(studies) == len(factors) == 10 and (root / "sample_grid.png").exists()
    for rec, frow in zip(studies.to_dict("records"), factors.to_dict("records"), strict=True):
        assert (root / rec["image_path"]).exists()
        masks = read_label_masks(root / "masks" / f"{rec['image_id']}.png")
        assert masks.shape == (13, 64, 64)
        spec = ImageSpec.from_row(frow)
        assert rec["No Finding"] == (0.0 if spec.findings else 1.0)
    hashes = {p.name: file_sha256(p) for p in sorted((root / "images").glob("*.png"))}
    res2 = run_data_build_sprites(workspace, cfg, force=True, workers=2)
    assert {p.name: file_sha256(p) for p in sorted((res2.path / "images").glob("*.png"))} == hashes
    assert run_data_build_sprites(workspace, cfg).reused


def test_a_new_renderer_version_rebuilds_phantom_datasets(workspace, monkeypatch):
    """Images drawn by an older renderer are not reused: the renderer version is part of the dataset's hash."""
    render = importlib.import_module("cxrlens.data.phantom.render")  # the module (the package exports the function)
    datasets = importlib.import_module("cxrlens.data.phantom.datasets")
    cfg = SpritesConfig(n=4, size=48, seed=2)
    assert not run_data_build_sprites(workspace, cfg, workers=1).reused
    assert run_data_build_sprites(workspace, cfg, workers=1).reused
    monkeypatch.setattr(datasets, "RENDERER_VERSION", render.RENDERER_VERSION + 1)  # as the builder reads it
    assert not run_data_build_sprites(workspace, cfg, workers=1).reused


def test_build_iu_phantom_keeps_reports_and_records_unrendered(workspace, monkeypatch):
    from cxrlens.data import iu_xray

    # a tiny study table laid out like load_iu_xray's (MeSH tags + labels as the labeler gives them)
    mesh = [
        ["normal"],
        ["Fractures, Bone/thoracic vertebrae"],
        ["Pleural Effusion/right/small", "Spine/degenerative"],
        ["Calcified Granuloma/lung/upper lobe/left"],
        ["Aorta/tortuous"],
        ["Implanted Medical Device/left", "Cardiomegaly/mild"],
    ]
    studies = finalize_study_table(
        pd.DataFrame(
            {
                "study_id": [f"CXR{i}" for i in range(6)],
                "image_id": [f"CXR{i}_IM-{i:04d}-1001" for i in range(6)],
                "patient_id": [f"CXR{i}" for i in range(6)],
                "view": ["PA", "AP", "LATERAL", "UNKNOWN", "PA", "PA"],
                "split": "train",
                "findings": [f"report {i} findings." for i in range(6)],
                "impression": [f"report {i} impression." for i in range(6)],
                "source": "iu-xray",
                "mesh_major": mesh,
                "Pneumothorax": [1.0, np.nan, 0.0, np.nan, np.nan, np.nan],
                "Fracture": [np.nan, 1.0, np.nan, np.nan, np.nan, np.nan],
                "Edema": [np.nan, np.nan, -1.0, np.nan, np.nan, np.nan],
            }
        )
    )
    fake = iu_xray.IUXrayTables(reports=pd.DataFrame(), studies=studies, errors=(), inputs=())
    monkeypatch.setattr(
        importlib.import_module("cxrlens.data.phantom.datasets"), "load_iu_xray", lambda config=None: fake
    )

    res = run_data_build_iu_phantom(workspace, IUPhantomConfig(size=48, seed=0), workers=1)
    out = pd.read_parquet(res.path / "studies.parquet")
    factors = pd.read_parquet(res.path / "factors.parquet")
    assert len(out) == 6 and out["image_id"].tolist() == factors["image_id"].tolist()
    assert out["findings"].tolist() == studies["findings"].tolist()  # the real report text is the reference
    assert {"unrendered", "mesh_used", "labels_used", *(f"report.{lab}" for lab in CHEXPERT_LABELS)} <= set(factors)
    assert (out["source"] == "iu-phantom").all() and set(out["view"]) <= {"PA", "AP"}
    assert res.manifest.extra["report_labels"] == "load_iu_xray"
    f0, f1, f2, f3, f4, f5 = (factors.iloc[k] for k in range(6))
    assert f0["pneumothorax.present"] == 1 and "Pneumothorax" in list(f0["labels_used"])
    # a vertebral fracture is named by an unrendered tag: no rib fracture is invented from the label
    assert f1["fracture.present"] == 0 and list(f1["unrendered"]) == ["Fractures, Bone/thoracic vertebrae"]
    assert f2["edema.present"] == 1 and f2["edema.uncertain"] and f2["edema.intensity"] == 0.5
    assert out.iloc[2]["Edema"] == -1.0 and out.iloc[0]["Pneumothorax"] == 1.0
    assert (f2["pleural_effusion.side"], f2["pleural_effusion.severity"]) == ("right", 0.25)
    assert (f3["lung_lesion.side"], f3["lung_lesion.zone"]) == ("left", "upper")
    assert list(f4["unrendered"]) == ["Aorta/tortuous"] and np.isnan(out.iloc[4]["No Finding"])
    assert f5["pacemaker.side"] == "left" and f5["cardiomegaly.severity"] == 0.25
    assert out["view"].tolist() == ["PA", "AP", "PA", "PA", "PA", "PA"]  # lateral ids get a frontal phantom
    # the drawn-truth labels agree with the masks
    for rec in out.to_dict("records"):
        masks = read_label_masks(res.path / "masks" / f"{rec['image_id']}.png")
        assert masks.any() == (rec["No Finding"] != 1.0) or np.isnan(rec["No Finding"])


def test_cli_builds_sprites(tmp_path):
    proc = run_cli("data", "build", "sprites", "--n", "6", "--size", "48", "--workers", "1", "-w", str(tmp_path / "w"))
    assert proc.returncode == 0, proc.stderr
    assert "cxr-sprites" in proc.stdout and (tmp_path / "w" / "datasets" / "cxr-sprites" / "factors.parquet").exists()
    common = ("--n", "6", "--size", "32", "--workers", "1", "-w", str(tmp_path / "w"), "--name", "few")
    bad = run_cli("data", "build", "sprites", "--vary", "rotation,colour", *common)
    assert bad.returncode == 2 and "colour" in bad.stderr
    proc = run_cli("data", "build", "sprites", "--vary", "rotation, scale", *common)
    assert proc.returncode == 0, proc.stderr
    factors = pd.read_parquet(tmp_path / "w" / "datasets" / "few" / "factors.parquet")
    assert (factors["exposure"] == SPRITE_NEUTRAL["exposure"]).all() and factors["rotation"].nunique() > 1
