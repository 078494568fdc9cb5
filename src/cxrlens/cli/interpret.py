"""``cxrlens interpret``: describe every feature of a trained SAE → ``interpret/<run>/``."""

from __future__ import annotations

from pathlib import Path

import typer

from cxrlens.cli.common import (
    FORCE_OPTION,
    WORKSPACE_OPTION,
    config_option,
    kv_table,
    llm_config,
    open_workspace,
    print_stage_result,
)
from cxrlens.console import console
from cxrlens.interpret.llm import LLMConfig
from cxrlens.interpret.run import InterpretConfig


def interpret(
    sae: str = typer.Option(..., "--sae", help="SAE run (saes/<RUN>); its activation store is used."),
    activations: str = config_option(
        InterpretConfig,
        "activations",
        "--activations",
        "-a",
        help="Activation store to interpret on \\[default: the one the SAE was trained on].",
    ),
    top_k: int = config_option(
        InterpretConfig, "top_k", help="Top-activating images kept per feature (and read by the describer)."
    ),
    describe_split: str = config_option(
        InterpretConfig, "describe_split", help="Split whose reports describe the features."
    ),
    calibrate_split: str = config_option(
        InterpretConfig, "calibrate_split", help="Held-out split for report thresholds."
    ),
    llm_url: str | None = typer.Option(
        None, "--llm-url", help="OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) for an LLM describer."
    ),
    llm_model: str | None = typer.Option(None, "--llm-model", help="Model name sent to --llm-url."),
    llm_key_env: str = config_option(
        LLMConfig,
        "api_key_env",
        help="Environment variable holding the endpoint's API key (sent only over https or to a loopback address).",
    ),
    llm_allow_remote: bool = config_option(
        LLMConfig,
        "allow_remote",
        "--llm-allow-remote",
        help="Allow an --llm-url that is not on this machine, acknowledging that report text is sent to it "
        "(MIMIC-CXR's data use agreement forbids third-party services; see docs/llm.md).",
    ),
    run: str | None = typer.Option(None, help="Output name \\[default: the SAE run name]."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Per-feature statistics, label association, confound check and radiological descriptions."""
    from cxrlens.interpret.describe import DescribeConfig
    from cxrlens.interpret.run import run_interpret

    llm = llm_config(llm_url, llm_model, llm_key_env, llm_allow_remote)  # refused before any work
    ws = open_workspace(workspace)
    cfg = InterpretConfig(
        sae=sae,
        activations=activations,
        top_k=top_k,
        describe_split=describe_split,
        calibrate_split=calibrate_split,
        describe=DescribeConfig(top_k=top_k),
        llm=llm,
    )
    result = run_interpret(ws, cfg, run=run, force=force)
    print_interpret_summary(result)
    print_stage_result(result, f"interpret {result.path.name}")


def print_interpret_summary(result, examples: int = 8) -> None:
    """Counts, confound verdicts and the best-described features of an interpretation run."""

    m = result.manifest
    feats = result.open().table("features")
    desc = result.open().table("descriptions")
    verdicts = ", ".join(f"{k} {v:,}" for k, v in sorted(m.extra["verdicts"].items()))
    rows = [
        ("SAE / stream", f"{m.config['sae']} on {m.extra['activations']} ({m.extra['stream']})"),
        ("features", f"{m.rows['features']:,} ({int((feats['n_active'] > 0).sum()):,} active on the describe split)"),
        ("described", f"{m.rows['described']:,} (others: 'no consistent finding')"),
        ("describers", ", ".join(f"{k} {v:,}" for k, v in m.extra.get("describers", {}).items())),
        ("label association", verdicts),
    ]
    readout = m.extra.get("readout")
    if readout:
        dropped = "; ".join(f"{k}: {v}" for k, v in readout.get("dropped", {}).items())
        rows.append(("finding readout", f"{len(readout['kept'])} of 13 findings kept (val)"))
        choice, base = readout.get("beta_choice"), readout.get("baseline")
        if choice:
            tried = ", ".join(
                f"β {t['beta']:g}: P {_num(t['precision'])} F1 {_num(t.get('f1'))}" for t in choice["tried"]
            )
            if base:
                rule = (
                    f"widest worse margin over nearest retrieval ({base['stream']}: P {base['precision']:.3f}, "
                    f"R {base['recall']:.3f})"
                )
            else:
                rule = "first β (no baseline)"
            rows.append(("β (val, cross-fitted)", f"{choice['beta']:g}: {rule}; {tried}"))
        if dropped:
            rows.append(("not stated", dropped))
    console.print(kv_table("interpretation", rows))
    cols = ["feature", "description", "confidence"] + (["score_auc"] if "score_auc" in desc.columns else [])
    table = feats.merge(desc[cols], on="feature")
    table = table[table["description"] != "no consistent finding"]
    # best first: how well the description predicts held-out activation, then how clearly the reports share it
    keys = [c for c in ("score_auc", "confidence") if c in table.columns]
    table = table.sort_values(keys, ascending=False, na_position="last")
    from rich.table import Table

    t = Table(title="best-described features", title_justify="left")
    for col in ("feature", "freq", "best label (AUC)", "verdict", "description (confidence, score AUC)"):
        t.add_column(col)
    for r in table.head(examples).itertuples():
        t.add_row(
            str(r.feature),
            f"{r.frequency:.3f}",
            f"{r.best_label} ({r.auc:.2f})" if isinstance(r.best_label, str) else "–",
            str(r.verdict),
            f"{r.description[:90]} ({r.confidence:.2f}, {getattr(r, 'score_auc', float('nan')):.2f})",
        )
    console.print(t)


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"
