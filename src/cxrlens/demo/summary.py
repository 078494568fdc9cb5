"""``summary.md`` of the demo: what ran, every goal of the SAE-Rad quality issue with its figure and met /
**MISSED** (never redefined), the metrics with baselines, study-level intervals and gaps, the pointing game, the
honesty controls, what the codes keep, and three example reports."""

from __future__ import annotations

from pathlib import Path

from cxrlens.evaluate.summary import bootstrap_note, interval_tables, leak_line, markdown_table, metric_notes
from cxrlens.files import atomic_write_text
from cxrlens.report.render import render_text
from cxrlens.report.run import read_reports
from cxrlens.report.showcase import pick_studies

__all__ = [
    "CONTROL_METRICS",
    "control_lines",
    "format_cell",
    "goal_lines",
    "overall_pointing",
    "pointing_lines",
    "probe_lines",
    "write_summary",
]

CONTROL_METRICS = (  # (short name in the controls table, label of the gap row in metrics.json)
    ("micro-5", "clinical F1 micro-5 (u=pos)"),
    ("macro-14", "clinical F1 macro-14 over all labels, zero_division=0 (u=pos)"),
    ("grounding F1", "grounding F1 micro-13 (u=pos)"),
    ("halluc./finding", "hallucination / finding (u=pos)"),
)


def overall_pointing(pointing, method_prefix: str) -> float | None:
    """The ``all``-findings pointing rate of the first method whose name starts with ``method_prefix`` (None when
    the pointing game was not run or has no such method)."""
    rows = (pointing or {}).get("table", [])
    hit = next((r for r in rows if r["method"].startswith(method_prefix) and r["finding"] == "all"), None)
    return hit["pointing"] if hit else None


def write_summary(ws, run: str, interp, table, metrics, pointing=None, controls=(), probe=None) -> Path:
    """``reports/<run>/summary.md``: what ran, the goals (met or missed, with the figure), the metrics table with
    baselines, the study-level intervals and gaps, the pointing game, the controls, three example reports (a leaky
    evaluation is marked at the top)."""
    m = interp.manifest
    leak = leak_line(metrics)
    probe = probe or {}
    lines = [f"# cxrlens demo — {run}", ""]
    if leak:
        lines += [f"> **{leak}**", ""]
    lines += [
        f"SAE `{m.config['sae']}` on `{m.extra['activations']}` ({m.extra['stream']}); "
        f"{m.rows['features']:,} features, {m.rows['described']:,} described.",
        "",
        "## Goals (issue 17), measured in this run",
        "",
        *goal_lines(metrics, pointing, list(controls), probe),
        "",
        "## Metrics (test split)",
        "",
        markdown_table(table),
        "",
        *metric_notes(metrics),
        "",
        f"METEOR: {metrics.get('meteor_status', 'n/a')}",
        "",
        "## Study-level 95 % intervals",
        "",
        bootstrap_note(metrics) + ".",
        "",
        *interval_tables(metrics),
        *pointing_lines(pointing),
        *control_lines(list(controls)),
        *probe_lines(probe),
        "## Example reports",
        "",
    ]
    for row in pick_studies(read_reports(ws, run), 3).itertuples():
        lines += [
            f"### {row.image_id}",
            "",
            "```",
            render_text(row.report),
            "```",
            "",
            "Reference:",
            "",
            f"> {row.reference_text}",
            "",
        ]
    return atomic_write_text(ws.reports(run) / "summary.md", "\n".join(lines))


def _gap(metrics: dict, label: str) -> dict | None:
    return next(
        (r for r in metrics.get("gap_table") or [] if r["baseline"] == "nearest" and r.get("label") == label), None
    )


