"""``cxrlens qa train``, ``cxrlens ask`` and ``cxrlens check-report``: questions and report checks on one image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from cxrlens.cli.common import (
    FORCE_OPTION,
    WORKSPACE_OPTION,
    config_csv_option,
    config_option,
    fmt_number,
    llm_config,
    open_workspace,
    print_stage_result,
)
from cxrlens.console import console
from cxrlens.errors import BadInputError
from cxrlens.interpret.llm import LLMConfig
from cxrlens.qa.model import QATrainConfig

app = typer.Typer(
    help="The image model of `ask` and `check-report`: calibrated presence, side, severity and device heads.",
    no_args_is_help=True,
)

MODEL_OPTION = typer.Option("qa", "--model", "-m", help="The question-answering model (qa/<model>, `qa train`).")


@app.command("train")
def train(
    activations: str = typer.Option(
        ...,
        "--activations",
        "-a",
        help="Activation store with a pooled and a patch stream (extract --tokens cls,mean,patch).",
    ),
    dataset: str = config_option(QATrainConfig, "dataset", help="Dataset with the truth \\[default: the store's]."),
    pooled_stream: str = config_option(QATrainConfig, "pooled_stream", help="Pooled stream \\[default: …/cls]."),
    patch_stream: str = config_option(QATrainConfig, "patch_stream", help="Patch stream \\[default: …/patch]."),
    min_train: int = config_option(QATrainConfig, "min_train", help="Fewest training rows of a head's rarest class."),
    cs: str = config_csv_option(QATrainConfig, "Cs", "--cs", help="Inverse L2 penalties tried per head (val)."),
    run: str = typer.Option("qa", "--run", "-r", help="Output name (qa/<run>)."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Fit the heads on train, calibrate on val, score on test (qa/<run>/metrics.parquet)."""
    from cxrlens.qa.model import read_qa_metrics, run_qa_train

    ws = open_workspace(workspace)
    try:
        c_values = tuple(float(c) for c in cs.split(",") if c.strip())
    except ValueError:
        raise BadInputError(None, f"--cs must be comma-separated numbers, got {cs!r}") from None
    cfg = QATrainConfig(activations, dataset, pooled_stream, patch_stream, min_train, c_values)
    with console.status("fitting question-answering heads"):
        result = run_qa_train(ws, cfg, run=run, force=force)
    table = read_qa_metrics(ws, run)
    t = Table(title=f"qa/{run}: test split (heads fit on train, calibrated on val)", title_justify="left")
    for col in ("head", "n", "AUC / accuracy", "majority", "balanced acc.", "ECE"):
        t.add_column(col, justify="left" if col == "head" else "right")
    for r in table.to_dict("records"):
        if not r["fitted"]:
            t.add_row(r["head"], "–", f"not fitted: {r.get('reason', '')}", "", "", "")
            continue
        score = r.get("test_auc") if r.get("test_auc") == r.get("test_auc") else r.get("test_accuracy")
        t.add_row(
            r["head"],
            f"{int(r.get('test_n') or 0):,}",
            fmt_number(score),
            fmt_number(r.get("test_majority")),
            fmt_number(r.get("test_balanced_accuracy")),
            fmt_number(r.get("test_ece")),
        )
    console.print(t)
    print_stage_result(result, f"qa model {run}")


def ask(
    image: Path = typer.Argument(..., help="PNG/JPEG/DICOM image."),
    question: str = typer.Argument(..., help='The question, e.g. "is there a left pleural effusion?".'),
    model: str = MODEL_OPTION,
    heatmaps: Path | None = typer.Option(None, "--heatmaps", help="Write evidence heat maps (PNG) to this folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer with its evidence as JSON."),
    interpret: str | None = typer.Option(
        None, "--interpret", help="Add the image's active SAE features for each finding (interpret/<RUN>)."
    ),
    llm_url: str | None = typer.Option(
        None, "--llm-url", help="OpenAI-compatible endpoint to phrase the answer (sent: the structured result only)."
    ),
    llm_model: str | None = typer.Option(None, "--llm-model", help="Model name sent to --llm-url."),
    llm_key_env: str = config_option(LLMConfig, "api_key_env", help="Environment variable holding the API key."),
    llm_allow_remote: bool = config_option(
        LLMConfig, "allow_remote", "--llm-allow-remote", help="Allow an --llm-url that is not on this machine."
    ),
    workspace: Path | None = WORKSPACE_OPTION,
) -> None:
    """Answer a question about one image: yes/no, side, severity or a list, a calibrated confidence and the
    evidence. Comparison with priors and clinical history get "cannot answer from one image"."""
    from cxrlens.qa.answer import answer_question, attach_heatmaps
    from cxrlens.qa.model import load_qa_model
    from cxrlens.qa.phrase import phrase_answer
    from cxrlens.qa.questions import parse_question
    from cxrlens.qa.sae_evidence import with_answer_features

    llm = llm_config(llm_url, llm_model, llm_key_env, llm_allow_remote)  # refused before any work
    ws = open_workspace(workspace)
    q = parse_question(question)
    qa_model = load_qa_model(ws, model)
    if not image.is_file():
        raise BadInputError(image, "no such image file")
    (gray,) = qa_model.load_images([image])  # decoded once: encoding, heat maps and SAE codes share it
    findings = qa_model.findings_for_gray([gray], [str(image)])[0]
    ans = answer_question(q, findings)
    if heatmaps is not None and ans.evidence:
        ans = attach_heatmaps(ans, findings, _model_view(qa_model, gray), heatmaps)
    if interpret:
        ans = with_answer_features(ans, *_sae_codes(ws, interpret, gray))
    phrased = phrase_answer(ans, llm) if llm is not None else None
    if as_json:
        doc = ans.to_json()
        if llm is not None:
            doc["phrased"] = {"model": llm.model, "text": phrased}
        typer.echo(json.dumps(doc, indent=2))
        return
    conf = "–" if ans.confidence is None else f"{ans.confidence:.2f}"
    console.print(
        f"[bold]Q[/bold] {escape(question)}\n[dim]parsed: {q.kind}"
        f"{', ' + (q.device or q.finding or '') if (q.device or q.finding) else ''}"
        f"{', side ' + q.side if q.side else ''}{', ' + q.severity if q.severity else ''}"
        f"{'' if q.polarity else ', inverted'}[/dim]"
    )
    console.print(f"[bold]A[/bold] {ans.answer}  (confidence {conf})\n  {escape(ans.text)}", highlight=False)
    if llm is not None:
        said = phrased or "(no phrasing: the request failed or the question was not answered)"
        console.print(f"  [dim]phrased by {escape(llm.model)}:[/dim] {escape(said)}", highlight=False)
    for e in ans.evidence:
        if "features" in e:
            for f in e["features"] or [{"feature": "–", "description": "no active feature tracks this finding"}]:
                console.print(
                    f"  [dim]evidence[/dim] SAE feature {f['feature']}: {escape(str(f['description']))}"
                    + (
                        f" (activation {f['activation']}, threshold {f['threshold']}, AUC {f['auc']})"
                        if "auc" in f
                        else ""
                    ),
                    highlight=False,
                )
            continue
        extra = escape("".join(f"  {k}: {json.dumps(e[k])}" for k in ("side", "severity", "heatmap") if k in e))
        console.print(
            f"  [dim]evidence[/dim] {e['head']}: P {e['probability']:.3f}, threshold {e['threshold']:.3f}"
            f"{', head test AUC ' + str(e['head_test_auc']) if 'head_test_auc' in e else ''}{extra}",
            highlight=False,
        )


