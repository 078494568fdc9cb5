"""The viewer's JSON API on a real (40-image demo) workspace with FastAPI's TestClient: every page's data, paging,
sorting and filtering done on the server, thumbnails cached atomically in the workspace, and the bad-input battery
(path traversal, symlinks out of the workspace, oversized and mistyped uploads, malformed query parameters, foreign
Host headers, an internal error) — each refused with one clear JSON line, never a stack trace."""

from __future__ import annotations

import io
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.main import get_command
from typer.testing import CliRunner

from cxrlens.cli import app as cli_app
from cxrlens.data.phantom.spec import LABEL_CHANNELS
from cxrlens.errors import BadInputError, CxrlensError
from cxrlens.viewer.app import create_app
from cxrlens.viewer.config import ViewerConfig
from cxrlens.workspace import Workspace
from tests.viewer.conftest import ALIGN, ANALYSIS, GRID, INTERPRET, REPORTS, RICH

BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def client(viewer_ws) -> TestClient:
    return TestClient(create_app(viewer_ws[0]), base_url=BASE, raise_server_exceptions=False)


def _error(r, status: int) -> str:
    """The one-line error of a refused request (asserting the status and the JSON shape)."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


# ------------------------------------------------------------------------------------------------ overview
def test_overview_lists_datasets_runs_and_headline_metrics(client) -> None:
    o = client.get("/api/overview").json()
    assert {"iu-phantom", "iu-xray"} <= {d["name"] for d in o["datasets"]}
    assert next(d for d in o["datasets"] if d["name"] == "iu-phantom")["phantom"] is True
    assert INTERPRET in {r["name"] for r in o["interpret"]}
    runs = {r["name"]: r for r in o["reports"]}
    assert {REPORTS, RICH} <= set(runs)
    metrics = runs[REPORTS]["metrics"]
    assert metrics["headline_metric"] and metrics["columns"]
    assert "cxrlens" in [row["system"] for row in metrics["rows"]]
    assert all(len(row["values"]) == len(metrics["columns"]) for row in metrics["rows"])
    assert runs[RICH]["metrics"] is None  # not evaluated
    assert f"analysis/{ANALYSIS}" in o["analysis"] and o["search_indexes"] == [ALIGN]


# ---------------------------------------------------------------------------------------- feature browser
def _page(client, **params):
    r = client.get(f"/api/interpret/{INTERPRET}/features", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_feature_pages_cover_the_table_once(client) -> None:
    first = _page(client, sort="feature", order="asc", limit=300)
    assert first["total"] == first["features"] == 1024 and len(first["rows"]) == 300
    ids = []
    for offset in range(0, 1024, 300):
        ids += [r["feature"] for r in _page(client, sort="feature", order="asc", offset=offset, limit=300)["rows"]]
    assert ids == list(range(1024))
    assert _page(client, offset=5000)["rows"] == []
    desc = _page(client, sort="feature", order="desc", limit=3)["rows"]
    assert [r["feature"] for r in desc] == [1023, 1022, 1021]


@pytest.mark.parametrize("column", ["auc", "frequency", "max", "n_active"])
def test_feature_sort_is_done_on_the_server(client, column) -> None:
    table = pd.read_parquet(Path(client.app.state.data.root) / "interpret" / INTERPRET / "features.parquet")
    for order in ("desc", "asc"):
        rows = _page(client, sort=column, order=order, limit=200)["rows"]
        values = [r[column] for r in rows if r[column] is not None]
        assert values == sorted(values, reverse=order == "desc")
        expected = table[column].sort_values(ascending=order == "asc").head(1).item()
        assert math.isclose(values[0], expected, rel_tol=1e-6)


def test_feature_filters(client) -> None:
    labels = client.get(f"/api/interpret/{INTERPRET}/labels").json()
    assert labels and labels == sorted(labels)
    label = labels[0]
    page = _page(client, label=label, limit=500)
    assert page["total"] > 0 and {r["best_label"] for r in page["rows"]} == {label}
    q = label.lower()[:5]
    page = _page(client, q=q.upper(), limit=500)
    assert page["total"] >= 1
    assert all(q in (r["description"] + " " + r["best_label"]).lower() for r in page["rows"])
    freq = _page(client, min_frequency=0.5, limit=500)
    assert all(r["frequency"] >= 0.5 for r in freq["rows"]) and freq["total"] < 1024
    undescribed = _page(client, described="false", limit=1)
    described = _page(client, described="true", limit=1)
    assert undescribed["total"] + described["total"] == 1024
    assert _page(client, q="no such text anywhere")["total"] == 0


# ------------------------------------------------------------------------------------------- feature page
def test_feature_page_has_images_heatmaps_labels_and_histogram(client, viewer_ws) -> None:
    f = viewer_ws[1]["heatmap_feature"]
    page = client.get(f"/api/interpret/{INTERPRET}/features/{f}").json()
    assert page["dataset"] == "iu-phantom" and page["grid"] == list(GRID) and page["heatmaps"] is True
    top = page["top_images"]
    assert [t["image_id"] for t in top] == viewer_ws[1]["top_ids"]
    acts = [t["activation"] for t in top]
    assert acts == sorted(acts, reverse=True) and acts[0] > 0
    for t in top:
        grid = t["heatmap"]
        assert len(grid) == GRID[0] and len(grid[0]) == GRID[1]
        flat = [v for row in grid for v in row]
        assert min(flat) >= 0 and max(flat) == 1.0
    assert page["non_activating"] and all(set(x) == {"image_id"} for x in page["non_activating"])
    assert {x["label"] for x in page["labels"]} >= {"Cardiomegaly", "Edema"}
    assert sum(page["histogram"]["counts"]) == len(top) + len(page["non_activating"])
    assert len(page["histogram"]["edges"]) == len(page["histogram"]["counts"]) + 1
    assert page["description"]["text"]
    other = client.get(f"/api/interpret/{INTERPRET}/features/0").json()
    assert other["heatmaps"] is False and all(t["heatmap"] is None for t in other["top_images"])


def test_top_image_thumbnails_are_served_and_cached_atomically(client, viewer_ws) -> None:
    root = viewer_ws[0]
    image_id = viewer_ws[1]["top_ids"][0]
    r = client.get(f"/api/images/iu-phantom/{image_id}", params={"size": 96})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert max(img.size) <= 96 and img.mode == "L"
    cached = [p for p in (root / ".viewer-cache").rglob("*") if p.is_file()]
    assert cached and all(p.suffix == ".png" for p in cached)  # no temporary files left beside them
    mtimes = {p: p.stat().st_mtime_ns for p in cached}
    again = client.get(f"/api/images/iu-phantom/{image_id}", params={"size": 96})
    assert again.content == r.content
    assert {p: p.stat().st_mtime_ns for p in cached} == mtimes  # served from the cache, not rewritten


# ------------------------------------------------------------------------------------------------- studies
def test_study_list_pages_and_filters(client, viewer_ws) -> None:
    ids = viewer_ws[1]["image_ids"]
    page = client.get(f"/api/reports/{RICH}/studies", params={"limit": 3}).json()
    assert page["total"] == len(ids) and [r["image_id"] for r in page["rows"]] == ids[:3]
    assert all(r["sentences"] == 3 for r in page["rows"])
    hit = client.get(f"/api/reports/{RICH}/studies", params={"q": ids[4].lower()}).json()
    assert [r["image_id"] for r in hit["rows"]] == [ids[4]]
    empty = client.get(f"/api/reports/{REPORTS}/studies").json()
    assert all(r["sentences"] == 0 for r in empty["rows"])  # the 40-image readout states nothing


def test_study_has_sentences_with_evidence_maps_reference_labels_and_truth(client, viewer_ws) -> None:
    image_id = viewer_ws[1]["image_ids"][0]
    s = client.get(f"/api/reports/{RICH}/studies/{image_id}").json()
    assert s["dataset"] == "iu-phantom" and s["interpret"] == INTERPRET and s["has_image"]
    findings = s["generated"]["findings"]
    assert [x["text"] for x in findings] == ["Small right pleural effusion.", "Heart size is mildly enlarged."]
    emap = findings[0]["evidence_map"]
    assert len(emap) == GRID[0] and max(max(row) for row in emap) == 1.0
    assert emap[40 // GRID[1]][40 % GRID[1]] == 1.0  # the peak stays where the sentence's map put it
    assert [e["feature"] for e in findings[0]["evidence"]] == [viewer_ws[1]["heatmap_feature"], 7]
    assert all("description" in e for e in findings[0]["evidence"])
    assert s["reference_text"] and set(s["labels"]) >= {"Cardiomegaly", "No Finding"}
    truths = [client.get(f"/api/reports/{RICH}/studies/{i}").json()["ground_truth"] for i in viewer_ws[1]["image_ids"]]
    with_masks = [t for t in truths if t and t["masks"]]
    assert with_masks and all(set(t["masks"]) <= set(LABEL_CHANNELS) for t in with_masks)


def test_ground_truth_mask_overlay(client, viewer_ws) -> None:
    for image_id in viewer_ws[1]["image_ids"]:
        truth = client.get(f"/api/reports/{RICH}/studies/{image_id}").json()["ground_truth"]
        if truth and truth["masks"]:
            break
    r = client.get(f"/api/masks/iu-phantom/{image_id}", params={"label": truth["masks"][0]})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(r.content))
    assert overlay.mode == "RGBA" and overlay.getextrema()[3][1] > 0  # something is drawn
    assert "label must be one of" in _error(client.get(f"/api/masks/iu-phantom/{image_id}?label=Bogus"), 400)
    assert "no ground-truth masks" in _error(client.get(f"/api/masks/iu-xray/{image_id}?label=Edema"), 404)


# ------------------------------------------------------------------------------------ analysis and search
def test_analysis_figures_and_tables(client) -> None:
    runs = {r["name"]: r for r in client.get("/api/analysis").json()}
    a = runs[ANALYSIS]
    assert a["figures"] == ["figure.png"] and a["tables"] == ["table.parquet"] and a["stage"] == "analysis.test"
    assert runs[INTERPRET]["figures"] == ["figures/overview.png"]
    fig = client.get(f"/api/files/analysis/{ANALYSIS}/figure.png")
    assert fig.status_code == 200 and fig.headers["content-type"] == "image/png" and fig.content[:4] == b"\x89PNG"
    table = client.get(f"/api/tables/analysis/{ANALYSIS}", params={"path": "table.parquet"}).json()
    assert table == {"columns": ["label", "auc"], "rows": [["Edema", 0.71], ["Cardiomegaly", 0.64]], "total": 2}


def test_search_returns_images_of_the_indexed_dataset(client) -> None:
    idx = client.get("/api/search/indexes").json()
    assert idx == {"indexes": [ALIGN], "reason": None}
    r = client.get("/api/search", params={"q": "large right pleural effusion", "k": 5}).json()
    assert r["run"] == ALIGN and r["dataset"] == "iu-phantom" and r["query"] == "large right pleural effusion"
    assert [h["rank"] for h in r["hits"]] == [1, 2, 3, 4, 5]
    scores = [h["score"] for h in r["hits"]]
    assert scores == sorted(scores, reverse=True)
    thumb = client.get(f"/api/images/{r['dataset']}/{r['hits'][0]['image_id']}", params={"size": 64})
    assert thumb.status_code == 200 and thumb.content[:4] == b"\x89PNG"
    assert "has no search index" in _error(client.get("/api/search", params={"q": "x", "run": "nope"}), 404)
    assert "must not be empty" in _error(client.get("/api/search", params={"q": "   "}), 400)
    assert "'q'" in _error(client.get("/api/search"), 400)
    assert "'k'" in _error(client.get("/api/search", params={"q": "x", "k": 0}), 400)


def test_search_without_an_index_says_why(tmp_path) -> None:
    (tmp_path / "ws").mkdir()
    client = TestClient(create_app(tmp_path / "ws"), base_url=BASE)
    idx = client.get("/api/search/indexes").json()
    assert idx["indexes"] == [] and "align index" in idx["reason"]
    assert "no alignment search index" in _error(client.get("/api/search", params={"q": "effusion"}), 404)
    o = client.get("/api/overview").json()
    assert o["datasets"] == o["interpret"] == o["reports"] == o["analysis"] == o["search_indexes"] == []


# --------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        (f"/api/files/analysis/{ANALYSIS}/..%2F..%2Fdatasets%2Fiu-phantom%2Fstudies.parquet", 400, "no '..'"),
        (f"/api/files/analysis/{ANALYSIS}/sub/..%2F..%2F..%2Fmanifest.json", 400, "no '..'"),
        ("/api/files/analysis/%2E%2E/figure.png", 400, "not a valid name"),
        (f"/api/files/analysis/{ANALYSIS}/.hidden.png", 400, "hidden"),
        (f"/api/files/analysis/{ANALYSIS}/%2Fetc%2Fpasswd", 400, "plain relative path"),
        (f"/api/files/analysis/{ANALYSIS}/table.parquet", 403, "not served"),
        ("/api/files/saes/iu-phantom-demo-patch/model.safetensors", 403, "not served"),
        (f"/api/files/analysis/{ANALYSIS}/missing.png", 404, "no file"),
        (f"/api/tables/analysis/{ANALYSIS}?path=..%2F..%2Fdatasets%2Fiu-phantom%2Fstudies.parquet", 400, "no '..'"),
        (f"/api/tables/analysis/{ANALYSIS}?path=figure.png", 403, "not a table"),
        (f"/api/tables/interpret/{INTERPRET}?path=features.parquet", 403, "not served"),
        ("/api/interpret/..%2Finterpret/features", 404, "no such page"),
        ("/api/interpret/bad%20name/features", 400, "not a valid name"),
        ("/api/interpret/nope/features", 404, "not found"),
        (f"/api/interpret/{INTERPRET}/features?limit=0", 400, "'limit'"),
        (f"/api/interpret/{INTERPRET}/features?limit=501", 400, "'limit'"),
        (f"/api/interpret/{INTERPRET}/features?limit=ten", 400, "'limit'"),
        (f"/api/interpret/{INTERPRET}/features?offset=-1", 400, "'offset'"),
        (f"/api/interpret/{INTERPRET}/features?order=up", 400, "'order'"),
        (f"/api/interpret/{INTERPRET}/features?sort=__class__", 400, "sort must be one of"),
        (f"/api/interpret/{INTERPRET}/features?described=maybe", 400, "'described'"),
        (f"/api/interpret/{INTERPRET}/features?min_auc=1.5", 400, "'min_auc'"),
        (f"/api/interpret/{INTERPRET}/features?min_frequency=nan", 400, "'min_frequency'"),
        (f"/api/interpret/{INTERPRET}/features?q={'x' * 201}", 400, "'q'"),
        (f"/api/interpret/{INTERPRET}/features/abc", 400, "'feature'"),
        (f"/api/interpret/{INTERPRET}/features/-1", 400, "≥ 0"),
        (f"/api/interpret/{INTERPRET}/features/99999", 404, "not in interpretation run"),
        (f"/api/reports/{RICH}/studies/no-such-image", 404, "has no report"),
        (f"/api/reports/{RICH}/studies?limit=-5", 400, "'limit'"),
        ("/api/images/iu-phantom/no-such-image", 404, "not in dataset"),
        ("/api/images/no-such-dataset/x", 404, "not found"),
        ("/api/images/iu-phantom/x?size=8", 400, "'size'"),
        ("/api/images/iu-phantom/x?size=99999", 400, "'size'"),
        ("/api/no/such/endpoint", 404, "no such page or endpoint"),
    ],
)
def test_bad_requests_get_one_clear_json_line(client, url, status, words) -> None:
    assert words in _error(client.get(url), status)


def test_wrong_method_is_a_json_405(client) -> None:
    _error(client.post("/api/overview"), 405)


def test_symlinks_out_of_the_workspace_are_refused(client, viewer_ws, tmp_path) -> None:
    root = viewer_ws[0]
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not for the client")
    link = root / "datasets" / "iu-phantom" / "leak.png"  # not under analysis/: the browser tests list those
    link.symlink_to(secret)
    try:
        assert "outside the workspace" in _error(client.get("/api/files/datasets/iu-phantom/leak.png"), 403)
    finally:
        link.unlink()


def test_an_image_path_outside_the_workspace_is_refused(client, viewer_ws, tmp_path) -> None:
    """A study table may name absolute image paths; the viewer serves only those inside the workspace."""
    root = viewer_ws[0]
    outside = tmp_path / "outside.png"
    Image.new("L", (8, 8)).save(outside)
    d = Workspace(root).dataset("viewer-outside")
    d.mkdir(parents=True)
    studies = pd.DataFrame({"image_id": ["x1"], "study_id": ["s1"], "image_path": [str(outside)], "split": ["test"]})
    studies.to_parquet(d / "studies.parquet")
    (d / "manifest.json").write_text(json.dumps({"stage": "data.test", "config": {}, "config_hash": "0" * 64}))
    assert "outside the workspace" in _error(client.get("/api/images/viewer-outside/x1"), 403)


def test_foreign_host_header_is_refused(client, viewer_ws) -> None:
    """A page on another site cannot reach the viewer through DNS rebinding: the Host must be the bound one."""
    r = client.get("/api/overview", headers={"host": "attacker.example"})
    assert "host 'attacker.example' not allowed" in _error(r, 400)
    assert "not allowed" in _error(client.get("/", headers={"host": "127.0.0.1.attacker.example:8765"}), 400)
    for ok in ("localhost:8765", "127.0.0.1", "[::1]:8765"):
        assert client.get("/api/overview", headers={"host": ok}).status_code == 200, ok
    exposed = TestClient(create_app(viewer_ws[0], ViewerConfig(host="0.0.0.0")), base_url=BASE)
    assert exposed.get("/api/overview", headers={"host": "my-server.lan:8765"}).status_code == 200


def test_internal_errors_are_generic_and_logged(viewer_ws, monkeypatch, caplog) -> None:
    app = create_app(viewer_ws[0])
    client = TestClient(app, base_url=BASE, raise_server_exceptions=False)

    def boom() -> dict:
        raise RuntimeError(f"secret detail {viewer_ws[0]}")

    monkeypatch.setattr(app.state.data, "overview", boom)
    r = client.get("/api/overview")
    message = _error(r, 500)
    assert "secret" not in r.text and str(viewer_ws[0]) not in r.text and "internal error" in message
    assert "secret detail" in caplog.text  # the traceback goes to the server log


# ------------------------------------------------------------------------------------------------- upload
def _png_bytes(size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (size, size), 128).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_refusals(viewer_ws) -> None:
    small = ViewerConfig(upload_limit_bytes=2000)
    client = TestClient(create_app(viewer_ws[0], small), base_url=BASE, raise_server_exceptions=False)
    url = f"/api/upload?model={INTERPRET}"
    png = {"content-type": "image/png"}
    assert "content type 'text/plain'" in _error(
        client.post(url, content=b"x", headers={"content-type": "text/plain"}), 415
    )
    assert "'(none)'" in _error(client.post(url, content=b"x"), 415)
    assert "2,000 bytes" in _error(client.post(url, content=os.urandom(5000), headers=png), 413)

    def chunks():  # no content-length: the limit holds while streaming
        for _ in range(10):
            yield b"\0" * 500

    assert "2,000 bytes" in _error(client.post(url, content=chunks(), headers=png), 413)
    assert "empty upload" in _error(client.post(url, content=b"", headers=png), 400)
    assert "not found" in _error(client.post("/api/upload?model=nope", content=b"x", headers=png), 404)
    assert "not a valid name" in _error(client.post("/api/upload?model=..", content=b"x", headers=png), 400)
    assert "'model'" in _error(client.post("/api/upload", content=b"x", headers=png), 400)
    off = TestClient(create_app(viewer_ws[0], ViewerConfig(uploads=False)), base_url=BASE)
    assert "disabled" in _error(off.post(url, content=_png_bytes(), headers=png), 403)


def test_upload_writes_a_report_for_a_new_image(client, viewer_ws) -> None:
    phantom = viewer_ws[0] / "datasets" / "iu-phantom" / "images" / f"{viewer_ws[1]['image_ids'][0]}.png"
    r = client.post(
        f"/api/upload?model={INTERPRET}", content=phantom.read_bytes(), headers={"content-type": "image/png"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == INTERPRET and set(body["generated"]) == {"findings", "impression", "dropped_contradictions"}
    assert body["text"].startswith("FINDINGS:")
    garbage = client.post(
        f"/api/upload?model={INTERPRET}", content=b"not an image", headers={"content-type": "image/png"}
    )
    assert "not a readable image" in _error(garbage, 400)


# ------------------------------------------------------------------------------------------- app and CLI
def test_pages_openapi_and_headers(client) -> None:
    for path in ("/", "/features", f"/feature/{INTERPRET}/3", f"/study/{RICH}/x", "/search", "/analysis", "/upload"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        assert "default-src 'self'" in r.headers["content-security-policy"]
    html = client.get("/").text
    assert "http://" not in html and "https://" not in html  # nothing from the internet
    for asset in ("/static/app.js", "/static/style.css"):
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text and "@import" not in text
    schema = client.get("/api/openapi.json").json()
    assert {
        "/api/overview",
        "/api/interpret/{run}/features",
        "/api/reports/{run}/studies/{image_id}",
        "/api/upload",
    } <= set(schema["paths"])
    assert client.get("/api/docs").status_code == 404  # Swagger UI would load from a CDN


def test_config_defaults_bind_localhost_and_the_cli_takes_them() -> None:
    cfg = ViewerConfig()
    assert cfg.host == "127.0.0.1" and cfg.port == 8765
    params = {p.name: p for p in get_command(cli_app).commands["view"].params}
    assert params["host"].default == cfg.host and params["port"].default == cfg.port
    assert params["page_size"].default == cfg.page_size and params["uploads"].default == cfg.uploads
    assert params["upload_limit_mb"].default * 2**20 == cfg.upload_limit_bytes
    for bad in ({"port": 70000}, {"page_size": 0}, {"thumb_size": 8}, {"cache_dir": "../x"}, {"upload_limit_bytes": 0}):
        with pytest.raises(BadInputError):
            ViewerConfig(**bad)


def test_a_missing_workspace_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(BadInputError, match="workspace directory not found"):
        create_app(tmp_path / "nope")


def test_the_cli_serves_the_workspace_on_localhost(viewer_ws) -> None:
    """``cxrlens view`` as a user runs it: binds 127.0.0.1 by default and answers the API until stopped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", "from cxrlens.cli import main; main()", "view", "-w", str(viewer_ws[0]), "--port"]
    proc = subprocess.Popen([*cmd, str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/overview", timeout=5) as r:
                    body = json.load(r)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the viewer did not start"
                time.sleep(0.5)
        assert body["workspace"] == str(viewer_ws[0])
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out and "Uvicorn running on http://127.0.0.1" in out


def test_the_cli_without_the_viewer_extra_says_what_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "cxrlens.viewer.app", None)  # as if FastAPI were not installed
    result = CliRunner().invoke(cli_app, ["view", "-w", str(tmp_path)])
    assert isinstance(result.exception, CxrlensError)
    assert "pip install 'cxrlens[viewer]'" in str(result.exception)