def goal_lines(metrics: dict, pointing, controls: list[dict], probe: dict) -> list[str]:
    """One line per goal: the figure, the bar, met or MISSED — never redefined."""
    out = ["| goal | figure | bar | |", "|---|---|---|---|"]
    for short, label in CONTROL_METRICS:
        g = _gap(metrics, label)
        if g is None or g["gap"] is None:
            out.append(f"| 1 · {short} vs nearest retrieval | – | CI of gap > 0 | not measured |")
            continue
        lo, hi = g["ci95"] or (float("nan"), float("nan"))
        lower = g.get("lower_is_better")
        ok = hi < 0 if lower else lo > 0
        bar = "CI of gap < 0 (lower is better)" if lower else "CI of gap > 0"
        fig = f"gap {g['gap']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        out.append(f"| 1 · {short} vs nearest retrieval | {fig} | {bar} | {'met' if ok else '**MISSED**'} |")
    if controls:
        rec = controls[0]["recovery"]
        ok = rec["recovered"] == rec["renderable_kinds"]
        out.append(
            f"| 2 · finding kinds with a naming feature, factor AUC ≥ 0.85 | {rec['recovered']}/"
            f"{rec['renderable_kinds']} | all | {'met' if ok else '**MISSED**'} |"
        )
        share = rec["described_score_ge"] + rec["no_consistent_finding"]
        out.append(
            f"| 2 · live features described with score AUC ≥ 0.7, or 'no consistent finding' (no finding enriched "
            f"in its top studies at BH 0.05) | {share:.1%} ({rec['described_score_ge']:.1%} described with score "
            f"≥ 0.7, {rec['no_consistent_finding']:.1%} no consistent finding) | ≥ 50 % | "
            f"{'met as worded' if share >= 0.5 else '**MISSED**'}"
            f"{'; described alone **MISSED**' if rec['described_score_ge'] < 0.5 else ''} |"
        )
    sae_pt = overall_pointing(pointing, "SAE")
    cam, centre = overall_pointing(pointing, "Grad-CAM"), overall_pointing(pointing, "centre")
    if sae_pt is not None:
        others = ", ".join(f"{n} {v:.3f}" for n, v in (("Grad-CAM", cam), ("centre prior", centre)) if v is not None)
        out.append(
            f"| 3 · pointing game | {sae_pt:.3f} ({others}) | ≥ 0.8 | {'met' if sae_pt >= 0.8 else '**MISSED**'} |"
        )
    for stream, p in probe.items():
        ok = p["ratio"] >= 0.97
        out.append(
            f"| 4 · probe AUC codes / raw `{stream}` | {p['codes']:.3f} / {p['raw']:.3f} = {p['ratio']:.3f} | ≥ 0.97 | "
            f"{'met' if ok else '**MISSED**'} |"
        )
    if len(controls) > 1:
        better, not_better = _versus(controls[0], controls[1])
        out.append(
            f"| 5 · trained SAE vs the untrained one (same chain) | better on {', '.join(better) or 'nothing'}; "
            f"**not** better on {', '.join(not_better) or 'nothing'} | computed, said | "
            f"{'trained wins everywhere' if not not_better else 'said: a random-weight SAE matches it there'} |"
        )
    return out


def _versus(trained: dict, control: dict) -> tuple[list[str], list[str]]:
    """Which control-table columns the trained SAE wins against a control (halluc.: lower is better)."""

    def num(row: dict, col: str) -> float | None:
        v = row.get(col)
        if isinstance(v, str) and "/" in v:
            return float(v.split("/")[0])
        return v

    better, not_better = [], []
    for col in ("micro-5", "macro-14", "grounding F1", "halluc./finding", "kinds recovered", "described, score ≥ 0.7",
                "pointing"):  # fmt: skip
        a, b = num(trained, col), num(control, col)
        if a is None or b is None:
            continue
        wins = a < b if col.startswith("halluc") else a > b
        (better if wins else not_better).append(col)
    return better, not_better


def pointing_lines(pointing) -> list[str]:
    if not pointing:
        return []
    methods = list(dict.fromkeys(r["method"] for r in pointing["table"]))
    findings = list(dict.fromkeys(r["finding"] for r in pointing["table"]))
    value = {(r["method"], r["finding"]): r for r in pointing["table"]}
    out = [
        "## Pointing game (test split)",
        "",
        f"Unit: a present sentence whose finding was rendered with a mask ({pointing['units']} sentences); hit = the "
        f"map's peak patch centre within {pointing['tolerance_px']} px (half a patch) of the mask "
        f"({pointing['mask_size']} px masks, {pointing['grid'][0]}×{pointing['grid'][1]} grid).",
        "",
        "| finding | n | " + " | ".join(methods) + " |",
        "|---|---:|" + "---:|" * len(methods),
    ]
    for f in findings:
        n = value[(methods[0], f)]["n"]
        out.append(f"| {f} | {n} | " + " | ".join(f"{value[(m, f)]['pointing']:.3f}" for m in methods) + " |")
    for key in ("side", "zone"):
        acc = pointing[key]
        if acc["accuracy"] is not None:
            out.append(f"\n{key.capitalize()} of the evidence peak vs the rendered {key}: {acc['accuracy']:.3f} "
                       f"({acc['n']} sentences).")  # fmt: skip
    return [*out, ""]


def control_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    cols = [c for c in rows[0] if c not in ("sae", "recovery")]
    out = [
        "## Honesty controls (test split, same chain)",
        "",
        "| " + " | ".join(cols) + " |",
        "|---|" + "---:|" * (len(cols) - 1),
    ]
    out += ["| " + " | ".join(format_cell(r[c]) for c in cols) + " |" for r in rows]
    out += ["", "Feature recovery of the trained SAE (best factor AUC of a feature that names the finding):", ""]
    out += ["| kind | best any feature | best naming feature | description |", "|---|---:|---:|---|"]
    for k in rows[0]["recovery"]["kinds"]:
        named = "–" if k["best_named"] != k["best_named"] else f"{k['best_named']:.3f}"
        out.append(f"| {k['kind']} | {k['best_any']:.3f} | {named} | {k['description'][:80]} |")
    return [*out, ""]


def probe_lines(probe: dict) -> list[str]:
    if not probe:
        return []
    out = [
        "## What the codes keep (linear probe, train → val)",
        "",
        "| raw stream | codes | raw | ratio |",
        "|---|---:|---:|---:|",
    ]
    out += [f"| {s} | {p['codes']:.3f} | {p['raw']:.3f} | {p['ratio']:.3f} |" for s, p in probe.items()]
    return [*out, ""]


def format_cell(v) -> str:
    """A controls-table cell: 3 decimals for floats, – for missing."""
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)
