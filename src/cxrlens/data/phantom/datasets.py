"""Phantom datasets: ``iu-phantom`` (one image per IU X-ray image id, drawn from its report) and ``cxr-sprites``
(factors sampled independently on a grid, templated reports), plus the interventional sampler :func:`sample`.

Both are written with :func:`cxrlens.data.store.import_dataset` into ``datasets/<name>/``:

* ``studies.parquet`` — the study table; ``image_path`` = ``images/<image_id>.png`` (relative to the dataset dir);
  the 14 label columns describe **what is drawn** (1 drawn, -1 drawn as uncertain, 0 not drawn).
* ``images/<image_id>.png`` — 8-bit greyscale PNG (``size`` × ``size``).
* ``masks/<image_id>.png`` — 16-bit PNG bit field, bit ``i`` = :data:`~.spec.LABEL_CHANNELS` ``[i]``
  (read with :func:`~.render.read_label_masks` → (13, H, W) bool).
* ``sample_grid.png`` — 16 images (with findings) and their mask outlines, for a quick look.
* ``factors.parquet`` — one row per image: ``image_id``, ``seed``, every :class:`~.spec.ImageSpec` factor in flat
  form (round-trips through :meth:`~.spec.ImageSpec.from_row`), ``ctr_drawn``; iu-phantom adds ``unrendered``
  (MeSH tags the renderer cannot draw), ``mesh_used``, ``labels_used`` and the report's own labels as
  ``report.<label>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from cxrlens.console import progress
from cxrlens.data.iu_xray import load_iu_xray
from cxrlens.data.phantom.acquisition import MAX_SIZE, MIN_SIZE
from cxrlens.data.phantom.anatomy import lung_atlas
from cxrlens.data.phantom.figures import sample_grid
from cxrlens.data.phantom.render import RENDERER_VERSION, encode_label_masks, label_masks, png_bytes, render
from cxrlens.data.phantom.spec import (
    DEVICE_KINDS,
    KIND_LABEL,
    KIND_SIDES,
    KIND_ZONED,
    KINDS,
    LABEL_CHANNELS,
    FindingSpec,
    ImageSpec,
)
from cxrlens.data.schema import CHEXPERT_LABELS, finalize_study_table, patient_split
from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.files import atomic_write_parquet
from cxrlens.parallel import imap_processes

__all__ = [
    "IMAGE_GRID",
    "SPRITE_GRID",
    "SPRITE_NEUTRAL",
    "IUPhantomConfig",
    "SpritesConfig",
    "iu_phantom_tables",
    "mesh_to_findings",
    "render_rows",
    "run_data_build_iu_phantom",
    "run_data_build_sprites",
    "sample",
    "sample_specs",
    "sprite_report",
    "sprites_tables",
]

SAMPLE_GRID = "sample_grid.png"  # 16 images of the dataset with their mask outlines, written with the dataset

# ------------------------------------------------------------------------------------------------------- the grid
SEVERITIES = (0.25, 0.5, 0.75, 1.0)
IMAGE_GRID: dict[str, tuple[Any, ...]] = {
    "view": ("PA", "AP"),
    "ctr": (0.38, 0.42, 0.46),
    "exposure": (-0.5, 0.0, 0.5),
    "contrast": (0.9, 1.0, 1.1),
    "noise": (0.15, 0.35, 0.6),
    "blur": (0.0, 0.5, 1.0),
    "rotation": (-4.0, -2.0, 0.0, 2.0, 4.0),
    "scale": (0.95, 1.0, 1.05),
    "shift_u": (-0.03, 0.0, 0.03),
    "shift_v": (-0.03, 0.0, 0.03),
    "marker": ("L", "none"),
    "markings": (0, 1, 2, 3, 4, 5),
}


def _finding_grid() -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for kind in KINDS:
        out[f"{kind}.present"] = (0, 1)
        out[f"{kind}.side"] = KIND_SIDES[kind]
        out[f"{kind}.zone"] = ("upper", "middle", "lower") if KIND_ZONED[kind] else ("none",)
        out[f"{kind}.severity"] = SEVERITIES
    return out


SPRITE_GRID: dict[str, tuple[Any, ...]] = {**IMAGE_GRID, **_finding_grid()}
"""Every sprite factor and its values. ``anatomy`` (0 … atlas size − 1) is sampled too; ``<kind>.present`` is 1
with probability ``p_present`` (default 0.25), every other factor uniformly; side/zone/severity of an absent kind
are sampled but have no effect."""


def _neutral(key: str, values: tuple[Any, ...]) -> Any:
    """The dataclass default of ``key`` (ImageSpec / FindingSpec field) when it is on the grid, else the middle
    grid value; ``<kind>.present`` is 0."""
    name = key.rpartition(".")[2]
    if name == "present":
        return 0
    cls = FindingSpec if "." in key else ImageSpec
    default = next((f.default for f in dataclasses.fields(cls) if f.name == name), None)
    return default if default in values else values[len(values) // 2]


SPRITE_NEUTRAL: dict[str, Any] = {"anatomy": 0, **{k: _neutral(k, v) for k, v in SPRITE_GRID.items()}}
"""The value each factor is held at when a sprites dataset varies only some factors (``vary``): anatomy 0, findings
absent, every other factor at its ``ImageSpec``/``FindingSpec`` default when that is on the grid, else at the middle
grid value (PA, CTR 0.42, exposure 0, contrast 1, noise 0.35, blur 0.5, no rotation/shift, scale 1, marker L,
markings 0)."""


def _atlas_size() -> int:

    return len(lung_atlas()[0])


def _check_vary(vary: Sequence[str] | None) -> None:
    if vary is None:
        return
    unknown = [k for k in vary if k not in SPRITE_NEUTRAL]
    if unknown:
        raise ValueError(
            f"unknown factor(s) to vary: {', '.join(map(repr, unknown))}; see "
            "cxrlens.data.phantom.datasets.SPRITE_GRID (plus 'anatomy')"
        )
    if len(set(vary)) != len(vary):
        raise ValueError(f"factors to vary are listed twice: {list(vary)}")


def _spec_from_factors(values: Mapping[str, Any]) -> ImageSpec:
    row = dict(values)
    for kind in KINDS:
        row[f"{kind}.intensity"] = 1.0
        row[f"{kind}.uncertain"] = False
    return ImageSpec.from_row(row)


def sample_specs(
    n: int,
    seed: int = 0,
    fixed: Mapping[str, Any] | None = None,
    p_present: float = 0.25,
    vary: Sequence[str] | None = None,
) -> tuple[list[ImageSpec], list[int]]:
    """``n`` sprite specs with factors drawn independently from :data:`SPRITE_GRID` (``fixed`` overrides), and a
    per-image render seed. ``vary`` (``None`` = all): only these factors (names of :data:`SPRITE_GRID` or
    ``anatomy``) are sampled, every other one is held at :data:`SPRITE_NEUTRAL`; the random draws are the same as
    with ``vary=None``, so a varied factor takes the same values in both. Raises ``ValueError`` for an unknown
    factor or a value off the grid."""
    _check_vary(vary)
    fixed = dict(fixed or {})
    n_atlas = _atlas_size()
    for key, val in fixed.items():
        if key == "anatomy":
            if not (isinstance(val, (int, np.integer)) and 0 <= int(val) < n_atlas):
                raise ValueError(f"anatomy must be an int in [0, {n_atlas}), got {val!r}")
            continue
        if key not in SPRITE_GRID:
            raise ValueError(f"unknown factor {key!r}; see cxrlens.data.phantom.datasets.SPRITE_GRID")
        if val not in SPRITE_GRID[key]:
            raise ValueError(f"factor {key!r} has no grid value {val!r}; grid: {SPRITE_GRID[key]}")
    rng = np.random.default_rng([seed, 7])
    cols: dict[str, np.ndarray] = {"anatomy": rng.integers(0, n_atlas, n)}
    for key, values in SPRITE_GRID.items():
        if key.endswith(".present"):
            cols[key] = (rng.random(n) < p_present).astype(int)
        else:
            cols[key] = np.asarray(values, dtype=object)[rng.integers(0, len(values), n)]
    seeds = rng.integers(0, 2**31 - 1, n)
    if vary is not None:
        for key in cols.keys() - set(vary):
            cols[key] = np.full(n, SPRITE_NEUTRAL[key], dtype=object)
    specs = []
    for i in range(n):
        values = {k: (v[i].item() if isinstance(v[i], np.generic) else v[i]) for k, v in cols.items()}
        values.update(fixed)
        specs.append(_spec_from_factors(values))
    return specs, [int(s) for s in seeds]


# ------------------------------------------------------------------------------------------ templated reports
def _sev_word(sev: float) -> str:
    return "small" if sev < 0.4 else ("moderate" if sev < 0.8 else "large")


def _grade(sev: float) -> str:
    return "mild" if sev < 0.4 else ("moderate" if sev < 0.8 else "severe")


def _where(f: FindingSpec) -> str:
    zone = f" {f.zone} zone" if f.zone != "none" else ""
    return f"{f.side}{zone}" if f.side != "bilateral" else f"{zone.strip() or 'lungs'}s, bilaterally"


def sprite_report(spec: ImageSpec) -> tuple[str, str]:
    """Templated (findings, impression) for a spec: one sentence per present finding, standard negatives else."""
    pos: list[str] = []
    neg: list[str] = []
    f = spec.finding
    c = f("cardiomegaly")
    pos.append(f"The heart is {_grade(c.severity)}ly enlarged.") if c else neg.append("The heart is normal in size.")
    m = f("enlarged_cardiomediastinum")
    if m:
        pos.append("The mediastinum is widened.")
    else:
        neg.append("The mediastinal contours are normal.")
    e = f("pleural_effusion")
    p = f("pneumothorax")
    if e:
        pos.append(f"There is a {_sev_word(e.severity)} {e.side} pleural effusion.")
    if p:
        pos.append(f"There is a {_sev_word(p.severity)} {p.side} pneumothorax.")
    if not e and not p:
        neg.append("No pleural effusion or pneumothorax.")
    elif not e:
        neg.append("No pleural effusion.")
    elif not p:
        neg.append("No pneumothorax.")
    sentences = {
        "consolidation": lambda x: f"Dense consolidation with air bronchograms in the {_where(x)}.",
        "pneumonia": lambda x: f"Patchy airspace opacities in the {_where(x)}, consistent with pneumonia.",
        "atelectasis": lambda x: f"Plate-like atelectasis in the {_where(x)} with volume loss.",
        "edema": lambda x: f"Perihilar haziness and Kerley B lines, consistent with {_grade(x.severity)} edema.",
        "lung_opacity": lambda x: f"Hazy opacity in the {_where(x)}.",
        "lung_lesion": lambda x: (
            f"A {round(6 + 22 * x.severity)} mm nodule in the {_where(x)}."
            if x.severity < 0.5
            else f"A {2.5 + 5 * (x.severity - 0.5):.1f} cm mass in the {_where(x)}."
        ),
        "pleural_other": lambda x: f"Pleural thickening along the {_where(x)} lateral chest wall.",
        "fracture": lambda x: f"Fracture of a {x.side} {x.zone} rib.".replace("bilateral", "right and a left"),
        "ett": lambda x: "Endotracheal tube with the tip above the carina.",
        "enteric_tube": lambda x: "Enteric tube coursing below the diaphragm into the stomach.",
        "central_line": lambda x: (
            f"{x.side.capitalize()} subclavian central venous catheter, tip at the cavoatrial junction."
        ),
        "pacemaker": lambda x: f"{x.side.capitalize()}-sided pacemaker with leads in the right atrium and ventricle.",
        "chest_tube": lambda x: f"{x.side.capitalize()} chest tube in place.",
    }
    for kind, make in sentences.items():
        g = f(kind)
        if g:
            pos.append(make(g))
    if not any(f(k) for k in ("consolidation", "pneumonia", "lung_opacity", "edema", "atelectasis")):
        neg.append("The lungs are clear without focal consolidation.")
    if not f("fracture"):
        neg.append("No acute osseous abnormality.")
    findings = " ".join(pos + neg)
    impression = " ".join(pos[:3]) if pos else "No acute cardiopulmonary abnormality."
    return findings, impression


# ------------------------------------------------------------------------------------------------ rendering
def _render_one(job: tuple[str, dict[str, Any], int, int, str]) -> tuple[str, float]:

    image_id, row, seed, size, out_dir = job
    r = render(ImageSpec.from_row(row), size, seed)
    out = Path(out_dir)
    (out / "images" / f"{image_id}.png").write_bytes(png_bytes(r.image))
    (out / "masks" / f"{image_id}.png").write_bytes(encode_label_masks(label_masks(r)))
    return image_id, r.ctr


def _worker_init() -> None:
    """Runs once in each (spawned, hence thread-free) rendering worker: one OpenCV thread per process."""

    cv2.setNumThreads(1)


def render_rows(factors: pd.DataFrame, size: int, out_dir: Path, workers: int | None = None) -> dict[str, float]:
    """Render every row of ``factors`` (needs ``image_id``, ``seed`` and the flat spec columns) into
    ``out_dir/images`` and ``out_dir/masks`` with a process pool and a progress bar; returns image_id → drawn CTR.

    The pool's workers are spawned, never forked (:mod:`cxrlens.parallel`): a fork of this threaded parent
    deadlocked in ``cv2.setNumThreads``. A worker that dies or hangs ends the build with
    :class:`~cxrlens.parallel.WorkerPoolError`.
    """

    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    records = factors.to_dict("records")
    jobs = [(str(r["image_id"]), r, int(r["seed"]), size, str(out_dir)) for r in records]
    workers = workers if workers is not None else min(len(jobs), os.cpu_count() or 1)
    ctr: dict[str, float] = {}
    with progress() as bar:
        task = bar.add_task(f"rendering {len(jobs):,} phantoms", total=len(jobs))
        if workers <= 1:
            results: Iterable[tuple[str, float]] = map(_render_one, jobs)
        else:
            results = imap_processes(
                _render_one,
                jobs,
                stage=f"rendering {len(jobs):,} phantoms",  # the progress bar's words (out_dir is a temp build dir)
                workers=workers,
                initializer=_worker_init,
                chunksize=32,
                hint="rerun with --workers 1 to render in the main process",
            )
        for image_id, c in results:
            ctr[image_id] = c
            bar.advance(task)
    return ctr


def _image_seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "big") & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------------------- sprites
@dataclasses.dataclass(frozen=True)
class SpritesConfig:
    """Config of ``cxrlens data build sprites``.

    Attributes:
        n: number of images; size: pixels (32 … 512); seed: sampling and render seed;
        p_present: probability that each finding kind is present (independently).
        vary: the factors that vary (names of :data:`SPRITE_GRID` or ``anatomy``); every other one is held at
            :data:`SPRITE_NEUTRAL`. ``None`` (default) = all of them.
    """

    n: int = 2000
    size: int = 224
    seed: int = 0
    p_present: float = 0.25
    vary: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_vary(self.vary)


def sprites_tables(config: SpritesConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(studies, factors) of the sprites dataset, without rendering."""
    specs, seeds = sample_specs(config.n, config.seed, p_present=config.p_present, vary=config.vary)
    ids = [f"sprite-{i:06d}" for i in range(config.n)]
    factors = pd.DataFrame(
        [{"image_id": i, "seed": s, **sp.to_row()} for i, s, sp in zip(ids, seeds, specs, strict=True)]
    )
    reports = [sprite_report(sp) for sp in specs]
    studies = pd.DataFrame(
        {
            "study_id": ids,
            "image_id": ids,
            "patient_id": ids,
            "image_path": [f"images/{i}.png" for i in ids],
            "view": [sp.view for sp in specs],
            "findings": [r[0] for r in reports],
            "impression": [r[1] for r in reports],
            "source": "cxr-sprites",
        }
    )
    studies["split"] = studies["patient_id"].map(patient_split(ids, config.seed))
    labels = pd.DataFrame([sp.labels for sp in specs])
    for lab in CHEXPERT_LABELS:
        studies[lab] = labels[lab].to_numpy(np.float32)
    return finalize_study_table(studies), factors


