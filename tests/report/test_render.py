"""Report rendering: text sections and evidence markers, JSON round trip without NaN, a self-contained HTML page
that parses, embeds its images, escapes untrusted text and survives missing images."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlens.report.compile import CompiledReport, Evidence, ReportSentence
from cxrlens.report.render import StudyView, evidence_marker, render_html, render_json, render_text, write_html


def _ev(feature, activation, threshold, confidence=0.8, heatmap=None):
    return {
        "feature": feature,
        "activation": activation,
        "threshold": threshold,
        "confidence": confidence,
        "heatmap": heatmap,
    }


def _report():
    effusion = {
        "text": "Small left pleural effusion.",
        "region": "pleura",
        "evidence": [_ev(123, 4.2, 2.0), _ev(77, 2.8, 2.0)],
    }
    return {
        "findings": [
            {
                "text": "Endotracheal tube in good position.",
                "region": "lines and tubes",
                "evidence": [_ev(5, 1.5, 1.0)],
            },
            effusion,
            {"text": "The heart is enlarged.", "region": "heart and mediastinum", "evidence": [_ev(300, 0.9, 0.6)]},
        ],
        "impression": [effusion],
        "dropped_contradictions": [
            {"text": "No pleural effusion.", "region": "pleura", "evidence": [_ev(9, 1.3, 1.0)]},
        ],
        "text": "FINDINGS: ... IMPRESSION: ...",
    }


# expected markers, written out by hand (activation / threshold, one decimal)
MARKERS = {
    "Endotracheal tube in good position.": "[f5 ×1.5]",
    "Small left pleural effusion.": "[f123 ×2.1, f77 ×1.4]",
    "The heart is enlarged.": "[f300 ×1.5]",
    "No pleural effusion.": "[f9 ×1.3]",
}


# ------------------------------------------------------------------------------------------------------- text
def test_text_has_sections_in_order_with_every_sentence_and_its_marker():
    text = render_text(_report())
    lines = text.splitlines()
    assert lines[0] == "FINDINGS:"
    i_imp = lines.index("IMPRESSION:")
    i_drop = next(i for i, line in enumerate(lines) if line.startswith("DROPPED"))
    assert 0 < i_imp < i_drop
    findings, impression, dropped = lines[1:i_imp], lines[i_imp + 1 : i_drop], lines[i_drop + 1 :]
    assert findings == [
        "  Endotracheal tube in good position.  [f5 ×1.5]",
        "  Small left pleural effusion.  [f123 ×2.1, f77 ×1.4]",
        "  The heart is enlarged.  [f300 ×1.5]",
    ]
    assert impression == ["  Small left pleural effusion.  [f123 ×2.1, f77 ×1.4]"]
    assert dropped == ["  No pleural effusion.  [f9 ×1.3]"]
    # every marker's features and ratios are those of the JSON
    report = _report()
    for s in report["findings"] + report["impression"] + report["dropped_contradictions"]:
        found = re.findall(r"f(\d+) ×([\d.]+)", MARKERS[s["text"]])
        assert [int(f) for f, _ in found] == [e["feature"] for e in s["evidence"]]
        assert [float(r) for _, r in found] == [round(e["activation"] / e["threshold"], 1) for e in s["evidence"]]


def test_text_without_evidence_is_plain_report():
    text = render_text(_report(), evidence=False, width=None)
    assert text == (
        "FINDINGS:\n"
        "Endotracheal tube in good position. Small left pleural effusion. The heart is enlarged.\n"
        "\n"
        "IMPRESSION:\n"
        "Small left pleural effusion.\n"
    )
    assert "[f" not in text and "No pleural effusion" not in text


def test_text_wraps_and_keeps_markers_whole():
    report = _report()
    report["findings"][1]["text"] = "Small left pleural effusion with adjacent basilar atelectasis and no pneumothorax."
    text = render_text(report, width=40)
    assert all(len(line) <= 40 for line in text.splitlines())
    lines = text.splitlines()
    assert lines[1:3] == ["  Endotracheal tube in good position.", "    [f5 ×1.5]"]  # did not fit: own line
    assert "    pneumothorax.  [f123 ×2.1, f77 ×1.4]" in lines  # fits after the last wrapped line
    flat = " ".join(line.strip() for line in text.splitlines())
    assert "Small left pleural effusion with adjacent basilar atelectasis and no pneumothorax." in flat


def test_empty_report_and_marker_edge_cases():
    assert render_text({"findings": [], "impression": []}) == "FINDINGS:\n  (none)\nIMPRESSION:\n  (none)\n"
    many = [_ev(f, 2.0, 1.0) for f in range(6)]
    assert evidence_marker(many) == "[f0 ×2.0, f1 ×2.0, f2 ×2.0, f3 ×2.0, +2]"
    assert evidence_marker(many, max_evidence=None).count("×") == 6
    # threshold missing (NaN written as null) or zero: the activation instead of a ratio
    assert evidence_marker([_ev(4, 0.531, None), _ev(8, 1.0, 0.0)]) == "[f4 a=0.53, f8 a=1]"
    assert evidence_marker([]) == ""
    assert evidence_marker([Evidence(3, 2.0, 1.0, 0.5)]) == "[f3 ×2.0]"  # compile's dataclass too


def test_compiled_report_object_renders_like_its_json():
    sig = np.full(14, np.nan, np.float32)
    s = ReportSentence("The heart is enlarged.", "heart and mediastinum", sig, [Evidence(300, 0.9, 0.6, 0.8, None)])
    report = CompiledReport([s], [s], [])
    assert render_text(report) == render_text(report.to_json())
    assert "[f300 ×1.5]" in render_text(report)


def test_malformed_report_names_the_item():
    bad = _report()
    bad["findings"][1]["evidence"][0].pop("feature")
    with pytest.raises(ValueError, match=r"findings\[1\]\.evidence\[0\]: no 'feature'"):
        render_text(bad)
    with pytest.raises(ValueError, match=r"impression\[0\]"):
        render_text({"findings": [], "impression": [{"region": "lungs"}]})
    with pytest.raises(TypeError):
        render_text("FINDINGS: nothing")


# ------------------------------------------------------------------------------------------------------- JSON
def test_json_round_trips_with_meta_and_no_nan():
    report = _report()
    report["findings"][0]["evidence"][0]["threshold"] = float("nan")
    report["findings"][2]["evidence"][0]["activation"] = np.float32(np.inf)
    text = render_json(report, image_path="img/a.png", run="sae-1", score=np.float32(0.5))
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back["image_path"] == "img/a.png" and back["run"] == "sae-1" and back["score"] == 0.5
    assert back["findings"][0]["evidence"][0]["threshold"] is None
    assert back["findings"][2]["evidence"][0]["activation"] is None
    expected = _report()
    expected["findings"][0]["evidence"][0]["threshold"] = None
    expected["findings"][2]["evidence"][0]["activation"] = None
    assert {k: back[k] for k in expected} == expected
    # the read-back row renders again and gives the same bytes
    assert render_json(back) == render_json(dict(reversed(list(back.items()))))
    assert "\n" not in render_json(back, indent=None)
    assert render_text(back).count("IMPRESSION:") == 1


def test_json_meta_cannot_overwrite_report():
    with pytest.raises(ValueError, match="text"):
        render_json(_report(), text="something else")
    assert json.loads(render_json({"findings": [], "image_id": "a"}, image_id="a"))["image_id"] == "a"


# ------------------------------------------------------------------------------------------------------- HTML
VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr", "col", "area", "base", "embed", "track"}


class _Checker(HTMLParser):
    """Balanced non-void tags; collects tags and attributes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.attrs = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append(dict(attrs))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append(dict(attrs))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _parse(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == [], (checker.errors, checker.stack)
    return checker


def _png(path, size=(64, 48), mode="L", value=128):
    Image.new(mode, size, value if mode == "L" else (value, 40, 40)).save(path)
    return path


def _data_uris(page):
    return re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)


