"""The leak guard: a report run must not be scored on a split its interpretation described or calibrated on."""

from __future__ import annotations

import dataclasses
from typing import Any

from cxrlens.errors import BadInputError
from cxrlens.workspace import Workspace, read_manifest

__all__ = ["LeakCheck", "LeakyEvaluationError", "leak_check", "leak_record"]


class LeakyEvaluationError(BadInputError):
    """Refusal to score a split that the interpretation behind the report run used (see :mod:`cxrlens.evaluate.run`)."""


_SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class LeakCheck:
    """What :func:`leak_check` found.

    Attributes:
        leaky: the evaluated split(s) include a split the interpretation used.
        splits: those splits; uses: split → what the interpretation used it for.
        interpretation: the interpretation run named by the report run ("" = none).
        checked: one sentence saying what was compared (or why nothing could be).
    """

    leaky: bool
    splits: tuple[str, ...] = ()
    uses: tuple[tuple[str, str], ...] = ()
    interpretation: str = ""
    checked: str = ""

    def why(self) -> str:
        """``"val for report-threshold calibration (calibrate_split)"``-style summary of the overlap."""
        return "; ".join(f"{s} for {u}" for s, u in self.uses)


def _expand(split: str) -> set[str]:
    return set(_SPLITS) if split == "all" else {split}


def leak_check(ws: Workspace, run_cfg: dict[str, Any]) -> LeakCheck:
    """Compare the splits a report run covers with the splits its interpretation used (describe / calibrate).

    ``run_cfg`` is the report run's manifest config (``interpret``, ``dataset``, ``split``). No interpretation named,
    or its manifest unreadable → not leaky, with ``checked`` saying why nothing was compared. An interpretation of
    another dataset never leaks into this one.
    """
    interp = run_cfg.get("interpret")
    if not isinstance(interp, str) or not interp:
        return LeakCheck(False, checked="not checked: the report run names no interpretation")
    manifest = read_manifest(ws.interpret(interp))
    if manifest is None:
        return LeakCheck(
            False, interpretation=interp, checked=f"not checked: interpretation {interp!r} has no readable manifest"
        )
    icfg, extra = manifest.config, manifest.extra
    i_dataset = str(extra.get("dataset") or "")
    r_dataset = str(run_cfg.get("dataset") or "")
    r_split = str(run_cfg.get("split") or "all")
    if i_dataset and r_dataset and i_dataset != r_dataset:
        checked = f"interpretation {interp!r} is on dataset {i_dataset!r}, the reports on {r_dataset!r}: no overlap"
        return LeakCheck(False, interpretation=interp, checked=checked)
    purposes = (
        (str(icfg.get("describe_split", "train")), "feature descriptions and statistics (describe_split)"),
        (str(icfg.get("calibrate_split", "val")), "report-threshold calibration (calibrate_split)"),
    )
    used: dict[str, list[str]] = {}
    for split, purpose in purposes:
        for s in sorted(_expand(split)):
            used.setdefault(s, []).append(purpose)
    overlap = sorted(_expand(r_split) & set(used))
    desc = ", ".join(f"{s} for {' and '.join(u)}" for s, u in sorted(used.items()))
    checked = f"report split {r_split!r} vs interpretation {interp!r}, which used {desc}"
    uses = tuple((s, " and ".join(used[s])) for s in overlap)
    return LeakCheck(bool(overlap), tuple(overlap), uses, interp, checked)


def leak_record(leak: LeakCheck) -> dict[str, Any] | None:
    """What ``metrics.json`` records of a leaky evaluation (None when it is not leaky)."""
    if not leak.leaky:
        return None
    return {
        "splits": list(leak.splits),
        "uses": dict(leak.uses),
        "interpretation": leak.interpretation,
        "why": f"evaluated split(s) {', '.join(leak.splits)} used by interpretation {leak.interpretation!r} "
        f"({leak.why()}); scored anyway because allow_leaky (--allow-leaky) was set",
    }
