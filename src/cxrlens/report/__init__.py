"""Reports: compilation of sparse features into evidence-linked sentences (:mod:`cxrlens.report.compile`) and
their rendering for people as text, JSON and a self-contained HTML page (:mod:`cxrlens.report.render`)."""

from cxrlens.report.render import StudyView, evidence_marker, render_html, render_json, render_text, write_html

__all__ = [
    "StudyView",
    "evidence_marker",
    "render_html",
    "render_json",
    "render_text",
    "write_html",
]
