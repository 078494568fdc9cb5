"""Every workspace stage in one table: its id, command, entry point, config, artefact and readers.

The naming rule: the library function behind ``cxrlens <group> <command>`` is ``run_<group>_<command>`` (dashes
become underscores: ``cxrlens lt-vit train`` → ``run_lt_vit_train``, ``cxrlens extract`` → ``run_extract``), it
takes ``(workspace, config, …)`` with a frozen ``…Config`` dataclass, writes one artefact through
:func:`cxrlens.workspace.run_stage` (the manifest's ``stage`` is the id here) and returns its
:class:`cxrlens.workspace.StageResult`. This module names them as strings, so importing it costs nothing;
:meth:`Stage.entry_point`, :meth:`Stage.config_class` and :meth:`Stage.reader_functions` import on demand.
``tests/test_stages.py`` checks every row against the code (and the stage table in docs/architecture.md against
this one).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["STAGES", "Stage", "markdown_table", "resolve", "stage"]


@dataclass(frozen=True)
class Stage:
    """One workspace stage.

    Attributes:
        id: the ``stage`` recorded in its manifest (``"sae.train"``).
        command: the CLI command that runs it (``"sae train"``; "" for stages only the library/demo runs).
        entry: ``"module:function"`` of ``run_…(workspace, config, …) -> StageResult``.
        config: ``"module:Class"`` of its frozen config.
        artefact: where it writes, relative to the workspace root.
        readers: ``"module:function"`` of the public readers of its artefact.
    """

    id: str
    command: str
    entry: str
    config: str
    artefact: str
    readers: tuple[str, ...]

    def entry_point(self) -> Callable[..., Any]:
        return resolve(self.entry)

    def config_class(self) -> type:
        return resolve(self.config)

    def reader_functions(self) -> list[Any]:
        return [resolve(r) for r in self.readers]


def resolve(ref: str) -> Any:
    """``"package.module:name"`` → the object (the module is imported on demand)."""
    module, _, name = ref.partition(":")
    obj: Any = importlib.import_module(f"cxrlens.{module}")
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


_STUDIES = "data.store:read_studies"
STAGES: tuple[Stage, ...] = (
    Stage("data.import.iu-xray", "data import iu-xray", "data.iu_xray:run_data_import_iu_xray",
          "data.iu_xray:IUXrayImportConfig", "datasets/iu-xray/", (_STUDIES, "data.store:read_side_table")),
    Stage("data.import.mimic-cxr", "data import mimic-cxr", "data.mimic:run_data_import_mimic_cxr",
          "data.mimic:MimicImportConfig", "datasets/<name>/", (_STUDIES,)),
    Stage("data.import.chexpert", "data import chexpert", "data.chexpert:run_data_import_chexpert",
          "data.chexpert:CheXpertImportConfig", "datasets/<name>/", (_STUDIES,)),
    Stage("data.import.nih14", "data import nih14", "data.nih:run_data_import_nih14",
          "data.nih:NIHImportConfig", "datasets/<name>/", (_STUDIES,)),
    Stage("data.import.folder", "data import folder", "data.folder:run_data_import_folder",
          "data.folder:FolderImportConfig", "datasets/<name>/", (_STUDIES,)),
    Stage("data.build.iu-phantom", "data build iu-phantom", "data.phantom.datasets:run_data_build_iu_phantom",
          "data.phantom.datasets:IUPhantomConfig", "datasets/iu-phantom/ (+ masks/, factors.parquet)",
          (_STUDIES, "data.store:read_side_table", "data.phantom.render:read_label_masks")),
    Stage("data.build.sprites", "data build sprites", "data.phantom.datasets:run_data_build_sprites",
          "data.phantom.datasets:SpritesConfig", "datasets/cxr-sprites/ (+ masks/, factors.parquet)",
          (_STUDIES, "data.store:read_side_table", "data.phantom.render:read_label_masks")),
    Stage("backbone.train", "backbone train", "backbones.train:run_backbone_train",
          "backbones.train:BackboneTrainConfig", "backbones/<name>/",
          ("backbones.registry:load_backbone", "backbones.train:load_probe_table")),
    Stage("activations.extract", "extract", "activations:run_extract", "activations:ExtractConfig",
          "activations/<run>/", ("activations:ActivationStore",)),
    Stage("sae.train", "sae train", "sae.run:run_sae_train", "sae.run:SAERunConfig", "saes/<run>/",
          ("sae.io:load_sae",)),
    Stage("sae.untrained", "", "sae.run:run_sae_untrained", "sae.run:SAERunConfig", "saes/<run>/",
          ("sae.io:load_sae",)),
    Stage("interpret", "interpret", "interpret.run:run_interpret", "interpret.run:InterpretConfig",
          "interpret/<run>/", ("interpret.run:read_interpretation", "interpret.readout:FindingReadout.load",
                               "interpret.views:read_feature_heatmaps")),
    Stage("report", "report", "report.run:run_report", "report.run:ReportConfig", "reports/<run>/",
          ("report.run:read_reports", "report.run:ReportModel.load")),
    Stage("evaluate.reports", "evaluate reports", "evaluate.run:run_evaluate_reports", "evaluate.run:EvaluateConfig",
          "reports/<run>/evaluation/", ("evaluate.run:read_evaluation", "evaluate.tables:headline_table",
                                        "evaluate.tables:gap_table")),
    Stage("align.train", "align train", "align.contrastive:run_align_train", "align.config:AlignConfig",
          "align/<run>/", ("align.contrastive:load_align_run",)),
    Stage("align.zeroshot", "align zero-shot", "align.stages:run_align_zero_shot", "align.zeroshot:ZeroShotConfig",
          "align/<run>-zeroshot/", ("align.stages:read_zero_shot",)),
    Stage("align.index", "align index", "align.stages:run_align_index", "align.search:SearchConfig",
          "align/<run>-index/", ("align.stages:search_text",)),
    Stage("align.probe", "align probe", "align.stages:run_align_probe", "align.probes:ProbeConfig",
          "align/<run>-probe/", ("align.stages:read_probes",)),
    Stage("qa.train", "qa train", "qa.model:run_qa_train", "qa.model:QATrainConfig", "qa/<run>/",
          ("qa.model:load_qa_model", "qa.model:read_qa_metrics")),
    Stage("lt-vit.train", "lt-vit train", "labeltokens.run:run_lt_vit_train", "labeltokens.run:LTRunConfig",
          "lt-vit/<run>/", ("labeltokens.run:load_run_models", "labeltokens.run:read_lt_vit_metrics")),
    Stage("lt-vit.predict", "lt-vit predict", "labeltokens.run:run_lt_vit_predict", "labeltokens.run:LTPredictConfig",
          "lt-vit/<run>-predict-<dataset>-<split>/", ("labeltokens.run:read_predictions",)),
    Stage("lt-vit.explain", "lt-vit explain", "labeltokens.run:run_lt_vit_explain", "labeltokens.run:LTExplainConfig",
          "lt-vit/<run>-explain/", ("labeltokens.run:read_explanation",)),
    Stage("analyze.train-vae", "analyze train-vae", "analysis.stages:run_analyze_train_vae",
          "analysis.stages:AnalyzeTrainVAEConfig", "analysis/<run>/", ("analysis.vae:load_vae",
                                                                      "analysis.data:load_codes")),
    Stage("analyze.importance", "analyze importance", "analysis.stages:run_analyze_importance",
          "analysis.stages:AnalyzeImportanceConfig", "analysis/<run>/", ("analysis.stages:read_analysis",)),
    Stage("analyze.embed", "analyze embed", "analysis.stages:run_analyze_embed",
          "analysis.stages:AnalyzeEmbedConfig", "analysis/<run>/", ("analysis.stages:read_analysis",)),
    Stage("analyze.disentangle", "analyze disentangle", "analysis.stages:run_analyze_disentangle",
          "analysis.stages:AnalyzeDisentangleConfig", "analysis/<run>/", ("analysis.stages:read_analysis",)),
    Stage("analyze.mask", "analyze mask", "analysis.stages_maps:run_analyze_mask",
          "analysis.stages_maps:AnalyzeMaskConfig", "analysis/<run>/", ("analysis.stages:read_analysis",)),
    Stage("analyze.tcav", "analyze tcav", "analysis.stages_maps:run_analyze_tcav",
          "analysis.stages_maps:AnalyzeTCAVConfig", "analysis/<run>/", ("analysis.stages:read_analysis",)),
    Stage("analyze.sanity", "analyze sanity", "analysis.stages_maps:run_analyze_sanity",
          "analysis.stages_maps:AnalyzeSanityConfig", "analysis/<run>/", ("analysis.stages:read_analysis",)),
)  # fmt: skip


def stage(stage_id: str) -> Stage:
    """The row of ``stage_id`` (a manifest's ``stage``); raises ``KeyError`` naming the known ids."""
    for s in STAGES:
        if s.id == stage_id:
            return s
    raise KeyError(f"unknown stage {stage_id!r}; known: {', '.join(s.id for s in STAGES)}")


def markdown_table() -> str:
    """The stage table of docs/architecture.md (generated from :data:`STAGES`; a test keeps the doc in step)."""
    lines = [
        "| stage (manifest) | command | entry point | config | artefact | read it with |",
        "|---|---|---|---|---|---|",
    ]
    for s in STAGES:
        cmd = f"`cxrlens {s.command}`" if s.command else "(library / demo)"
        readers = ", ".join(f"`{r.replace(':', '.')}`" for r in s.readers)
        lines.append(
            f"| `{s.id}` | {cmd} | `{s.entry.replace(':', '.')}` | `{s.config.split(':')[1]}` | `{s.artefact}` | "
            f"{readers} |"
        )
    return "\n".join(lines) + "\n"