def _studies(tmp_path):
    img = _png(tmp_path / "a.png", size=(900, 700))
    hm123 = _png(tmp_path / "hm123.png", size=(64, 64), mode="RGB", value=200)
    hm5 = _png(tmp_path / "hm5.png", size=(64, 64), mode="RGB", value=90)
    report = _report()
    report["findings"][0]["evidence"][0]["heatmap"] = str(hm5)  # from the evidence itself
    return [
        StudyView(
            image_id="study-1",
            image_path=img,
            report=report,
            reference="Small left effusion. Heart size is normal.",
            descriptions={123: "left pleural effusion", 77: "blunted costophrenic angle", 300: "cardiomegaly"},
            heatmaps={123: hm123},
            extra={"view": "PA", "split": "test"},
        ),
        StudyView(image_id="study-2", image_path=None, report={"findings": [], "impression": []}),
    ]


def test_html_parses_embeds_images_and_shows_all_evidence(tmp_path):
    summary = {"cxrlens": {"f1": 0.41, "bleu4": 0.052}, "random": {"f1": 0.2}}
    page = render_html(_studies(tmp_path), title="Demo reports", summary=summary)
    checker = _parse(page)
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page)
    assert "@import" not in page and "url(http" not in page
    uris = _data_uris(page)
    assert len(uris) == 3  # the study image + two heatmaps, each once although f123 is in findings and impression
    (src,) = [a["src"] for t, a in zip(checker.tags, checker.attrs, strict=True) if t == "img"]
    xray = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert xray.format == "PNG" and max(xray.size) == 320 and xray.size[0] > xray.size[1]  # downscaled, aspect kept
    for section in ("findings", "impression", "dropped_contradictions"):
        for s in _report()[section]:
            assert s["text"] in page
            for e in s["evidence"]:
                assert f"<td>f{e['feature']}</td>" in page
    assert "left pleural effusion" in page and "blunted costophrenic angle" in page
    assert "Small left effusion. Heart size is normal." in page
    assert "dropped: contradicted by stronger evidence" in page
    assert sum("dropped" in (a.get("class") or "") for t, a in zip(checker.tags, checker.attrs, strict=True)) == 1
    # hover targets: the effusion sentences point at f123's heatmap class, which the stylesheet defines
    hovers = [a["data-hm"] for a in checker.attrs if "data-hm" in a]
    assert hovers.count("hm-s0-f123") == 2 and "hm-s0-f5" in hovers
    assert ".hm-s0-f123{background-image:url(data:image/png;base64," in page
    # summary table: rows and columns of the nested mapping, missing cell as a dash
    assert "<th>f1</th>" not in page  # numeric columns are right-aligned
    assert '<th class="num">bleu4</th>' in page and '<td class="num">0.052</td>' in page
    assert "<td>random</td>" in page and '<td class="num">—</td>' in page
    assert "image unavailable: no image path" in page  # study-2


