"""Compiled reports for people: plain text, JSON, and one self-contained HTML page.

Every renderer works from the **JSON form** of a report (:meth:`cxrlens.report.compile.CompiledReport.to_json`, or
a row read back from ``reports/<run>/reports.jsonl``)::

    {"findings":   [{"text": str, "region": str,
                     "evidence": [{"feature": int, "activation": float, "threshold": float,
                                   "confidence": float, "heatmap": str | None}, ...]}, ...],
     "impression": [...same shape...],
     "dropped_contradictions": [...same shape...],   # optional
     "text": "FINDINGS: ...\\nIMPRESSION: ..."}       # ignored: rendered from the sentences

A :class:`~cxrlens.report.compile.CompiledReport` itself is accepted too. Other keys (image id, model run …) are
ignored by the text and HTML renderers and kept by :func:`render_json`. Numbers may be ``None`` (NaN written as
``null``); they render as "—".

The evidence marker after a sentence, e.g. ``[f123 ×2.1, f77 ×1.4]``, lists the sentence's features, strongest
first as stored, each with activation / threshold (``f12 a=0.53`` when the threshold is missing or not positive),
at most ``max_evidence`` of them then ``+N``.

The HTML page (:func:`render_html`) needs nothing outside itself: images are downscaled PNG data URIs, CSS and the
few lines of JS are inline. Each sentence is a ``<details>`` element: click it for its evidence (feature,
description, activation, threshold, ratio, confidence, heatmap overlay); hovering or focusing it shows the
strongest feature's heatmap over the study image. Without JS everything but the hover still works.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxrlens.console import warn_line
from cxrlens.data.images import load_image
from cxrlens.files import atomic_write_text

__all__ = [
    "StudyView",
    "evidence_marker",
    "render_html",
    "render_json",
    "render_text",
    "write_html",
]

SECTIONS = ("findings", "impression", "dropped_contradictions")


# ---------------------------------------------------------------------------------------------- report parsing
def _as_report(report_json: Any) -> Mapping:
    if hasattr(report_json, "to_json") and not isinstance(report_json, Mapping):
        report_json = report_json.to_json()
    if not isinstance(report_json, Mapping):
        raise TypeError(f"report must be a mapping (CompiledReport.to_json()), got {type(report_json).__name__}")
    return report_json


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"report {where}: not a number ({value!r})") from None


def _evidence(ev: Any, where: str) -> dict:
    """One evidence item (a mapping or an :class:`~cxrlens.report.compile.Evidence`), checked and normalised."""
    if dataclasses.is_dataclass(ev) and not isinstance(ev, type):
        ev = dataclasses.asdict(ev)
    if not isinstance(ev, Mapping) or ev.get("feature") is None:
        raise ValueError(f"report {where}: no 'feature'")
    try:
        feature = int(ev["feature"])
    except (TypeError, ValueError):
        raise ValueError(f"report {where}: feature is not an integer ({ev['feature']!r})") from None
    heatmap = ev.get("heatmap")
    return {
        "feature": feature,
        "activation": _number(ev.get("activation"), where + ".activation"),
        "threshold": _number(ev.get("threshold"), where + ".threshold"),
        "confidence": _number(ev.get("confidence"), where + ".confidence"),
        "heatmap": None if heatmap in (None, "") else str(heatmap),
        "contribution": _number(ev.get("contribution"), where + ".contribution"),
    }


def _sections(report_json: Any) -> dict[str, list[dict]]:
    """Checked, normalised sentences of each section: ``{"findings": [{"text", "region", "evidence"}], ...}``.

    Raises ``ValueError`` naming the first malformed item (``findings[2].evidence[0]: no 'feature'``)."""
    report = _as_report(report_json)
    out: dict[str, list[dict]] = {}
    for section in SECTIONS:
        items = report.get(section) or []
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise ValueError(f"report {section}: expected a list of sentences, got {type(items).__name__}")
        sentences = []
        for i, item in enumerate(items):
            where = f"{section}[{i}]"
            if not isinstance(item, Mapping) or not isinstance(item.get("text"), str):
                raise ValueError(f"report {where}: expected an object with a 'text' string")
            evidence = [_evidence(ev, f"{where}.evidence[{j}]") for j, ev in enumerate(item.get("evidence") or [])]
            region = item.get("region")
            sentences.append(
                {"text": item["text"], "region": "" if region is None else str(region), "evidence": evidence}
            )
        out[section] = sentences
    return out


def _ratio(ev: Mapping) -> float | None:
    a, t = ev.get("activation"), ev.get("threshold")
    if a is None or t is None or not math.isfinite(a) or not math.isfinite(t) or t <= 0:
        return None
    return a / t


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}g}"


def _marker_item(ev: Mapping) -> str:
    if ev.get("contribution") is not None:  # finding-readout evidence: the feature's push on the finding's logit
        return f"f{ev['feature']} +{ev['contribution']:.1f}"
    r = _ratio(ev)
    if r is not None:
        return f"f{ev['feature']} ×{r:.1f}" if abs(r) < 100 else f"f{ev['feature']} ×{r:.0f}"
    return f"f{ev['feature']} a={_fmt(ev.get('activation'), 2)}"


def evidence_marker(evidence: Sequence[Any], *, max_evidence: int | None = 4) -> str:
    """Compact marker of a sentence's evidence: ``[f123 ×2.1, f77 ×1.4, +3]`` (feature id and activation /
    threshold, in stored order) or, for finding-readout evidence, ``[f123 +2.4, …]`` (the feature's contribution
    to the finding's logit); ``""`` when there is none. ``max_evidence=None`` lists all.

    ``evidence``: the sentence's JSON evidence items (or :class:`~cxrlens.report.compile.Evidence` objects)."""
    if not evidence:
        return ""
    evidence = [_evidence(ev, f"evidence[{j}]") for j, ev in enumerate(evidence)]
    shown = list(evidence) if max_evidence is None else list(evidence)[: max(max_evidence, 1)]
    parts = [_marker_item(ev) for ev in shown]
    if len(evidence) > len(shown):
        parts.append(f"+{len(evidence) - len(shown)}")
    return "[" + ", ".join(parts) + "]"


# ------------------------------------------------------------------------------------------------------- text
def _wrap(text: str, width: int | None, indent: str, hang: str) -> list[str]:
    if width is None:
        return [indent + text]
    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=hang, break_on_hyphens=False) or [indent]