def run_data_build_sprites(
    workspace,
    config: SpritesConfig | None = None,
    *,
    name: str = "cxr-sprites",
    force: bool = False,
    workers: int | None = None,
):
    """Build ``datasets/<name>`` (default ``cxr-sprites``); skipped when current. Returns the StageResult."""

    config = config or SpritesConfig()
    _check_size(config.size)

    def load() -> LoadedDataset:
        studies, factors = sprites_tables(config)
        extra = {"grid": {k: list(v) for k, v in SPRITE_GRID.items()}, **_mask_meta(config.size)}
        if config.vary is not None:
            extra["vary"] = list(config.vary)
            extra["held"] = {k: v for k, v in SPRITE_NEUTRAL.items() if k not in config.vary}
        return LoadedDataset(studies, {"factors": factors}, (), (), extra)

    return _import_rendered(workspace, name, "data.build.sprites", config, load, force, workers)


def _import_rendered(workspace, name: str, stage: str, config, load, force: bool, workers: int | None):
    """``import_dataset`` of a phantom dataset: tables from ``load()``, images and masks rendered into the build
    directory, and the renderer version folded into the hash (images of an older renderer are not reused)."""

    def write(tmp: Path, loaded) -> None:
        _write_rendered(tmp, loaded, config.size, workers)

    return import_dataset(
        workspace,
        name,
        stage=stage,
        config=config,
        load=load,
        force=force,
        write_files=write,
        upstream={"renderer": f"cxrlens.data.phantom v{RENDERER_VERSION}"},
    )