def test_html_escapes_untrusted_text(tmp_path):
    attack = "<script>alert(1)</script>"
    quote_attack = '" onmouseover="alert(2)'
    report = _report()
    report["findings"][1]["text"] = f"Effusion {attack}."
    report["findings"][1]["region"] = attack
    view = StudyView(
        image_id=attack,
        image_path=_png(tmp_path / "a.png"),
        report=report,
        reference=attack,
        descriptions={123: quote_attack, 77: attack},
        heatmaps={123: _png(tmp_path / "h.png", mode="RGB")},
        extra={attack: attack},
    )
    page = render_html([view, view], title=attack, summary=[{"system": attack, attack: 1.0}])
    checker = _parse(page)
    assert checker.tags.count("script") == 1  # only the page's own
    assert page.count("<script") == 1 and "alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'onmouseover="alert(2)' not in page
    assert all("onmouseover" not in a for a in checker.attrs)
    # the quote attack survived as text of the hover label, not as an attribute
    labels = [a["data-hm-label"] for a in checker.attrs if "data-hm-label" in a]
    assert any(quote_attack in label for label in labels)


def test_html_missing_and_corrupt_images_become_notes(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    report = _report()
    views = [
        StudyView("missing", tmp_path / "nope.png", report, heatmaps={123: tmp_path / "gone.png"}),
        StudyView("corrupt", corrupt, report),
        StudyView("bad report", None, {"findings": [{"evidence": []}]}),
    ]
    page = render_html(views, title="t")
    _parse(page)
    assert page.count("image unavailable:") == 3
    assert "nope.png" in page and "corrupt.png" in page
    assert "report unreadable: report findings[0]" in page
    assert page.count('<span class="note">unavailable: ') == 2  # f123's heatmap, in findings and impression
    assert _data_uris(page) == []
    err = capsys.readouterr().err
    assert "nope.png" in err and "corrupt.png" in err and "gone.png" in err and "report unreadable" in err


def test_summary_shapes(tmp_path):
    rows = [{"system": "cxrlens", "f1": 0.4123456}, {"system": "constant", "f1": float("nan"), "note": "baseline"}]
    for summary in (rows, pd.DataFrame(rows)):
        page = render_html([], title="t", summary=summary)
        _parse(page)
        assert "<th>system</th>" in page and '<th class="num">f1</th>' in page and "<th>note</th>" in page
        assert '<td class="num">0.4123</td>' in page and "<td>baseline</td>" in page
    flat = render_html([], title="t", summary={"studies": 10, "f1": 0.5})
    assert "<th>metric</th>" in flat and '<td class="num">10</td>' in flat
    with pytest.raises(ValueError, match="summary"):
        render_html([], title="t", summary={"a": {"f1": 1.0}, "b": 2.0})


def test_write_html_atomic_and_page_size(tmp_path):
    rng = np.random.default_rng(0)
    noisy = tmp_path / "noisy.png"
    Image.fromarray(rng.integers(0, 256, (640, 640), dtype=np.uint8)).save(noisy)
    page = render_html([StudyView(f"s{k}", noisy, _report()) for k in range(10)], title="ten")
    # ten studies of worst-case (incompressible) 640² images: each embedded at ≤ 320 px
    assert len(page) < 10 * 1.4 * 320 * 320 + 100_000
    out = write_html(tmp_path / "reports" / "report.html", page)
    assert out.read_text(encoding="utf-8") == page
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]
