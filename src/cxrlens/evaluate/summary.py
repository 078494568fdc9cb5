"""Markdown and one-line summaries of an evaluation's ``metrics.json`` (the dict :func:`cxrlens.evaluate.run.
run_evaluate_reports` writes): the leak warning, the bootstrap note, notes on the less obvious metrics, the interval and
gap tables, and a metrics table as GitHub markdown. Pure formatting — no files are read or written here."""

from __future__ import annotations

from cxrlens.evaluate.bootstrap import units_phrase
from cxrlens.evaluate.clinical import variant_name
from cxrlens.evaluate.names import AGREEMENT

__all__ = ["bootstrap_note", "interval_tables", "leak_line", "markdown_table", "metric_notes"]


def leak_line(metrics: dict) -> str | None:
    """``"LEAKY: …"`` when the evaluation scored a split the interpretation used, else None."""
    if not metrics.get("leaky"):
        return None
    leak = metrics.get("leak") or {}
    return f"LEAKY: {leak.get('why', 'the evaluated split was used by the interpretation')}"


def bootstrap_note(metrics: dict) -> str:
    """``"95 % CI: paired percentile bootstrap, 787 studies (1,525 images) resampled, 1000 resamples"``."""
    b = metrics.get("bootstrap") or {}
    if not b or not b.get("resamples"):
        return "no bootstrap intervals (0 resamples)"
    return (
        f"95 % CI: paired percentile bootstrap, {units_phrase(b['n_units'], b['unit'])} ({b['n_images']:,} images) "
        f"resampled with their images kept together, {b['resamples']} resamples"
    )


def metric_notes(metrics: dict) -> list[str]:
    """Markdown bullets that say what the less obvious rows of the metrics table are."""
    clin = {r["variant"]: r for r in metrics["systems"].get("cxrlens", {}).get("clinical", [])}
    ref_labels = clin.get(variant_name("f1", "macro-ref", "14", "positive"), {}).get("n_labels")
    notes = [
        f"- Macro F1 quoted: `{metrics.get('macro_quoted', 'n/a')}` — scikit-learn's "
        '`f1_score(average="macro", zero_division=0)` over all 14 labels, the same labels for every system'
        + (f"; {ref_labels} of the 14 have a reference positive here." if ref_labels is not None else "."),
        "- `hallucination / report, all reports` counts empty reports as clean; `hallucination / non-empty report` "
        "leaves them out; `empty reports (share)` says how many there are.",
    ]
    if metrics.get("grounding"):
        notes.append(
            f"- Row `{AGREEMENT}`: the reference text scored against the phantom drawn from the labeler's reading of "
            "that same text — agreement between the labeler-derived render and the labeler, high largely by "
            "construction; **not** a ceiling for generated reports (docs/sae-rad.md)."
        )
    return notes


def interval_tables(metrics: dict) -> list[str]:
    """Markdown: each system's value with its interval, then every gap (cxrlens − baseline) with its interval (metrics
    by their short names, as in the metrics table; ``metrics.json`` keeps the full variant names)."""

    def ci(c) -> str:
        return "–" if not c else f"[{c[0]:.3f}, {c[1]:.3f}]"

    def num(v) -> str:
        return "–" if v is None or v != v else f"{v:.3f}"

    out: list[str] = []
    intervals = metrics.get("intervals") or []
    if intervals:
        out += ["| metric | system | value | 95 % CI |", "|---|---|---:|---:|"]
        out += [
            f"| {r.get('label', r['metric'])} | {r['system']} | {num(r['value'])} | {ci(r['ci95'])} |"
            for r in intervals
        ]
        out.append("")
    gaps = metrics.get("gap_table") or []
    if gaps:
        out += ["| metric | cxrlens − | gap | 95 % CI |", "|---|---|---:|---:|"]
        for r in gaps:
            gap = "–" if r["gap"] is None else f"{r['gap']:+.3f}"
            c = "–" if not r["ci95"] else f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]"
            better = ", lower is better" if r.get("lower_is_better") else ""
            out.append(f"| {r.get('label', r['metric'])}{better} | {r['baseline']} | {gap} | {c} |")
        out.append("")
    return out


def markdown_table(table) -> str:
    """A pandas table as a GitHub markdown table (3 decimals; – for missing)."""
    cols = [str(table.index.name or "")] + [str(c) for c in table.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
    for name, row in table.iterrows():
        out.append("| " + " | ".join([str(name)] + ["–" if v != v else f"{v:.3f}" for v in row.to_numpy()]) + " |")
    return "\n".join(out)