def _mask_meta(size: int) -> dict[str, Any]:

    return {
        "size": size,
        "images": "images/<image_id>.png, 8-bit greyscale",
        "masks": "masks/<image_id>.png, 16-bit greyscale bit field; bit i = mask_channels[i]",
        "mask_channels": list(LABEL_CHANNELS),
    }


def _write_rendered(tmp: Path, loaded, size: int, workers: int | None) -> None:

    factors = loaded.tables["factors"]
    ctr = render_rows(factors, size, tmp, workers)
    factors = factors.assign(ctr_drawn=factors["image_id"].map(ctr).astype("float32"))
    atomic_write_parquet(tmp / "factors.parquet", factors)
    if len(factors):
        sample_grid(tmp, tmp / SAMPLE_GRID)


def _check_size(size: int) -> None:

    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be in [{MIN_SIZE}, {MAX_SIZE}], got {size}")


def sample(
    fixed: Mapping[str, Any] | None = None,
    n: int = 64,
    *,
    seed: int = 0,
    size: int = 64,
    p_present: float = 0.25,
    vary: Sequence[str] | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Interventional sampler for BetaVAE/FactorVAE-style scores: ``n`` sprites whose factors are all sampled
    independently from :data:`SPRITE_GRID` except those in ``fixed`` (``{factor: grid value}``), which are held.
    ``vary`` restricts the sampled factors as in :func:`sample_specs` (use the dataset's ``SpritesConfig.vary``).

    Returns:
        images: (n, size, size) float32 in [0, 1]; factors: (n, …) flat factor rows (as in ``factors.parquet``).
    """

    specs, seeds = sample_specs(n, seed, fixed, p_present, vary)
    images = np.stack([render(sp, size, s).image for sp, s in zip(specs, seeds, strict=True)])
    factors = pd.DataFrame([{"seed": s, **sp.to_row()} for sp, s in zip(specs, seeds, strict=True)])
    return images, factors


# ------------------------------------------------------------------------------------------------- iu-phantom
_SEVERITY_WORDS = {
    "minimal": 0.15,
    "borderline": 0.15,
    "small": 0.25,
    "mild": 0.25,
    "moderate": 0.55,
    "large": 0.85,
    "severe": 0.85,
    "massive": 1.0,
}
_ZONE_WORDS = {
    "base": "lower",
    "lower lobe": "lower",
    "upper lobe": "upper",
    "apex": "upper",
    "middle lobe": "middle",
    "lingula": "middle",
    "hilum": "middle",
}


def _mesh_kind(parts: list[str]) -> str | None:
    head = parts[0]
    rest = set(parts[1:])
    if head in ("cardiomegaly",) or (head == "cardiac shadow" and "enlarged" in rest):
        return "cardiomegaly"
    if head == "mediastinum" and rest & {"prominent", "enlarged", "widened"}:
        return "enlarged_cardiomediastinum"
    if head == "pleural effusion" or (head == "costophrenic angle" and "blunted" in rest):
        return "pleural_effusion"
    if head == "pneumothorax":
        return "pneumothorax"
    if head in ("consolidation", "airspace disease"):
        return "consolidation"
    if head in ("pneumonia", "bronchopneumonia"):
        return "pneumonia"
    if head in ("pulmonary atelectasis", "atelectases"):
        return "atelectasis"
    if head in ("pulmonary edema", "pulmonary congestion"):
        return "edema"
    if head in ("nodule", "mass", "lung/mass", "calcified granuloma", "granuloma", "neoplasms", "lung neoplasms"):
        return "lung_lesion"
    if head in ("opacity", "infiltrate", "density") and (not rest or "lung" in rest or rest & set(_ZONE_WORDS)):
        return "lung_opacity"
    if head in ("pleura", "thickening") and ("thickening" in rest or "pleura" in rest):
        return "pleural_other"
    if head == "fractures, bone" and "ribs" in rest:
        return "fracture"
    if head == "catheters, indwelling" or head == "catheters":
        return "central_line"
    if head == "tube, inserted":
        return "ett" if rest & {"trachea", "trachea, carina"} else "enteric_tube"
    if head == "implanted medical device":
        return "pacemaker"
    return None


def mesh_to_findings(
    tags: Iterable[str], rng: np.random.Generator
) -> tuple[dict[str, FindingSpec], list[str], list[str]]:
    """MeSH major tags of one report → (kind → FindingSpec, tags used, tags the renderer cannot draw).

    Side/zone/severity come from the tag's modifiers (``Pleural Effusion/right/small`` → right, severity 0.25;
    ``Opacity/lung/base/left`` → left lower zone); missing ones are drawn at random from ``rng``. ``normal`` and
    ``No Indexing`` are neither used nor unrendered.
    """
    found: dict[str, FindingSpec] = {}
    used: list[str] = []
    unrendered: list[str] = []
    for tag in tags:
        parts = [p.strip().lower() for p in tag.split("/") if p.strip()]
        if not parts or parts[0] in ("normal", "no indexing"):
            continue
        kind = _mesh_kind(parts)
        if kind is None:
            unrendered.append(tag)
            continue
        used.append(tag)
        if kind in found:
            continue
        found[kind] = _finding_from_words(kind, parts[1:], rng, head=parts[0])
    return found, used, unrendered


def _finding_from_words(kind: str, words: Sequence[str], rng: np.random.Generator, head: str = "") -> FindingSpec:
    sides = KIND_SIDES[kind]
    side = next((w for w in words if w in ("left", "right", "bilateral")), None)
    if side not in sides:  # unstated, or not possible for this kind (a "bilateral" central line): draw one
        side = sides[int(rng.integers(len(sides)))]
    zone = "none"
    if KIND_ZONED[kind]:
        zone = next((_ZONE_WORDS[w] for w in words if w in _ZONE_WORDS), None) or str(
            rng.choice(["upper", "middle", "lower"])
        )
    sev = next((_SEVERITY_WORDS[w] for w in words if w in _SEVERITY_WORDS), None)
    if kind == "lung_lesion":  # severity < 0.5 draws a nodule, ≥ 0.5 a mass
        mass = head in ("mass", "lung/mass", "neoplasms", "lung neoplasms")
        sev = max(sev or 0.7, 0.55) if mass else min(sev or 0.2, 0.45)
    if kind == "pleural_effusion" and head == "costophrenic angle":
        sev = 0.1
    if sev is None:
        sev = float(rng.choice([0.25, 0.5, 0.75]))
    uncertain = "borderline" in words
    return FindingSpec(kind, side, zone, float(sev), 0.5 if uncertain else 1.0, uncertain)


@dataclasses.dataclass(frozen=True)
class IUPhantomConfig:
    """Config of ``cxrlens data build iu-phantom``.

    Attributes:
        n: render only the first ``n`` IU image ids (``None`` = all 7,470).
        size: pixels (32 … 512); seed: seed of anatomy, acquisition, unstated attributes and textures.
        uncertain: ``faint`` (draw uncertain findings at intensity 0.5) or ``omit`` (record, do not draw).
    """

    n: int | None = None
    size: int = 224
    seed: int = 0
    uncertain: str = "faint"

    def __post_init__(self) -> None:
        if self.uncertain not in ("faint", "omit"):
            raise ValueError(f"uncertain must be 'faint' or 'omit', got {self.uncertain!r}")


_LABEL_KIND = {KIND_LABEL[k]: k for k in KINDS if k not in DEVICE_KINDS}


def iu_phantom_tables(config: IUPhantomConfig) -> tuple[pd.DataFrame, pd.DataFrame, tuple, tuple]:
    """(studies, factors, skipped inputs, input files) of iu-phantom, without rendering."""

    t = load_iu_xray()
    src = t.studies if config.n is None else t.studies.iloc[: config.n]
    src, labels_source = _with_labels(src)
    n_atlas = _atlas_size()
    studies_rows, factor_rows = [], []
    for rec in src.to_dict("records"):
        image_id = str(rec["image_id"])
        rng = np.random.default_rng(_image_seed(config.seed, image_id))
        found, used, unrendered = mesh_to_findings(list(rec["mesh_major"]), rng)
        labels_used = []
        heads = {tag.split("/")[0].strip().lower() for tag in unrendered}
        for lab, kind in _LABEL_KIND.items():
            val = rec.get(lab)
            if val is None or np.isnan(val) or kind in found or heads & _LABEL_BLOCKERS.get(lab, set()):
                continue
            if val == 1.0 or val == -1.0:
                f = _finding_from_words(kind, [], rng)
                if val == -1.0:
                    f = dataclasses.replace(f, uncertain=True, intensity=0.5)
                found[kind] = f
                labels_used.append(lab)
        sd = rec.get("Support Devices")
        blocked = heads & _LABEL_BLOCKERS["Support Devices"]
        if (
            sd is not None
            and not np.isnan(sd)
            and sd != 0
            and not blocked
            and not any(k in found for k in DEVICE_KINDS)
        ):
            kind = str(rng.choice(["central_line", "pacemaker", "ett", "enteric_tube"]))
            f = _finding_from_words(kind, [], rng)
            found[kind] = dataclasses.replace(f, uncertain=sd == -1.0, intensity=0.5 if sd == -1.0 else 1.0)
            labels_used.append("Support Devices")
        drawn = tuple(f for f in found.values() if not (f.uncertain and config.uncertain == "omit"))
        view = "AP" if rec["view"] == "AP" else "PA"
        acq = {k: v[int(rng.integers(len(v)))] for k, v in IMAGE_GRID.items() if k != "view"}
        acq["marker"] = "L"
        spec = ImageSpec(findings=drawn, anatomy=int(rng.integers(n_atlas)), view=view, **acq)
        row = {"image_id": image_id, "seed": int(rng.integers(2**31 - 1)), **spec.to_row()}
        row["uncertain_omitted"] = [f.kind for f in found.values() if f.uncertain and config.uncertain == "omit"]
        row["unrendered"] = unrendered
        row["mesh_used"] = used
        row["labels_used"] = labels_used
        for lab in CHEXPERT_LABELS:
            row[f"report.{lab}"] = rec.get(lab, np.nan)
        factor_rows.append(row)
        labels = spec.labels
        srow = {k: rec[k] for k in ("study_id", "image_id", "patient_id", "split", "findings", "impression")}
        srow.update(
            image_path=f"images/{image_id}.png",
            view=view,
            source="iu-phantom",
            view_source=rec["view"],
            mesh_major=list(rec["mesh_major"]),
            unrendered=unrendered,
        )
        for lab in CHEXPERT_LABELS:
            srow[lab] = labels[lab]
        if unrendered and not drawn:
            srow["No Finding"] = np.nan  # the image looks normal but the report is not: unknown
        studies_rows.append(srow)
    studies = finalize_study_table(pd.DataFrame(studies_rows))
    factors = pd.DataFrame(factor_rows)
    factors.attrs["labels_source"] = labels_source
    return studies, factors, t.errors, t.inputs


# a report label is not drawn from the label alone when the report's MeSH tags already name it as something the
# renderer cannot draw (a vertebral fracture, sternotomy wires …)
_LABEL_BLOCKERS: dict[str, set[str]] = {
    "Fracture": {"fractures, bone"},
    "Support Devices": {"surgical instruments", "medical device", "prostheses", "stents", "sutures", "foreign bodies"},
    "Lung Lesion": {"granulomatous disease"},
}


def _with_labels(studies: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The IU study table with its 14 report labels: as loaded when :func:`load_iu_xray` filled them, else from
    :func:`cxrlens.data.labeler.label_study_table` when the labeler is available, else left NaN (MeSH only)."""
    if studies[list(CHEXPERT_LABELS)].notna().to_numpy().any():
        return studies, "load_iu_xray"
    try:
        from cxrlens.data.labeler import label_study_table
    except ImportError:
        return studies, "none (MeSH tags only)"
    return label_study_table(studies), "cxrlens.data.labeler (applied by iu-phantom)"


def run_data_build_iu_phantom(
    workspace,
    config: IUPhantomConfig | None = None,
    *,
    name: str = "iu-phantom",
    force: bool = False,
    workers: int | None = None,
):
    """Build ``datasets/<name>`` (default ``iu-phantom``) from the IU X-ray reports; skipped when current."""

    config = config or IUPhantomConfig()
    _check_size(config.size)

    def load() -> LoadedDataset:
        studies, factors, errors, inputs = iu_phantom_tables(config)
        n_unr = int((factors["unrendered"].map(len) > 0).sum())
        extra = {
            **_mask_meta(config.size),
            "license": "reports: CC BY-NC-ND 4.0 (IU X-ray / Open-i); lung masks: v7labs via torchxrayvision",
            "images_with_unrendered_findings": n_unr,
            "report_labels": factors.attrs.get("labels_source", ""),
            "findings_drawn": {k: int(factors[f"{k}.present"].sum()) for k in KINDS},
        }
        return LoadedDataset(studies, {"factors": factors}, errors, inputs, extra)

    return _import_rendered(workspace, name, "data.build.iu-phantom", config, load, force, workers)
