"""A benchmark question set drawn from ground truth (a facts table): questions, their parse and the right answer.

:func:`generate_questions` asks, about the given images, questions of every answerable kind in roughly equal shares
(presence, laterality, severity, device, device_position, findings, normal) and, within a yes/no kind, as many
"yes" as "no" answers. Each kind has several phrasing templates, with synonyms, abbreviations and a few typos
(:data:`FINDING_NAMES`, :data:`DEVICE_NAMES`), and every question parses back (:func:`~cxrlens.qa.questions.
parse_question`) to its own kind, finding, device, side, severity and polarity.

Answers follow the facts (columns ``image_id, finding, side, severity, device, certain``, as
:func:`cxrlens.align.search.facts_from_phantom` writes them): an image with no fact row for a finding does not
have it; only ``certain`` facts are positives, and an image whose finding is present-but-uncertain is left out of
that finding's questions (of the ``findings`` question when any of its facts is uncertain). Support devices do not
make an image abnormal (CheXpert's "No Finding" allows them), but they are listed by a ``findings`` answer.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Sequence

import pandas as pd

from cxrlens.qa.vocab import DEVICES, FINDINGS, LATERAL_DEVICES, LATERAL_FINDINGS, SEVERITIES, SEVERITY_FINDINGS, SIDES

__all__ = ["DEVICE_NAMES", "FINDING_NAMES", "QUESTION_COLUMNS", "generate_questions"]

QUESTION_COLUMNS = ("image_id", "question", "kind", "finding", "device", "side", "severity", "polarity", "answer")
_KINDS = ("presence", "laterality", "severity", "device", "device_position", "findings", "normal")
_YES_NO = frozenset({"presence", "device", "normal"})
_SD = "Support Devices"

FINDING_NAMES: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("enlarged cardiomediastinum", "widened mediastinum", "mediastinal widening"),
    "Cardiomegaly": ("cardiomegaly", "enlarged heart", "cardiomegally"),
    "Lung Opacity": ("lung opacity", "airspace disease", "opacity"),
    "Lung Lesion": ("lung lesion", "nodule", "lung mass"),
    "Edema": ("pulmonary edema", "CHF", "edema", "fluid in the lungs"),
    "Consolidation": ("consolidation", "consolodation"),
    "Pneumonia": ("pneumonia", "infiltrate", "pnemonia"),
    "Atelectasis": ("atelectasis", "volume loss", "atelectsis"),
    "Pneumothorax": ("pneumothorax", "PTX", "ptx", "pnuemothorax"),
    "Pleural Effusion": ("pleural effusion", "effusion", "effusoin", "pleural efusion", "fluid around the lung"),
    "Pleural Other": ("pleural thickening", "pleural plaque"),
    "Fracture": ("rib fracture", "fracture", "broken rib", "rib fx"),
}
"""How the generated questions name each finding; side and severity questions use the first two names."""

DEVICE_NAMES: dict[str, tuple[str, ...]] = {
    "endotracheal tube": ("endotracheal tube", "ETT", "ET tube", "breathing tube"),
    "enteric tube": ("NG tube", "enteric tube", "feeding tube", "OG tube", "Dobhoff"),
    "central line": ("central line", "PICC", "CVC", "central venous catheter", "port"),
    "pacemaker": ("pacemaker", "pacer", "PPM", "AICD"),
    "chest tube": ("chest tube", "chest drain", "pigtail catheter"),
}
"""How the generated questions name each device."""

_SIDE_NAMES = {
    "left": ("left", "left-sided", "lt"),
    "right": ("right", "right-sided", "rt"),
    "bilateral": ("bilateral",),
}
_SEVERITY_NAMES = {"small": ("small", "mild", "trace"), "moderate": ("moderate",), "large": ("large", "severe")}

# {f} finding, {d} device, {s} side, {v} severity; a capital letter capitalises the first letter of the word
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "presence": (
        "is there {f}?",
        "any {f}?",
        "does the patient have {f}?",
        "{F}?",
        "is {f} present?",
        "do you see {f} on this film?",
        "Is there evidence of {f}?",
    ),
    "presence_side": ("is there {s} {f}?", "any {s} {f}?", "{S} {f}?"),
    "presence_severity": ("is there {v} {f}?", "is the {f} {v}?", "any {v} {f}?"),
    "laterality": (
        "which side is the {f} on?",
        "is the {f} on the left or right?",
        "where is the {f}?",
        "what side is the {f}?",
        "{F}: left or right?",
        "which lung has the {f}?",
    ),
    "severity": (
        "how large is the {f}?",
        "how bad is the {f}?",
        "is the {f} small or large?",
        "how severe is the {f}?",
        "is the {f} mild, moderate or severe?",
        "what is the size of the {f}?",
    ),
    "device": ("is there any {d}?", "{D}?", "{D} in place?", "do you see any {d}?", "{D} present?"),
    "device_any": ("any lines or tubes?", "are there any support devices?", "any devices?", "Lines or tubes present?"),
    "device_side": ("is there a {s} {d}?", "any {s} {d}?"),
    "device_position": (
        "which side is the {d} on?",
        "where is the {d}?",
        "is the {d} on the left or right?",
        "what side is the {d} on?",
        "{D}: which side?",
    ),
    "findings": (
        "what are the findings?",
        "what do you see?",
        "describe the x-ray",
        "any abnormalities?",
        "what does this chest x-ray show?",
        "list the findings",
        "What's abnormal on this film?",
    ),
    "normal": (
        "is this chest x-ray normal?",
        "is the study unremarkable?",
        "is this a normal film?",
        "is everything ok on this x-ray?",
        "Is the radiograph normal?",
    ),
    "abnormal": ("is this x-ray abnormal?", "is anything wrong on this film?", "is the study abnormal?"),
}
_ABSENT_TEMPLATES: dict[str, tuple[str, ...]] = {  # presence questions whose "yes" means absent (polarity False)
    "Lung Opacity": ("are the lungs clear?", "are the lung fields clear?"),
    "Cardiomegaly": ("is the heart size normal?", "is the heart normal in size?"),
    "Enlarged Cardiomediastinum": ("is the mediastinum normal?", "is the mediastinal contour normal?"),
}


@dataclasses.dataclass(frozen=True)
class _Fact:
    finding: str
    device: str | None
    side: str | None
    severity: str | None
    certain: bool


@dataclasses.dataclass(frozen=True)
class _Item:
    """One question before it is worded: its fields, the template family and the answer."""

    image_id: str
    kind: str
    template: str
    answer: str
    finding: str | None = None
    device: str | None = None
    side: str | None = None
    severity: str | None = None
    polarity: bool = True


def _value(v: object, allowed: Sequence[str]) -> str | None:
    return v if isinstance(v, str) and v in allowed else None


def _facts_by_image(facts: pd.DataFrame, ids: list[str]) -> dict[str, list[_Fact]]:
    wanted = set(ids)
    out: dict[str, list[_Fact]] = {i: [] for i in ids}
    certain = facts["certain"] if "certain" in facts.columns else pd.Series(True, index=facts.index)
    for image_id, finding, side, severity, device, sure in zip(
        facts["image_id"].astype(str),
        facts["finding"],
        facts.get("side", pd.Series(None, index=facts.index)),
        facts.get("severity", pd.Series(None, index=facts.index)),
        facts.get("device", pd.Series(None, index=facts.index)),
        certain,
        strict=True,
    ):
        if image_id in wanted and finding in FINDINGS:
            fact = _Fact(
                finding, _value(device, DEVICES), _value(side, SIDES), _value(severity, SEVERITIES), bool(sure)
            )
            out[image_id].append(fact)
    return out


def _joint_side(sides: set[str | None]) -> str | None:
    """One side for several facts of a finding (left + right = bilateral); None when a side is unknown."""
    if not sides or None in sides:
        return None
    return "bilateral" if "bilateral" in sides or {"left", "right"} <= sides else next(iter(sides))


def _yes_no(rows: list[_Fact], side: str | None = None, severity: str | None = None) -> str | None:
    """ "yes"/"no" for "is there a (left / large) X?" from the certain rows of X; None when the facts cannot say."""
    if not rows:
        return "no"
    if side is not None:
        sides = {r.side for r in rows}
        if None in sides:
            return None
        left, right = bool(sides & {"left", "bilateral"}), bool(sides & {"right", "bilateral"})
        return "yes" if {"left": left, "right": right, "bilateral": left and right}[side] else "no"
    if severity is not None:
        severities = {r.severity for r in rows}
        return None if None in severities else ("yes" if severity in severities else "no")
    return "yes"


def _flip(answer: str, polarity: bool) -> str:
    return answer if polarity else {"yes": "no", "no": "yes"}[answer]


def _candidates(by_image: dict[str, list[_Fact]], rng: random.Random) -> dict[str, list[_Item]]:
    """Every answerable question (one variant per image and target), by kind."""
    out: dict[str, list[_Item]] = defaultdict(list)
    for image_id, facts in by_image.items():
        groups: dict[tuple[str, str | None], list[_Fact]] = defaultdict(list)
        for f in facts:
            groups[(f.finding, f.device if f.finding == _SD else None)].append(f)
        # ---- findings: presence, laterality, severity
        for finding in FINDINGS:
            if finding == _SD:
                continue
            rows = groups.get((finding, None), [])
            if not all(r.certain for r in rows):
                continue
            variants = ["plain", "plain"]
            variants += ["side"] * (finding in LATERAL_FINDINGS) + ["severity"] * (finding in SEVERITY_FINDINGS)
            variant = rng.choice(variants)
            side = rng.choice(SIDES) if variant == "side" else None
            severity = rng.choice(SEVERITIES) if variant == "severity" else None
            answer = _yes_no(rows, side, severity)
            if answer is None:
                side = severity = None
                answer = _yes_no(rows)
            polarity = not (side is None and severity is None and finding in _ABSENT_TEMPLATES and rng.random() < 0.5)
            template = "presence" + ("_side" if side else "_severity" if severity else "")
            out["presence"].append(
                _Item(image_id, "presence", template, _flip(answer, polarity), finding, None, side, severity, polarity)
            )
            side = _joint_side({r.side for r in rows})
            if rows and finding in LATERAL_FINDINGS and side:
                out["laterality"].append(_Item(image_id, "laterality", "laterality", side, finding))
            severities = {r.severity for r in rows}
            if rows and finding in SEVERITY_FINDINGS and len(severities) == 1 and None not in severities:
                out["severity"].append(_Item(image_id, "severity", "severity", severities.pop(), finding))
        # ---- devices: presence (one named, or any), side
        devices = [f for f in facts if f.finding == _SD]
        for device in (*DEVICES, None):
            named = [f for f in devices if device is None or f.device == device]
            rows = [f for f in named if f.certain]
            if len(rows) < len(named) or (not rows and device and any(f.device is None for f in devices)):
                continue  # uncertain, or absent but a device fact does not say which device
            side = rng.choice(SIDES) if device in LATERAL_DEVICES and rng.random() < 1 / 3 else None
            answer = _yes_no(rows, side)
            if answer is None:
                side, answer = None, _yes_no(rows)
            template = "device_any" if device is None else "device_side" if side else "device"
            out["device"].append(_Item(image_id, "device", template, answer, _SD, device, side))
            side = _joint_side({r.side for r in rows})
            if rows and device in LATERAL_DEVICES and side:
                out["device_position"].append(_Item(image_id, "device_position", "device_position", side, _SD, device))
        # ---- the whole image: findings, normal
        if all(f.certain for f in facts):
            answer = "; ".join(sorted({f.finding for f in facts})) or "no finding"
            out["findings"].append(_Item(image_id, "findings", "findings", answer))
        if all(f.certain for f in facts if f.finding != _SD):
            polarity = rng.random() >= 1 / 3
            normal = "no" if any(f.finding != _SD for f in facts) else "yes"
            out["normal"].append(
                _Item(
                    image_id, "normal", "normal" if polarity else "abnormal", _flip(normal, polarity), polarity=polarity
                )
            )
    return out


def _allocate(capacity: dict[str, int], n: int) -> dict[str, int]:
    """Equal shares of ``n`` over the kinds; a kind with fewer candidates gives its unused share to the others."""
    quota: dict[str, int] = {}
    open_kinds = [k for k in _KINDS if capacity.get(k, 0) > 0]
    left = n
    while open_kinds:
        share, extra = divmod(left, len(open_kinds))
        short = [k for i, k in enumerate(open_kinds) if capacity[k] <= share + (i < extra)]
        if not short:
            quota.update({k: share + (i < extra) for i, k in enumerate(open_kinds)})
            break
        for k in short:
            quota[k] = capacity[k]
            left -= capacity[k]
            open_kinds.remove(k)
    return quota


def _spread(items: list[_Item], k: int, rng: random.Random) -> list[_Item]:
    """``k`` items taken round-robin over their findings / devices (in shuffled order), so rare ones are asked too."""
    groups: dict[tuple[str, str], list[_Item]] = defaultdict(list)
    for item in items:
        groups[(str(item.finding), str(item.device))].append(item)
    keys = sorted(groups)
    rng.shuffle(keys)
    for key in keys:
        rng.shuffle(groups[key])
    out: list[_Item] = []
    for depth in range(max(map(len, groups.values()), default=0)):
        out += [groups[key][depth] for key in keys if depth < len(groups[key])]
        if len(out) >= k:
            break
    return out[:k]


def _pick(items: list[_Item], k: int, rng: random.Random, yes_no: bool) -> list[_Item]:
    if not yes_no:
        return _spread(items, k, rng)
    yes = [i for i in items if i.answer == "yes"]
    no = [i for i in items if i.answer == "no"]
    n_yes = min(len(yes), k // 2 + (k % 2 and rng.random() < 0.5))
    n_no = min(len(no), k - n_yes)
    n_yes = min(len(yes), k - n_no)
    return _spread(yes, n_yes, rng) + _spread(no, n_no, rng)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _word(item: _Item, rng: random.Random) -> str:
    """The question text of ``item``: a template of its family, with names drawn for its finding, device, side …"""
    if item.kind == "presence" and not item.polarity:
        return rng.choice(_ABSENT_TEMPLATES[str(item.finding)])
    template = rng.choice(_TEMPLATES[item.template])
    names = FINDING_NAMES.get(str(item.finding), ("",))
    f = rng.choice(names[:2] if item.side or item.severity else names)
    d = rng.choice(DEVICE_NAMES.get(str(item.device), ("",)))
    s = rng.choice(_SIDE_NAMES[item.side]) if item.side else ""
    v = rng.choice(_SEVERITY_NAMES[item.severity]) if item.severity else ""
    return template.format(f=f, F=_capital(f), d=d, D=_capital(d), s=s, S=_capital(s), v=v)


def generate_questions(facts: pd.DataFrame, image_ids: Sequence[str], *, n: int = 600, seed: int = 0) -> pd.DataFrame:
    """About ``n`` questions on ``image_ids`` with their answers from ``facts`` (columns :data:`QUESTION_COLUMNS`).

    Kinds in equal shares (a kind with too few candidates, or none, gives its share to the others), "yes" and "no"
    equally often within presence / device / normal questions (a yes/no kind is skipped when its finding would be
    present, or absent, in every question), each finding or device asked about as evenly as the facts allow; fewer
    than ``n`` rows when the facts do not allow more. Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    ids = list(dict.fromkeys(str(i) for i in image_ids))
    pools = _candidates(_facts_by_image(facts, ids), rng)
    for kind in _YES_NO:  # all present or all absent (say, no device in the facts at all): nothing to ask, skipped
        if len({(i.answer == "yes") == i.polarity for i in pools.get(kind, [])}) < 2:
            pools.pop(kind, None)
    quota = _allocate({k: len(v) for k, v in pools.items()}, n)
    items = [item for kind in _KINDS for item in _pick(pools.get(kind, []), quota.get(kind, 0), rng, kind in _YES_NO)]
    rng.shuffle(items)
    rows = [
        (i.image_id, _word(i, rng), i.kind, i.finding, i.device, i.side, i.severity, i.polarity, i.answer)
        for i in items
    ]
    table = pd.DataFrame(rows, columns=list(QUESTION_COLUMNS), dtype=object)  # None stays None, not NaN
    return table.astype({"polarity": bool})