def render_text(
    report_json: Any,
    *,
    evidence: bool = True,
    width: int | None = 100,
    max_evidence: int | None = 4,
) -> str:
    """A report as radiology-style plain text.

    With ``evidence=True`` (for a terminal): one sentence per line under ``FINDINGS:`` and ``IMPRESSION:``, each
    followed by its :func:`evidence_marker`, then the sentences dropped as contradictions, if any::

        FINDINGS:
          Small left pleural effusion.  [f123 ×2.1, f77 ×1.4]
        IMPRESSION:
          Small left pleural effusion.  [f123 ×2.1, f77 ×1.4]
        DROPPED AS CONTRADICTED:
          No pleural effusion.  [f9 ×1.2]

    With ``evidence=False``: the report as a radiologist writes it, ``FINDINGS:`` and ``IMPRESSION:`` paragraphs
    of the sentences, no markers, no dropped sentences. An empty section reads ``(none)``.

    Args:
        report_json: ``CompiledReport.to_json()`` or a ``reports.jsonl`` row (see the module docstring).
        width: wrap lines to this many characters (``None``: never wrap).
        max_evidence: features listed per marker before ``+N``.

    Raises:
        ValueError: naming the first malformed sentence or evidence item.
    """
    secs = _sections(report_json)
    lines: list[str] = []
    titles = {"findings": "FINDINGS:", "impression": "IMPRESSION:"}
    if not evidence:
        for section, title in titles.items():
            body = " ".join(s["text"].strip() for s in secs[section]) or "(none)"
            if lines:
                lines.append("")
            lines.append(title)
            lines.extend(_wrap(body, width, "", ""))
        return "\n".join(lines) + "\n"
    titles["dropped_contradictions"] = "DROPPED AS CONTRADICTED:"
    for section, title in titles.items():
        sentences = secs[section]
        if section == "dropped_contradictions" and not sentences:
            continue
        lines.append(title)
        if not sentences:
            lines.append("  (none)")
        for s in sentences:
            wrapped = _wrap(s["text"].strip(), width, "  ", "    ")
            marker = evidence_marker(s["evidence"], max_evidence=max_evidence)
            if marker:
                if width is None or len(wrapped[-1]) + 2 + len(marker) <= width:
                    wrapped[-1] += "  " + marker
                else:
                    wrapped.append("    " + marker)
            lines.extend(wrapped)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------- JSON
