"""Reports from an interpretation run: a :class:`ReportModel` for new images and the batch ``report`` stage.

A *report model* is an ``interpret/<run>`` directory: it names the SAE, the activation store it was trained on
(hence the backbone spec, layer and token) and holds the feature descriptions and calibrated thresholds. For a new
image the model runs preprocess → backbone → SAE → :func:`~cxrlens.report.compile.compile_report`.

The batch stage (``cxrlens report --dataset D --split test --model RUN``) takes the SAE codes of a dataset split
from an activation store of the same backbone (no backbone pass needed) and writes ``reports/<run>/``:

* ``reports.jsonl`` — one JSON object per image: ``image_id, study_id, split, generated_text, reference_text,
  report`` (the compiled report with evidence per sentence, :meth:`CompiledReport.to_json`); ``generated_text`` and
  ``reference_text`` are plain text (findings then impression sentences, no section headers), which is what
  ``cxrlens evaluate reports`` scores;
* ``manifest.json`` whose config names ``interpret``, ``dataset``, ``activations``, ``stream`` and ``split``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file

from cxrlens.activations import ActivationStore, ExtractConfig, default_run_name
from cxrlens.backbones.registry import load_backbone
from cxrlens.console import progress
from cxrlens.data.images import load_image
from cxrlens.data.store import read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes
from cxrlens.interpret.codes import StreamNames, encode_codes, image_codes, image_reports, token_code_maps
from cxrlens.interpret.describe import default_embed, default_signature
from cxrlens.interpret.readout import FindingReadout
from cxrlens.interpret.run import read_interpretation
from cxrlens.report.compile import CompileConfig, CompiledReport, DescriptionBank, compile_findings, compile_report
from cxrlens.sae.io import load_sae
from cxrlens.workspace import StageResult, Workspace, artefact_identity, read_manifest, run_stage

__all__ = ["ReportConfig", "ReportModel", "generated_text", "read_reports", "run_report"]


def generated_text(report: CompiledReport) -> str:
    """Plain text of a compiled report: findings sentences, then impression sentences (no headers)."""
    return " ".join([s.text for s in report.findings] + [s.text for s in report.impression]).strip()


@dataclass
class ReportModel(StreamNames):
    """Everything needed to write a report for an image: descriptions, thresholds, SAE and (lazily) the backbone.

    Attributes:
        run: interpretation run name; bank: description sentences with embeddings/signatures;
        thresholds: (n_features,) float32; descriptions: feature → description text;
        activations, stream, dataset, backbone_spec, sae_run: provenance from the interpretation manifest.
    """

    ws: Workspace
    run: str
    bank: DescriptionBank
    thresholds: np.ndarray
    descriptions: dict[int, str]
    activations: str
    stream: str
    dataset: str
    backbone_spec: str
    sae_run: str
    config: CompileConfig = field(default_factory=CompileConfig)
    readout: Any = None
    grid: tuple[int, int] | None = None
    _sae: Any = None
    _backbone: Any = None

    @classmethod
    def load(
        cls,
        ws: Workspace,
        run: str,
        *,
        config: CompileConfig | None = None,
        describer: str = "primary",
        embed: Callable[[Sequence[str]], np.ndarray] | None = None,
        signature: Callable[[Sequence[str]], np.ndarray] | None = None,
    ) -> ReportModel:
        """Open ``interpret/<run>``; ``embed``/``signature`` default to MiniLM and the labeler (as the describer).

        ``describer``: ``primary`` (``descriptions.parquet``: the LLM's when the run had one) or ``extractive``
        (``descriptions_extractive.parquet`` of an LLM run, else the primary file, which is then extractive).
        """

        d = ws.interpret(run)
        manifest = read_manifest(d)
        if manifest is None:
            raise BadInputError(d, "interpretation run not found; run `cxrlens interpret --sae RUN` first")
        if describer not in ("primary", "extractive"):
            raise BadInputError(None, f"describer must be primary or extractive, got {describer!r}")
        _, desc = read_interpretation(ws, run)
        if describer == "extractive" and (d / "descriptions_extractive.parquet").exists():
            desc = pd.read_parquet(d / "descriptions_extractive.parquet")
        try:
            thresholds = load_file(str(d / "thresholds.safetensors"))["thresholds"]
        except Exception as exc:  # safetensors raises its own error types
            raise BadInputError(d / "thresholds.safetensors", f"not readable ({exc})") from None
        bank = DescriptionBank.from_descriptions(
            desc, embed=embed or default_embed, signature=signature or default_signature
        )
        extra = manifest.extra
        cfg = config or CompileConfig()
        readout = None
        if cfg.compiler == "readout":
            readout = FindingReadout.load(d)
        grid = extra.get("grid")
        return cls(
            ws,
            run,
            bank,
            np.asarray(thresholds, np.float32),
            {int(f): str(t) for f, t in zip(desc["feature"], desc["description"], strict=True)},
            str(extra["activations"]),
            str(extra["stream"]),
            str(extra["dataset"]),
            str(extra.get("backbone") or ""),
            str(manifest.config["sae"]),
            cfg,
            readout,
            tuple(grid) if grid else None,
        )

    @property
    def sae(self) -> Any:
        if self._sae is None:
            self._sae = load_sae(self.ws.sae(self.sae_run))
        return self._sae

    @property
    def backbone(self) -> Any:
        if self._backbone is None:
            if not self.backbone_spec:
                raise BadInputError(
                    self.ws.activations(self.activations), "the store records no backbone; cannot encode new images"
                )
            self._backbone = load_backbone(self.backbone_spec, workspace=self.ws)
        return self._backbone

    def encode_maps(self, gray_BHW: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Image codes ``(B, n_features)`` of grayscale [0, 1] images ``gray_BHW: (B, H, W)`` (one size per call)
        and, for a patch-token SAE, the per-patch codes ``(B, T, n_features)`` (else None). Image code = the code
        of the stream's token, or the maximum over patches (:func:`cxrlens.interpret.codes.image_codes`)."""

        bb = self.backbone
        x = bb.preprocess(torch.as_tensor(gray_BHW, dtype=torch.float32))
        tokens = bb.encode(x, layers=[self.layer], tokens=(self.token,)).get(self.token, self.layer).cpu()
        if tokens.dim() == 2:
            return encode_codes(self.sae, tokens), None
        B, T, D = tokens.shape
        maps = encode_codes(self.sae, tokens.reshape(B * T, D)).reshape(B, T, -1)
        return maps.max(1), maps

    def encode(self, gray_BHW: Any) -> np.ndarray:
        """Image codes (B, n_features) of grayscale [0, 1] images ``gray_BHW: (B, H, W)``."""
        return self.encode_maps(gray_BHW)[0]

    def compile(
        self, codes_F: np.ndarray, heatmaps: dict[int, str] | None = None, maps_TF: np.ndarray | None = None
    ) -> CompiledReport:
        """The report of one image's codes ``(n_features,)`` (``maps_TF``: its per-patch codes, patch SAEs)."""
        if self.readout is not None:
            return compile_findings(
                codes_F,
                self.readout,
                self.bank,
                self.thresholds,
                self.readout.sentences(),
                self.config,
                maps_TF=maps_TF,
                grid=self.grid,
            )
        return compile_report(codes_F, self.bank, self.thresholds, self.config, heatmaps=heatmaps)

    def report_files(self, paths: Sequence[str | Path]) -> list[tuple[Path, CompiledReport | None, str | None]]:
        """(path, report or None, error or None) per image file (PNG/JPEG/DICOM); a bad file is reported, not fatal."""

        out: list[tuple[Path, CompiledReport | None, str | None]] = []
        for p in map(Path, paths):
            try:
                gray = np.asarray(load_image(p), np.float32)
            except BadInputError as exc:
                out.append((p, None, exc.problem))
                continue
            except Exception as exc:  # unreadable image of any kind: one line, go on
                out.append((p, None, f"{type(exc).__name__}: {exc}".splitlines()[0]))
                continue
            codes, maps = self.encode_maps(gray[None])
            out.append((p, self.compile(codes[0], maps_TF=None if maps is None else maps[0]), None))
        return out


@dataclass(frozen=True)
class ReportConfig:
    """The batch report stage (hashed into the manifest).

    Attributes:
        interpret: interpretation run (the report model).
        dataset: dataset to report on ("" = the interpretation's dataset).
        activations: activation store with that dataset's codes ("" = the interpretation's store when the dataset
            is the same, else the default store name of the dataset and the model's backbone).
        stream: stream of the store (always the model's stream; filled in by the stage).
        split: ``train``, ``val``, ``test`` or ``all``.
        max_images: report at most this many images of the split (0 = all), the first ones in store order.
        describer: ``primary`` or ``extractive`` descriptions (see :meth:`ReportModel.load`) — reporting the same
            features with both, then evaluating each, is the describer-robustness comparison.
        compile: the compiler's config.
    """

    interpret: str
    dataset: str = ""
    activations: str = ""
    stream: str = ""
    split: str = "test"
    max_images: int = 0
    describer: str = "primary"
    compile: CompileConfig = field(default_factory=CompileConfig)

    def __post_init__(self) -> None:
        if self.split not in ("train", "val", "test", "all"):
            raise BadInputError(None, f"split must be train, val, test or all, got {self.split!r}")
        if self.max_images < 0:
            raise BadInputError(None, "max_images must be ≥ 0")


def _resolve(ws: Workspace, cfg: ReportConfig, model: ReportModel) -> ReportConfig:

    dataset = cfg.dataset or model.dataset
    store = cfg.activations
    if not store:
        if dataset == model.dataset:
            store = model.activations
        elif not model.backbone_spec:
            raise BadInputError(
                ws.activations(model.activations), f"no activations of dataset {dataset!r} for this model (no backbone)"
            )
        else:
            store = default_run_name(ExtractConfig(dataset=dataset, backbone=model.backbone_spec))
    if not (ws.activations(store) / "manifest.json").exists():
        raise BadInputError(
            ws.activations(store),
            f"no activations of dataset {dataset!r}; run `cxrlens extract -d {dataset} -b {model.backbone_spec}`",
        )
    return dataclasses.replace(cfg, dataset=dataset, activations=store, stream=model.stream)


def run_report(
    ws: Workspace,
    cfg: ReportConfig,
    *,
    run: str | None = None,
    model: ReportModel | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> StageResult:
    """Compile a report for every image of ``cfg.split`` into ``reports/<run>`` (default ``<interpret>-<split>``)."""

    model = model or ReportModel.load(ws, cfg.interpret, config=cfg.compile, describer=cfg.describer)
    cfg = _resolve(ws, cfg, model)
    suffix = ("" if cfg.describer == "primary" else f"-{cfg.describer}") + (
        "" if cfg.compile.compiler == "readout" else f"-{cfg.compile.compiler}"
    )
    out_dir = ws.reports(run or f"{cfg.interpret}-{cfg.split}{suffix}")

    def build(tmp: Path) -> dict[str, Any]:
        store = ActivationStore(ws.activations(cfg.activations))
        if cfg.stream not in store.stream_names:
            raise BadInputError(store.path, f"the store has no stream {cfg.stream!r} (the model's stream)")
        index = store.index
        rows = np.arange(len(index)) if cfg.split == "all" else np.flatnonzero(index["split"].astype(str) == cfg.split)
        if cfg.max_images:
            rows = rows[: cfg.max_images]
        if len(rows) == 0:
            raise BadInputError(store.path, f"no images in split {cfg.split!r}")
        patch = store.info(cfg.stream).tokens_per_image > 1 and model.readout is not None
        # a readout on patch codes needs each image's per-patch codes anyway: its image code is their maximum, so
        # the patches are encoded once, in the loop, instead of once here and again there
        codes = None if patch else image_codes(model.sae, store, cfg.stream, rows).codes_NF
        ids = index["image_id"].to_numpy()[rows]
        studies = read_studies(ws, cfg.dataset)
        refs = image_reports(studies, ids)
        lines: list[bytes] = []
        seconds = 0.0
        with progress(disable=not show_progress) as bar:
            task = bar.add_task("report: compile", total=len(rows))
            for i, r in enumerate(rows):
                t0 = time.perf_counter()
                maps = token_code_maps(model.sae, store, cfg.stream, int(r)) if patch else None
                rep = model.compile(maps.max(0) if maps is not None else codes[i], maps_TF=maps)
                seconds += time.perf_counter() - t0
                obj = {
                    "image_id": str(ids[i]),
                    "study_id": str(index["study_id"].iloc[r]),
                    "split": str(index["split"].iloc[r]),
                    "generated_text": generated_text(rep),
                    "reference_text": refs[i],
                    "report": rep.to_json(),
                }
                lines.append((json.dumps(obj, allow_nan=False, default=_json_default) + "\n").encode())
                bar.advance(task)
        atomic_write_bytes(tmp / "reports.jsonl", b"".join(lines))
        empty = sum(1 for line in lines if b'"generated_text": ""' in line)
        return {
            "rows": {"reports": len(lines), "empty_reports": empty},
            "extra": {"compile_ms_per_report": 1000.0 * seconds / max(len(lines), 1)},
        }

    upstream = {
        f"interpret/{cfg.interpret}": artefact_identity(ws.interpret(cfg.interpret)),
        f"activations/{cfg.activations}": artefact_identity(ws.activations(cfg.activations)),
        f"datasets/{cfg.dataset}": artefact_identity(ws.dataset(cfg.dataset)),
    }
    return run_stage(out_dir, stage="report", config=cfg, build=build, force=force, upstream=upstream)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_reports(ws: Workspace, run: str) -> pd.DataFrame:
    """``reports/<run>/reports.jsonl`` as a table (``report`` stays a dict per row)."""
    path = ws.reports(run) / "reports.jsonl"
    if not path.exists():
        raise BadInputError(path, "report run not found; run `cxrlens report --dataset … --model …` first")
    return pd.read_json(path, lines=True, dtype=False)