def _model_view(qa_model: Any, gray: Any) -> Any:
    """The image as the backbone sees it (its resize / crop), for heat-map overlays."""
    import torch

    from cxrlens.interpret.heatmaps import model_view

    return model_view(qa_model.backbone, torch.as_tensor(gray)[None])[0].numpy()


def _sae_codes(ws: Any, run: str, gray: Any) -> tuple[Any, Any]:
    from cxrlens.qa.sae_evidence import SAEEvidence

    sae = SAEEvidence.load(ws, run)
    return sae, sae.codes(gray)


def check_report(
    image: Path = typer.Argument(..., help="PNG/JPEG/DICOM image."),
    report: Path = typer.Argument(..., help="The written report (a UTF-8 text file)."),
    model: str = MODEL_OPTION,
    fmt: str = typer.Option("text", "--format", "-f", help="text, json or html."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    heatmaps: Path | None = typer.Option(None, "--heatmaps", help="Write evidence heat maps (PNG) to this folder."),
    interpret: str | None = typer.Option(
        None, "--interpret", help="Add the image's active SAE features for each finding (interpret/<RUN>)."
    ),
    workspace: Path | None = WORKSPACE_OPTION,
) -> None:
    """Flag each sentence of a report as supported, contradicted (finding absent, wrong side, wrong severity,
    device absent) or unverifiable against the image, and list findings the report misses — with evidence."""
    from cxrlens.files import atomic_write_text
    from cxrlens.interpret.heatmaps import overlay_png
    from cxrlens.qa.check import check_report as run_check
    from cxrlens.qa.check import render_check_html, render_check_text
    from cxrlens.qa.model import load_qa_model
    from cxrlens.qa.sae_evidence import with_check_features

    if fmt not in ("text", "json", "html"):
        raise BadInputError(None, f"--format must be text, json or html, got {fmt!r}")
    try:
        text = report.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(report, "no such report file") from None
    except UnicodeDecodeError:
        raise BadInputError(report, "not UTF-8 text") from None
    if not text.strip():
        raise BadInputError(report, "the report is empty")
    if not image.is_file():
        raise BadInputError(image, "no such image file")
    ws = open_workspace(workspace)
    qa_model = load_qa_model(ws, model)
    (gray,) = qa_model.load_images([image])
    findings = qa_model.findings_for_gray([gray], [str(image)])[0]
    check = run_check(text, findings)
    if interpret:
        check = with_check_features(check, *_sae_codes(ws, interpret, gray))
    maps: dict[str, str] = {}
    if heatmaps is not None:
        import numpy as np

        view = _model_view(qa_model, gray)
        heads = {e["head"]: e["name"] for s in check.sentences for c in s.claims for e in c.evidence}
        heads |= {m["head"]: m["name"] for m in check.missed}
        for head, name in heads.items():
            ev = (findings.devices if head.startswith("device/") else findings.findings).get(name)
            if ev is not None and ev.token_map is not None:
                path = heatmaps / f"{image.stem}-{head.replace('/', '-').replace(' ', '-').lower()}.png"
                overlay_png(view, np.clip(ev.token_map.reshape(findings.grid), 0, None), path)
                maps[head] = str(path)
    if fmt == "json":
        body = json.dumps(check.to_json() | {"heatmaps": maps}, indent=2)
    elif fmt == "html":
        body = render_check_html(check, maps)
    else:
        body = render_check_text(check)
    if out is not None:
        atomic_write_text(out, body)
        console.print(f"[green]✓[/green] report check: wrote {out}")
    else:
        typer.echo(body)