def _jsonable(obj: Any) -> Any:
    """Plain JSON values: NaN/±inf → None, numpy scalars/arrays → Python, paths → str, tuples/sets → lists."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_jsonable(v) for v in obj), key=repr)
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def render_json(report_json: Any, /, *, indent: int | None = 2, **meta: Any) -> str:
    """A report as JSON text with ``meta`` (image path, model run …) merged in at the top level.

    Keys are sorted (the same report always gives the same bytes), NaN and ±inf become ``null``, numpy values
    become plain numbers. ``indent=None`` gives one line (a ``reports.jsonl`` row). No trailing newline.

    Raises:
        ValueError: a ``meta`` key that the report already has with a different value.
        TypeError: a value JSON cannot hold.
    """
    report = dict(_as_report(report_json))
    clash = sorted(k for k in set(meta) & set(report) if _jsonable(meta[k]) != _jsonable(report[k]))
    if clash:
        raise ValueError(f"render_json: meta keys {clash} would overwrite different report values")
    report.update(meta)
    return json.dumps(_jsonable(report), indent=indent, sort_keys=True, ensure_ascii=False, allow_nan=False)


# ------------------------------------------------------------------------------------------------------- HTML
@dataclasses.dataclass(frozen=True)
class StudyView:
    """One study on the HTML page.

    Attributes:
        image_id: shown as the study's heading (any text; escaped).
        image_path: the X-ray (PNG, JPEG or DICOM), or ``None``; unreadable → an "image unavailable" note.
        report: the generated report's JSON form (see the module docstring).
        reference: the reference (radiologist's) report text, or ``None``.
        descriptions: feature id → description of the feature, shown in the evidence tables.
        heatmaps: feature id → heatmap overlay image (PNG/JPEG); falls back to the evidence's ``heatmap`` path.
        extra: shown under the heading as ``key: value`` (view, split, labels …).
    """

    image_id: str
    image_path: str | Path | None
    report: Mapping[str, Any]
    reference: str | None = None
    descriptions: Mapping[int, str] = dataclasses.field(default_factory=dict)
    heatmaps: Mapping[int, str | Path] = dataclasses.field(default_factory=dict)
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _png_data_uri(img: Any, max_side: int, *, palette: bool = False) -> tuple[str, int, int]:
    """A PIL image → (PNG data URI, width, height), downscaled so its longer side is at most ``max_side``;
    ``palette``: colour reduced to 256 colours (a heatmap overlay: ~4× smaller, banding barely visible)."""

    img = img.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if palette:
        img = img.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), img.width, img.height


def _load_xray(path: str | Path, max_side: int) -> tuple[str, int, int]:

    gray = load_image(path)  # (H, W) float32 in [0, 1]; PNG, JPEG and DICOM alike
    return _png_data_uri(Image.fromarray(np.round(gray * 255.0).astype(np.uint8), mode="L"), max_side)


def _load_overlay(path: str | Path, max_side: int) -> tuple[str, int, int]:

    with Image.open(path) as img:
        img.load()
        return _png_data_uri(img.convert("RGBA" if "A" in img.getbands() else "RGB"), max_side, palette=True)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


_CSS = """
:root{--fg:#1d232a;--mute:#5f6b76;--line:#d6dce2;--bg:#f5f7f9;--card:#fff;--acc:#0b5cad;--warn:#a3320b}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
margin:0;padding:1rem 1.5rem}
h1{font-size:1.35rem;margin:.2rem 0 1rem}
h2{font-size:1.05rem;margin:0}
h3{font-size:.9rem;margin:.2rem 0 .3rem}
h4{font-size:.72rem;letter-spacing:.06em;text-transform:uppercase;color:var(--mute);margin:.6rem 0 .2rem}
nav{margin:0 0 1rem;color:var(--mute)}
nav a{margin-right:.7rem;color:var(--acc)}
table{border-collapse:collapse}
th,td{border-bottom:1px solid var(--line);padding:.25rem .55rem;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.summary{background:var(--card);border:1px solid var(--line);border-radius:6px;margin-bottom:1.2rem;overflow-x:auto}
.study{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.9rem 1rem;margin-bottom:1.2rem}
.meta{color:var(--mute);font-size:.85rem;margin:.15rem 0 .6rem}
.meta span{margin-right:1rem}
.cols{display:grid;grid-template-columns:minmax(180px,340px) minmax(0,1.3fr) minmax(0,1fr);gap:1.2rem}
@media (max-width:900px){.cols{grid-template-columns:1fr}}
.view{position:relative;background:#000;border-radius:4px;overflow:hidden;line-height:0}
.view img{width:100%;height:auto;display:block}
.overlay{position:absolute;inset:0;background:no-repeat center/contain;display:none}
.overlay.hm{display:block}
.caption{color:var(--mute);font-size:.8rem;min-height:1.2em;margin-top:.25rem}
.unavailable{background:#fff4ef;color:var(--warn);border:1px dashed var(--warn);border-radius:4px;padding:1.5rem .7rem;
line-height:1.4;word-break:break-word}
details.sent{border-left:3px solid transparent;padding:.1rem .4rem;margin:.1rem 0}
details.sent:hover,details.sent[open]{border-left-color:var(--acc);background:#f0f5fb}
details.sent summary{cursor:pointer;list-style:none}
details.sent summary::-webkit-details-marker{display:none}
details.sent summary::before{content:"\\25B8";color:var(--mute);display:inline-block;width:1em}
details.sent[open] summary::before{content:"\\25BE"}
.region{font-size:.7rem;color:var(--mute);border:1px solid var(--line);border-radius:3px;
padding:0 .25rem;margin-left:.3rem}
.marker{font:.78rem ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:var(--mute);margin-left:.35rem}
details.dropped summary .text{text-decoration:line-through;color:var(--mute)}
.tag{font-size:.7rem;color:var(--warn);border:1px solid var(--warn);border-radius:3px;padding:0 .25rem;
margin-left:.3rem}
.ev{margin:.35rem 0 .5rem 1em;font-size:.85rem}
.ev td.desc{max-width:22rem}
.thumb{display:block;width:96px;background:no-repeat center/contain;border-radius:3px}
.none{color:var(--mute);font-style:italic}
.ref{white-space:pre-wrap}
.note{color:var(--warn);font-size:.85rem}
"""

# hovering/focusing a sentence shows its strongest feature's heatmap over the study image; only textContent and
# class names built by the renderer are set (no HTML is ever inserted)
_JS = """
document.querySelectorAll('details.sent[data-hm]').forEach(function (d) {
  var study = d.closest('.study');
  var overlay = study && study.querySelector('.overlay');
  var caption = study && study.querySelector('.caption');
  if (!overlay) { return; }
  var rest = caption ? caption.textContent : '';
  function on() { overlay.className = 'overlay hm ' + d.getAttribute('data-hm');
    if (caption) { caption.textContent = d.getAttribute('data-hm-label'); } }
  function off() { overlay.className = 'overlay'; if (caption) { caption.textContent = rest; } }
  d.addEventListener('mouseenter', on); d.addEventListener('mouseleave', off);
  d.addEventListener('focusin', on); d.addEventListener('focusout', off);
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _summary_rows(summary: Any) -> tuple[list[str], list[list[Any]]]:
    """Normalise the summary table input to (header, rows) — see :func:`render_html` for the shapes."""
    if hasattr(summary, "to_dict") and not isinstance(summary, Mapping):  # a pandas DataFrame
        summary = summary.to_dict(orient="records")
    if isinstance(summary, Mapping):
        values = list(summary.values())
        if values and all(isinstance(v, Mapping) for v in values):
            columns: list[str] = []
            for v in values:
                columns += [str(k) for k in v if str(k) not in columns]
            rows = [
                [name] + [dict((str(k), x) for k, x in v.items()).get(c) for c in columns]
                for name, v in summary.items()
            ]
            return ["", *columns], rows
        if any(isinstance(v, Mapping) for v in values):
            raise ValueError("summary: mix of nested and flat values; give {row: {column: value}} or {metric: value}")
        return ["metric", "value"], [[k, v] for k, v in summary.items()]
    if isinstance(summary, Sequence) and not isinstance(summary, (str, bytes)):
        if not all(isinstance(r, Mapping) for r in summary):
            raise ValueError("summary: a list summary must hold one mapping (column → value) per row")
        columns = []
        for r in summary:
            columns += [str(k) for k in r if str(k) not in columns]
        return columns, [[dict((str(k), x) for k, x in r.items()).get(c) for c in columns] for r in summary]
    raise ValueError(f"summary: expected a mapping or a list of row mappings, got {type(summary).__name__}")


def _cell(value: Any) -> tuple[str, bool]:
    """(escaped text, is numeric) of one summary cell."""
    if value is None:
        return "—", False
    if isinstance(value, (bool, np.bool_)):
        return _e(value), False
    if isinstance(value, (int, np.integer)):
        return _e(int(value)), True
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return _e(_fmt(v, 4)), math.isfinite(v)
    return _e(value), False


def _summary_html(summary: Any) -> str:
    header, rows = _summary_rows(summary)
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [bool(col) and all(c[1] or c[0] == "—" for c in col) for col in zip(*cells, strict=True)] if cells else []
    out = ['<section class="summary"><table><thead><tr>']
    for i, h in enumerate(header):
        cls = ' class="num"' if i < len(numeric) and numeric[i] else ""
        out.append(f"<th{cls}>{_e(h)}</th>")
    out.append("</tr></thead><tbody>")
    for row in cells:
        out.append("<tr>")
        for i, (text, _) in enumerate(row):
            cls = ' class="num"' if numeric[i] else ""
            out.append(f"<td{cls}>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table></section>")
    return "".join(out)


class _StudyRenderer:
    """Renders one study; heatmaps become CSS classes (``.hm-s3-f123``) so each image is embedded once."""

    def __init__(self, index: int, view: StudyView, css: list[str], image_size: int, heatmap_size: int) -> None:
        self.k = index
        self.view = view
        self.css = css
        self.image_size = image_size
        self.heatmap_size = heatmap_size
        self.heatmap_class: dict[int, str | None] = {}  # feature → CSS class, None when unreadable
        self.heatmap_problem: dict[int, str] = {}

    def heatmap(self, feature: int, evidence_path: str | None) -> str | None:
        if feature in self.heatmap_class:
            return self.heatmap_class[feature]
        path = self.view.heatmaps.get(feature) if self.view.heatmaps else None
        path = path if path not in (None, "") else evidence_path
        cls = None
        if path is not None:
            try:
                uri, w, h = _load_overlay(path, self.heatmap_size)
            except Exception as exc:  # one bad heatmap must not take the page down
                self.heatmap_problem[feature] = _reason(exc)
                warn_line(f"{path}: heatmap of feature {feature} unavailable ({_reason(exc)})")
            else:
                cls = f"hm-s{self.k}-f{feature}"
                self.css.append(f".{cls}{{background-image:url({uri});aspect-ratio:{w}/{h}}}")
        self.heatmap_class[feature] = cls
        return cls

    def image(self) -> str:
        path = self.view.image_path
        if path is None or str(path) == "":
            return '<div class="unavailable">image unavailable: no image path</div>'
        try:
            uri, w, h = _load_xray(path, self.image_size)
        except Exception as exc:  # a missing or corrupt image is a note on the page, not a crash
            warn_line(f"{path}: image unavailable ({_reason(exc)})")
            return f'<div class="unavailable">image unavailable: {_e(_reason(exc))}</div>'
        return (
            f'<div class="view"><img src="{uri}" width="{w}" height="{h}" alt="{_e(self.view.image_id)}">'
            '<div class="overlay"></div></div>'
        )

    def evidence_table(self, evidence: list[dict]) -> str:
        if not evidence:
            return '<div class="ev none">no evidence recorded</div>'
        out = [
            '<table class="ev"><thead><tr><th>feature</th><th>description</th><th class="num">activation</th>'
            '<th class="num">threshold</th><th class="num">×thr</th><th class="num">confidence</th>'
            "<th>heatmap</th></tr></thead><tbody>"
        ]
        for ev in evidence:
            f = ev["feature"]
            desc = self.view.descriptions.get(f) if self.view.descriptions else None
            desc_html = _e(desc) if desc else '<span class="none">no description</span>'
            cls = self.heatmap(f, ev["heatmap"])
            if cls:
                hm = f'<span class="thumb {cls}" role="img" aria-label="heatmap of feature f{f}"></span>'
            elif f in self.heatmap_problem:
                hm = f'<span class="note">unavailable: {_e(self.heatmap_problem[f])}</span>'
            else:
                hm = '<span class="none">—</span>'
            ratio = _ratio(ev)
            out.append(
                f'<tr><td>f{f}</td><td class="desc">{desc_html}</td>'
                f'<td class="num">{_e(_fmt(ev["activation"]))}</td><td class="num">{_e(_fmt(ev["threshold"]))}</td>'
                f'<td class="num">{"—" if ratio is None else f"{ratio:.2f}"}</td>'
                f'<td class="num">{_e(_fmt(ev["confidence"], 2))}</td><td>{hm}</td></tr>'
            )
        out.append("</tbody></table>")
        return "".join(out)

    def sentence(self, s: dict, *, dropped: bool) -> str:
        hm_attr = ""
        for ev in s["evidence"]:  # strongest first as compiled; the first with a readable heatmap
            cls = self.heatmap(ev["feature"], ev["heatmap"])
            if cls:
                label = f"heatmap of f{ev['feature']}"
                desc = self.view.descriptions.get(ev["feature"]) if self.view.descriptions else None
                label += f": {desc}" if desc else ""
                hm_attr = f' data-hm="{cls}" data-hm-label="{_e(label)}"'
                break
        region = f'<span class="region">{_e(s["region"])}</span>' if s["region"] else ""
        tag = '<span class="tag">dropped: contradicted by stronger evidence</span>' if dropped else ""
        marker = evidence_marker(s["evidence"])
        marker_html = f'<span class="marker">{_e(marker)}</span>' if marker else ""
        return (
            f'<details class="sent{" dropped" if dropped else ""}"{hm_attr}><summary>'
            f'<span class="text">{_e(s["text"])}</span>{region}{tag}{marker_html}</summary>'
            f"{self.evidence_table(s['evidence'])}</details>"
        )

    def report(self) -> str:
        try:
            secs = _sections(self.view.report)
        except (TypeError, ValueError) as exc:
            warn_line(f"study {self.view.image_id}: report unreadable ({_reason(exc)})")
            return f'<div class="unavailable">report unreadable: {_e(_reason(exc))}</div>'
        out = []
        for section, title in (("findings", "Findings"), ("impression", "Impression")):
            out.append(f"<h4>{title}</h4>")
            if not secs[section]:
                out.append('<div class="none">(none)</div>')
            out.extend(self.sentence(s, dropped=False) for s in secs[section])
        if secs["dropped_contradictions"]:
            out.append("<h4>Dropped contradictions</h4>")
            out.extend(self.sentence(s, dropped=True) for s in secs["dropped_contradictions"])
        return "".join(out)

    def render(self) -> str:
        v = self.view
        meta = "".join(f"<span>{_e(k)}: {_e(x)}</span>" for k, x in (v.extra or {}).items())
        image = self.image()
        report = self.report()
        reference = (
            f'<div class="ref">{_e(v.reference.strip())}</div>'
            if v.reference and v.reference.strip()
            else '<div class="none">no reference report</div>'
        )
        caption = "hover a sentence for its heatmap" if any(self.heatmap_class.values()) else ""
        return (
            f'<section class="study" id="study-{self.k}"><h2>{_e(v.image_id)}</h2>'
            f'<div class="meta">{meta}</div><div class="cols">'
            f'<div>{image}<div class="caption">{caption}</div></div>'
            f"<div><h3>Generated report</h3>{report}</div>"
            f"<div><h3>Reference report</h3>{reference}</div></div></section>"
        )


def render_html(
    studies: Sequence[StudyView],
    *,
    title: str,
    summary: Any = None,
    image_size: int = 320,
    heatmap_size: int = 192,
) -> str:
    """One self-contained HTML page (no external CSS, JS, fonts or images) of generated vs reference reports.

    Per study: the image (downscaled, grey PNG data URI), the generated report — every sentence clickable for its
    evidence table (feature id, description, activation, threshold, activation/threshold, confidence, heatmap) and
    hoverable to show its strongest feature's heatmap over the image — the sentences dropped as contradictions
    (struck through, tagged), and the reference report beside it. A missing or unreadable image or heatmap becomes
    a visible "unavailable: <reason>" note and one warning line; a malformed report a "report unreadable" note.

    Args:
        studies: the studies, in page order.
        title: page title and heading (escaped like all text).
        summary: optional metrics table at the top, one of
            ``{row name: {column: value}}`` (e.g. ``{"cxrlens": {"bleu4": 0.1, "f1": 0.4}, "random": {...}}``;
            columns in first-seen order, missing cells "—"), a list of row mappings
            (``[{"system": "cxrlens", "f1": 0.4}, ...]``, or a pandas DataFrame, taken as its records), or a flat
            ``{metric: value}`` (two columns). Floats show 4 significant digits, ``None``/NaN "—".
        image_size: longer side of the embedded study images, pixels.
        heatmap_size: longer side of the embedded heatmap overlays, pixels (each embedded once per study).

    Returns:
        the page as a string; write it with :func:`write_html`.
    """
    css: list[str] = []
    body = [_StudyRenderer(k, v, css, image_size, heatmap_size).render() for k, v in enumerate(studies)]
    nav = ""
    if len(studies) > 1:
        links = "".join(f'<a href="#study-{k}">{_e(v.image_id)}</a>' for k, v in enumerate(studies))
        nav = f"<nav>{len(studies)} studies: {links}</nav>"
    summary_html = _summary_html(summary) if summary is not None else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}{chr(10).join(css)}</style></head>"
        f"<body><h1>{_e(title)}</h1>{summary_html}{nav}{''.join(body)}"
        f"<script>{_JS}</script></body></html>\n"
    )


def write_html(path: str | Path, html_text: str) -> Path:
    """Write a page from :func:`render_html` atomically (temp file beside ``path``, then rename); returns ``path``."""
    return atomic_write_text(path, html_text)
