"""Screenshots of the viewer for the docs, taken with Playwright and Debian's chromium from a real workspace.

    python -m tests.viewer.screenshots --workspace /tmp/viewer-ws [--out docs/img]

Writes ``viewer-overview.png``, ``viewer-features.png`` (sorted by label AUC, described features),
``viewer-feature.png`` (the most frequent described feature that has heatmaps), ``viewer-study.png`` (a study whose
first evidence-mapped sentence is clicked) and ``viewer-analysis.png``. Everything is served locally; nothing is
fetched from the internet.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from tests.viewer.browser import browser, chromium, serve

VIEWPORT = {"width": 1440, "height": 900}


def _json(base: str, path: str, **params: object) -> dict:
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=60) as r:  # the local viewer only
        return json.load(r)


def _pick_feature(base: str, run: str) -> int:
    """The most frequent described feature with stored heatmaps (else the most frequent described one)."""
    page = _json(base, f"/api/interpret/{run}/features", sort="frequency", described="true", limit=200)
    if not page["rows"]:
        page = _json(base, f"/api/interpret/{run}/features", sort="frequency", limit=1)
    for row in page["rows"]:
        if _json(base, f"/api/interpret/{run}/features/{row['feature']}")["heatmaps"]:
            return int(row["feature"])
    return int(page["rows"][0]["feature"])


def _pick_study(base: str, run: str) -> str | None:
    """A study of ``run`` whose report has a sentence with an evidence map and ground-truth masks if possible."""
    fallback = None
    page = _json(base, f"/api/reports/{run}/studies", limit=300)
    for row in page["rows"]:
        if row["sentences"] < 2:
            continue
        s = _json(base, f"/api/reports/{run}/studies/{urllib.parse.quote(row['image_id'], safe='')}")
        if any(x["evidence_map"] for x in s["generated"]["findings"] + s["generated"]["impression"]):
            if s["ground_truth"] and s["ground_truth"]["masks"]:
                return row["image_id"]
            fallback = fallback or row["image_id"]
    return fallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--interpret", default="", help="interpretation run to show (default: the most described)")
    args = parser.parse_args()
    exe = chromium()
    if exe is None:
        sys.exit("chromium not found (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with serve(args.workspace) as base, browser(exe) as b:
        page = b.new_page(viewport=VIEWPORT)
        overview = _json(base, "/api/overview")
        interp = args.interpret or max(overview["interpret"], key=lambda r: r.get("described") or 0)["name"]
        reports = next((r["name"] for r in overview["reports"] if r["interpret"] == interp), None)

        def shot(path: str, name: str, ready: str, full_page: bool = False) -> None:
            page.goto(base + path)
            page.wait_for_selector("body[data-ready='1']")
            page.wait_for_selector(ready, state="attached")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(args.out / name), full_page=full_page)
            print(f"wrote {args.out / name}")

        shot("/", "viewer-overview.png", "section.card")
        shot(
            f"/features?run={interp}&sort=auc&order=desc&described=true",
            "viewer-features.png",
            "table.features",
        )
        feature = _pick_feature(base, interp)
        shot(f"/feature/{interp}/{feature}", "viewer-feature.png", "#top-images img")
        if reports:
            image_id = _pick_study(base, reports)
            if image_id:
                page.goto(f"{base}/study/{reports}/{urllib.parse.quote(image_id, safe='')}")
                page.wait_for_selector(".sentence.has-map")
                page.wait_for_load_state("networkidle")
                mask = page.locator(".mask-btn")
                if mask.count():
                    mask.first.click()
                    page.wait_for_load_state("networkidle")
                page.locator(".sentence.has-map").first.click()
                page.wait_for_selector("#study-overlay.visible")
                page.screenshot(path=str(args.out / "viewer-study.png"))
                print(f"wrote {args.out / 'viewer-study.png'}")
        shot("/analysis", "viewer-analysis.png", "main h1")


if __name__ == "__main__":
    main()
