"""The viewer in a real browser (Playwright driving Debian's headless chromium, offline): sort the feature browser,
open a feature and see its images and heatmaps, open a study and click a sentence to light up its evidence, and every
page loads with no request leaving the app and no script error. Skips (with the reason) where chromium or Playwright
is missing — ``make test`` installs chromium when it runs as root."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.viewer.conftest import INTERPRET, RICH

pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install 'cxrlens[viewer]')")

from tests.viewer.browser import browser, chromium, serve

pytestmark = pytest.mark.skipif(
    chromium() is None, reason="Debian chromium not installed (`apt-get install chromium`, as root; make test does it)"
)

# every image matching the selector (at least one) has loaded with a real width
ALL_LOADED = (
    "sel => { const imgs = [...document.querySelectorAll(sel)];"
    " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"
)


@pytest.fixture(scope="module")
def site(viewer_ws):
    """(base URL, browser, ids, request log, error log) for the module; requests and errors of every page are kept."""
    with serve(viewer_ws[0]) as base, browser(chromium()) as b:
        yield base, b, viewer_ws[1]


def _page(site, requests: list[str], errors: list[str]):
    _, b, _ = site
    page = b.new_page(viewport={"width": 1400, "height": 1000})
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return page


def _column(page, index: int) -> list[float | None]:
    cells = page.locator(f"table.features tbody tr td:nth-child({index})").all_inner_texts()
    return [None if c == "—" else float(c.replace(",", "")) for c in cells]


def test_feature_browser_sorts_and_opens_a_feature_with_its_images(site) -> None:
    base, _, ids = site
    requests: list[str] = []
    errors: list[str] = []
    page = _page(site, requests, errors)
    page.goto(f"{base}/features?run={INTERPRET}")
    page.wait_for_selector("table.features tbody tr")
    assert page.locator("table.features tbody tr").count() == 50
    assert "of 1,024" in page.locator("#count").inner_text()

    page.click("th[data-sort=auc]")  # sort by label AUC, high first
    page.wait_for_selector("th[data-sort=auc][aria-sort=descending]")
    auc = [v for v in _column(page, 6) if v is not None]
    assert auc == sorted(auc, reverse=True) and len(auc) > 10
    assert "sort=auc" in page.url and "order=desc" in page.url
    page.click("th[data-sort=auc]")  # again: low first
    page.wait_for_selector("th[data-sort=auc][aria-sort=ascending]")
    auc = [v for v in _column(page, 6) if v is not None]
    assert auc == sorted(auc)

    page.click("th[data-sort=n_active]")
    page.wait_for_selector("th[data-sort=n_active][aria-sort=descending]")
    first = page.locator("table.features tbody tr").first.get_attribute("data-feature")
    page.locator("table.features tbody tr").first.locator("a").click()
    page.wait_for_url(re.compile(rf"/feature/{INTERPRET}/{first}$"))
    page.wait_for_selector("#top-images img")
    for img in page.locator("#top-images img").all():
        img.scroll_into_view_if_needed()
    page.wait_for_function(ALL_LOADED, arg="#top-images img", timeout=20_000)
    assert page.locator("#top-images img").count() >= 1
    assert page.locator(".bars .bar-row").count() > 0 and page.locator(".hist-bar").count() == 12

    f = ids["heatmap_feature"]
    page.goto(f"{base}/feature/{INTERPRET}/{f}")
    page.wait_for_selector("#top-images canvas.overlay.heat.visible")
    n = page.locator("#top-images .tile").count()
    assert n == len(ids["top_ids"]) and page.locator("#top-images canvas.overlay.heat.visible").count() == n
    page.uncheck("#show-heat")
    assert page.locator("#top-images canvas.overlay.heat.visible").count() == 0
    assert not errors, errors
    assert all(u.startswith(base) or u.startswith(("data:", "blob:")) for u in requests), requests


def test_clicking_a_sentence_overlays_its_evidence(site) -> None:
    base, _, ids = site
    requests: list[str] = []
    errors: list[str] = []
    page = _page(site, requests, errors)
    image_id = ids["image_ids"][0]
    page.goto(f"{base}/study/{RICH}/{image_id}")
    page.wait_for_function(ALL_LOADED, arg="#study-image", timeout=20_000)
    overlay = page.locator("#study-overlay")
    assert "visible" not in (overlay.get_attribute("class") or "")
    assert page.locator(".reference").inner_text().strip()

    page.locator(".sentence").first.click()
    page.wait_for_selector("#study-overlay.visible")
    assert page.evaluate("document.getElementById('study-overlay').width") == 8  # the sentence's patch grid
    panel = page.locator("#evidence-panel")
    assert "Small right pleural effusion." in panel.inner_text()
    assert panel.locator(f"a[href='/feature/{INTERPRET}/{ids['heatmap_feature']}']").count() == 1
    assert page.locator(".sentence.pinned").count() == 1

    page.locator(".sentence").nth(1).hover()  # hovering another sentence shows its map
    page.wait_for_selector("#study-overlay.visible")
    page.locator("h1").hover()  # leaving falls back to the pinned sentence's map
    page.wait_for_selector("#study-overlay.visible")
    assert not errors, errors


def test_ground_truth_mask_toggles(site) -> None:
    base, _, ids = site
    errors: list[str] = []
    page = _page(site, [], errors)
    for image_id in ids["image_ids"]:
        page.goto(f"{base}/study/{RICH}/{image_id}")
        page.wait_for_selector(".report")
        if page.locator(".mask-btn").count():
            break
    else:
        pytest.fail("no study of the fixture has a drawn finding")
    page.locator(".mask-btn").first.click()
    page.wait_for_function(ALL_LOADED, arg="#mask-overlay.visible")
    page.locator(".mask-btn").first.click()
    page.wait_for_selector("#mask-overlay:not(.visible)", state="attached")
    assert not errors, errors


@pytest.mark.parametrize(
    ("path", "selector", "text"),
    [
        ("/", "section.card h3 a", RICH),
        (f"/studies?run={RICH}", "#study-list tbody tr", RICH),
        ("/search", "form #q", "Search"),
        ("/analysis", ".figures img", "analysis/viewer-fixture-analysis"),
        ("/upload", "#model", INTERPRET),
    ],
)
def test_every_page_loads_offline_without_errors(site, path, selector, text) -> None:
    base, _, _ = site
    requests: list[str] = []
    errors: list[str] = []
    page = _page(site, requests, errors)
    page.goto(base + path)
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector(selector, state="attached")
    assert text in page.locator("main").inner_text()
    if path == "/analysis":
        for img in page.locator(".figures img").all():
            img.scroll_into_view_if_needed()
        page.wait_for_function(ALL_LOADED, arg=".figures img", timeout=20_000)
    assert not errors, errors
    assert requests and all(u.startswith(base) or u.startswith(("data:", "blob:")) for u in requests), requests


def test_upload_page_reports_an_image(site, viewer_ws) -> None:
    base, _, ids = site
    errors: list[str] = []
    page = _page(site, [], errors)
    page.goto(f"{base}/upload")
    page.wait_for_selector("#file")
    image = Path(viewer_ws[0]) / "datasets" / "iu-phantom" / "images" / f"{ids['image_ids'][0]}.png"
    page.set_input_files("#file", str(image))
    page.click("button[type=submit]")
    page.wait_for_selector("#upload-result .report", timeout=60_000)
    assert "Findings" in page.locator("#upload-result").inner_text()
    assert not errors, errors


def test_search_page_shows_the_hits(site) -> None:
    base, _, _ = site
    requests: list[str] = []
    errors: list[str] = []
    page = _page(site, requests, errors)
    page.goto(f"{base}/search")
    page.fill("#q", "right pleural effusion")
    page.click("button[type=submit]")
    page.wait_for_selector("#hits .tile img", state="attached")
    assert page.locator("#hits .tile").count() == 24
    page.locator("#hits .tile img").first.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('#hits .tile img').naturalWidth > 0", timeout=20_000)
    assert "#1" in page.locator("#hits .tile").first.inner_text()
    assert not errors, errors
    assert all(u.startswith(base) or u.startswith(("data:", "blob:")) for u in requests), requests


def test_search_page_without_an_index_says_why(site, tmp_path) -> None:
    _, b, _ = site
    (tmp_path / "ws").mkdir()
    with serve(tmp_path / "ws") as base:
        page = b.new_page()
        page.goto(f"{base}/search")
        page.wait_for_selector("#search-absent")
        assert "cxrlens align index" in page.locator("#search-absent").inner_text()
