"""``cxrlens report``: evidence-linked reports for image files, or for a dataset split in batch."""

from __future__ import annotations

from pathlib import Path

import typer

from cxrlens.cli.common import FORCE_OPTION, WORKSPACE_OPTION, config_option, open_workspace, print_stage_result
from cxrlens.console import console, warn_line
from cxrlens.report.compile import CompileConfig
from cxrlens.report.run import ReportConfig


def report(
    images: list[Path] = typer.Argument(None, help="PNG/JPEG/DICOM files to report on."),
    model: str = typer.Option(..., "--model", "-m", help="Interpretation run (interpret/<RUN>) = the report model."),
    dataset: str = config_option(
        ReportConfig, "dataset", "--dataset", "-d", help="Report on a dataset split instead of files."
    ),
    split: str = config_option(ReportConfig, "split", help="Split of --dataset."),
    max_images: int = config_option(
        ReportConfig, "max_images", help="With --dataset: at most this many images (0 = all)."
    ),
    compiler: str = config_option(
        CompileConfig,
        "compiler",
        help="readout (the val-calibrated finding readout decides; descriptions give the words) or features "
        "(SAE-Rad's rule: every described feature above its threshold speaks).",
    ),
    max_features: int = config_option(
        CompileConfig, "max_features", help="--compiler features: active features used per report (SAE-Rad: 15)."
    ),
    describer: str = config_option(
        ReportConfig,
        "describer",
        help="primary (the run's descriptions; LLM if it had one) or extractive (robustness comparison).",
    ),
    fmt: str = typer.Option("text", "--format", "-f", help="text, json or html (files only)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    run: str | None = typer.Option(None, help="With --dataset: output name \\[default: <model>-<split>]."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Compile FINDINGS/IMPRESSION from active SAE features; every sentence lists the features behind it."""
    from cxrlens.errors import BadInputError
    from cxrlens.report.run import ReportModel, run_report

    ws = open_workspace(workspace)
    if fmt not in ("text", "json", "html"):
        raise BadInputError(None, f"--format must be text, json or html, got {fmt!r}")
    if bool(images) == bool(dataset):
        raise BadInputError(None, "give image files or --dataset (one of the two)")
    from cxrlens.report.compile import COMPILERS

    if compiler not in COMPILERS:
        raise BadInputError(None, f"--compiler must be one of {', '.join(COMPILERS)}, got {compiler!r}")
    compile_cfg = CompileConfig(max_features=max_features, compiler=compiler)
    if dataset:
        cfg = ReportConfig(
            interpret=model,
            dataset=dataset,
            split=split,
            max_images=max_images,
            describer=describer,
            compile=compile_cfg,
        )
        result = run_report(ws, cfg, run=run, force=force)
        m = result.manifest
        console.print(
            f"{m.rows['reports']:,} reports ({m.rows['empty_reports']:,} with no feature above threshold), "
            f"compilation {m.extra['compile_ms_per_report']:.2f} ms/report"
        )
        print_stage_result(result, f"reports {result.path.name}")
        return
    rm = ReportModel.load(ws, model, config=compile_cfg, describer=describer)
    results = rm.report_files(images)
    for path, _, error in results:
        if error:
            warn_line(f"{path}: {error} (skipped)")
    good = [(p, r) for p, r, e in results if r is not None]
    if not good:
        raise BadInputError(None, f"none of the {len(results)} images could be read")
    text = _render(good, rm, fmt)
    if out:
        from cxrlens.files import atomic_write_text

        atomic_write_text(out, text)
        console.print(f"[green]✓[/green] wrote {out} ({len(good)} report(s))")
    else:
        console.print(text, markup=False, highlight=False, soft_wrap=True)


def _render(good, rm, fmt: str) -> str:
    import json

    from cxrlens.report.render import StudyView, render_html, render_json, render_text

    if fmt == "text":
        return "\n\n".join(f"== {p}\n{render_text(r.to_json())}" for p, r in good)
    if fmt == "json":
        items = [json.loads(render_json(r.to_json(), image=str(p), model=rm.run)) for p, r in good]
        return json.dumps(items if len(items) > 1 else items[0], indent=2)
    views = [
        StudyView(
            image_id=p.stem,
            image_path=str(p),
            report=r.to_json(),
            reference=None,
            descriptions=rm.descriptions,
            heatmaps={},
            extra={"model": rm.run},
        )
        for p, r in good
    ]
    return render_html(views, title=f"cxrlens reports ({rm.run})")
