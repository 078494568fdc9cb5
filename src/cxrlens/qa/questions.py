"""Parse a free-text question about one chest X-ray into a :class:`Question` (``cxrlens ask IMAGE "question"``).

The parser is table-driven and needs no model:

1. **tokens** — lower-case words and digits; hyphens and punctuation split words ("x-ray" → ``x ray``);
2. **typos** — a word no table knows is replaced by its closest known word (:func:`difflib.get_close_matches`,
   cutoff :data:`FUZZY_CUTOFF`, words of five letters or more only), and two unknown halves are joined when the
   join is a known word ("pneumo thorax");
3. **mentions** — the longest known phrase wins: finding synonyms (the labeler's
   :data:`~cxrlens.data.labeler_phrases.FINDING_PHRASES` plus a table for lay and question words: "ptx", "big heart",
   "fluid around the lung"), device words (:data:`DEVICE_PHRASES`), heart / mediastinum words that name
   Cardiomegaly / Enlarged Cardiomediastinum ("is the heart enlarged?") and abnormalities outside the vocabulary
   (the labeler's :data:`~cxrlens.data.labeler_phrases.OTHER_PHRASES` and :data:`~cxrlens.data.labeler_phrases.IGNORE`:
   "hiatal hernia", "pericardial effusion");
4. **cues** on the words left over decide the kind: a comparison with a prior, clinical history or management makes
   the question ``unsupported`` whatever else it names; then "which side / where" (laterality or device position),
   "how large / small or large" (severity), else a yes/no presence question; with nothing named, "what do you see"
   (findings), "is it normal" (normal) or unsupported.

``polarity`` is False when "yes" means the finding is absent: "are the lungs clear?" (Lung Opacity), "is the
heart size normal?" (Cardiomegaly), "is there no effusion?"; for a ``normal`` question, when "yes" means abnormal
("is this film abnormal?").
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re

from cxrlens.data import labeler_phrases
from cxrlens.qa.vocab import LATERAL_DEVICES, LATERAL_FINDINGS, SEVERITY_FINDINGS

__all__ = ["DEVICE_PHRASES", "FINDING_PHRASES", "FUZZY_CUTOFF", "KINDS", "Question", "parse_question"]

KINDS: tuple[str, ...] = (
    "presence",
    "laterality",
    "severity",
    "device",
    "device_position",
    "findings",
    "normal",
    "unsupported",
)
"""Question kinds, in the order :mod:`cxrlens.qa.questionset` balances them (``unsupported`` last)."""

FUZZY_CUTOFF = 0.82
"""difflib ratio a misspelt word needs to its correction (0.82: one letter dropped, added or swapped in a long word
— "efusion", "pneumothoraks" — but not a changed letter in a five-letter word: "fight" stays "fight")."""

_SD = "Support Devices"


@dataclasses.dataclass(frozen=True)
class Question:
    """A parsed question: what it asks (``kind``) about which finding / device, side and severity."""

    text: str
    kind: str
    finding: str | None = None
    device: str | None = None
    side: str | None = None
    severity: str | None = None
    polarity: bool = True
    reason: str = ""


# ------------------------------------------------------------------------------------------------------- tables
FINDING_PHRASES: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("enlarged cardiomediastinum", "wide mediastinum", "widened mediastinal"),
    "Cardiomegaly": ("big heart", "large heart", "enlarged heart", "heart is enlarged", "cardiomegally"),
    "Edema": (
        "fluid in the lungs",
        "fluid in the lung",
        "fluid in lungs",
        "water in the lungs",
        "wet lungs",
        "congestion",
        "overload",
        "pulmonary oedema",
        "heart failing",
        "failing heart",
    ),
    "Pleural Effusion": (
        "fluid",
        "fluid around the lung",
        "fluid around the lungs",
        "water on the lung",
        "water on the lungs",
        "blunted costophrenic angle",
        "blunted costophrenic angles",
        "blunting of the costophrenic angle",
        "blunting of the costophrenic angles",
        "costophrenic blunting",
        "costophrenic angle blunting",
        "blunted cp angle",
        "blunting",
        "blunted",
        "loculated",
        "loculation",
    ),
    "Atelectasis": ("volume loss",),
    "Pneumothorax": ("collapsed lung", "lung collapse", "air around the lung"),
    "Pneumonia": ("infiltrate", "infiltrates", "infiltration", "lung infection", "chest infection"),
    "Lung Lesion": (
        "spot",
        "spots",
        "spot on the lung",
        "granuloma",
        "granulomas",
        "calcified granuloma",
        "lung cancer",
        "cancer",
        "coin lesion",
    ),
    "Fracture": ("broken rib", "broken ribs", "rib fx", "broken bone", "broken", "cracked rib", "fractured rib"),
    "Pleural Other": ("plaque", "plaques"),
}
"""Lay, question and abbreviation synonyms, added to (and winning over) the labeler's finding phrases."""

DEVICE_PHRASES: dict[str | None, tuple[str, ...]] = {
    "endotracheal tube": (
        "endotracheal tube",
        "endotracheal",
        "ett",
        "et tube",
        "ett tube",
        "breathing tube",
        "tracheal tube",
        "intubated",
        "intubation",
    ),
    "enteric tube": (
        "enteric tube",
        "ngt",
        "ng tube",
        "ng",
        "nasogastric tube",
        "nasogastric",
        "ogt",
        "og tube",
        "orogastric tube",
        "orogastric",
        "feeding tube",
        "dobhoff",
        "dobhoff tube",
        "dht",
        "gastric tube",
    ),
    "central line": (
        "central line",
        "central lines",
        "central venous catheter",
        "central venous line",
        "central catheter",
        "cvc",
        "cvl",
        "picc",
        "picc line",
        "ij line",
        "ij catheter",
        "internal jugular line",
        "internal jugular catheter",
        "subclavian line",
        "subclavian catheter",
        "port",
        "port a cath",
        "portacath",
        "mediport",
        "hickman",
    ),
    "pacemaker": (
        "pacemaker",
        "pacer",
        "ppm",
        "aicd",
        "icd",
        "defibrillator",
        "cardiac device",
        "pacemaker leads",
        "pacer leads",
        "pacing leads",
        "pacing wires",
        "pacing wire",
        "pacer wires",
        "pacer wire",
    ),
    "chest tube": (
        "chest tube",
        "chest tubes",
        "chest drain",
        "pleural drain",
        "intercostal drain",
        "drain",
        "pigtail",
        "pigtail catheter",
        "pigtail drain",
        "thoracostomy tube",
        "thoracostomy",
    ),
    None: (
        "support devices",
        "support device",
        "device",
        "devices",
        "medical devices",
        "electronic device",
        "line",
        "lines",
        "tube",
        "tubes",
        "lines and tubes",
        "tubes and lines",
        "lines or tubes",
        "tubes or lines",
        "catheter",
        "catheters",
        "tubing",
        "hardware",
    ),
}
"""Device word (:data:`~cxrlens.qa.vocab.DEVICES`, or None for "any device") → the phrases that name it. The
labeler's other Support Devices phrases (tracheostomy, valve, stent …) are devices the model does not read."""

_OOD_EXTRA = (
    "tuberculosis",
    "tb",
    "covid",
    "pulmonary embolism",
    "embolism",
    "aortic dissection",
    "dissection",
    "dextrocardia",
    "lymphoma",
    "asthma",
    "sarcoid",
    "cystic fibrosis",
    "asbestosis",
    "silicosis",
    "ild",
    "sternotomy",
    "hilar enlargement",
    "hilar prominence",
)
_NOT_OOD = frozenset({"in line", "midline", "line of sight"})  # labeler look-alikes that are not a finding asked about

# Lungs named with a normal / abnormal word and nothing else: "are the lungs clear?" asks about Lung Opacity.
_LUNGS = re.compile(r"\blungs?( fields?| parenchyma| zones?)?\b")
_LUNG_QUALIFIER = re.compile(r"\b(clear|normal|abnormal|ok|okay|fine|unremarkable|healthy|clean|wnl|alright)\b")
_NORMAL_QUALIFIER = re.compile(r"\b(clear|normal|ok|okay|fine|unremarkable|healthy|clean|wnl|alright|good)\b")

_SIDE_WORDS: dict[str, str] = {
    **dict.fromkeys(("left", "l", "lt", "lul", "lll", "lingula", "lingular"), "left"),
    **dict.fromkeys(("right", "r", "rt", "rul", "rml", "rll"), "right"),
    **dict.fromkeys(("bilateral", "bilaterally", "both", "bibasilar", "bibasal"), "bilateral"),
}
_SEVERITY_WORDS: dict[str, str] = {
    **dict.fromkeys(
        ("small", "tiny", "trace", "mild", "mildly", "minimal", "minimally", "slight", "slightly"), "small"
    ),
    **dict.fromkeys(("moderate", "moderately", "medium"), "moderate"),
    **dict.fromkeys(
        ("large", "big", "huge", "severe", "severely", "massive", "massively", "marked", "markedly", "extensive"),
        "large",
    ),
}
_SIZE = frozenset({"small", "tiny", "large", "big", "huge"})  # "is the heart big?" is not a grade

# ------------------------------------------------------------------------------------------------------ reasons
_R_EMPTY = "the text is not a question about the image"
_R_COMPARISON = "comparison with a prior study cannot be answered from one image"
_R_HISTORY = "clinical history and facts about the patient cannot be answered from one image"
_R_MANAGEMENT = "management and treatment decisions cannot be answered from one image"
_R_METADATA = "how the image was taken (view, rotation, exposure) is not something the model reads"
_R_NOTHING = "the question names no finding or device the model reads and does not ask about the image as a whole"
_R_SEVERAL = "the question asks about more than one finding or device at once; ask about one at a time"
_R_OOD = "'{}' is not one of the findings or devices the model reads"
_R_NO_SIDE = "{} has no side, so which side it is on cannot be answered"
_R_NO_GRADE = "{} is not graded small / moderate / large, so its size cannot be answered"

# --------------------------------------------------------------------------------- cues (on the left-over words)
_UNSUPPORTED: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        _R_COMPARISON,
        re.compile(
            r"\b(priors?|previous\w*|before|since|compar\w*|interval|chang\w*|improv\w*|wors\w*|better|progress\w*|"
            r"resolv\w*|resolution|stable|stability|unchanged|new|newly|baseline|earlier|yesterday|ago|larger|bigger|"
            r"smaller|increasing|decreasing|grow\w*|grew|shrunk|shrink\w*|evolv\w*|persist\w*|still|again|"
            r"last (study|film|exam|xray|x ray|image|time|one|cxr|radiograph|scan|visit))\b"
            r"|\b(has|have|did)\b.*\b(increased|decreased|enlarged|cleared|gone|went away|go away)\b"
        ),
    ),
    (
        _R_HISTORY,
        re.compile(
            r"\b(why|when|who|how old|age|aged|years? old|yo|smok\w*|cigarettes?|history|symptom\w*|fevers?|"
            r"cough\w*|complain\w*|indications?|ordered|admit\w*|admission|hospital\w*|medications?|meds|drugs?|"
            r"allerg\w*|vitals?|sex|gender|male|female|man|woman|pregnan\w*|weight|name|labs?|prognosis|die|dying|"
            r"surviv\w*|outcome|pain|breath|breathless\w*|shortness|dyspnea|oxygen|saturation|sats|occupation)\b"
        ),
    ),
    (
        _R_MANAGEMENT,
        re.compile(
            r"\b(should|shall|recommend\w*|need|needs|needed|treat\w*|therapy|manag\w*|antibiotics?|diuretics?|"
            r"diures\w*|intubate|extubat\w*|reposition\w*|pull(ed)? back|withdraw\w*|advanc\w*|remov\w*|insert\w*|"
            r"next steps?|follow ?up|what to do|do next|biopsy|surgery|operat\w*|discharg\w*|consult\w*|refer\w*|"
            r"thoracentesis|tap)\b"
        ),
    ),
)
_METADATA = re.compile(
    r"\b(view|projection|rotat\w*|exposure|penetrat\w*|quality|technique|oblique|lordotic|decubitus|inspiration|"
    r"inspiratory)\b|\b(is|was) (this|it|the \w+) (an? )?(pa|ap|supine|upright|erect|portable)\b"
    r"|\b(pa|ap|supine|upright|erect) or\b"
)
_LATERALITY = re.compile(r"\b(which|what) (side|sides|lung|hemithorax|lobe)\b|\bwhere\b|\blocat\w*|\bunilateral\b")
_SIDE_WORD = re.compile(r"\bsided?\b")
_SEVERITY = re.compile(
    r"\bhow (large|big|bad|severe|extensive|much|significant|serious|sizable|sizeable|marked|prominent|enlarged|"
    r"widened|small)\b|\b(what|which|how)\b.*\b(size|severity|grade|degree|extent|amount)\b"
    r"|\b(severity|grade|graded|degree|extent)\b|\bsize of\b|\bsize$"
)
_POSITION = re.compile(
    r"\b(position\w*|malposition\w*|placement|placed|tip|tips|terminat\w*|located|location|where|sited|depth|"
    r"level|too|stomach|carina|svc|atrium|cavoatrial|junction|below|above|cm|correctly|properly|appropriately|"
    r"adequately|optimally|satisfactorily|incorrectly|good|poor\w*)\b|\b(which|what) side\b"
)
_NEGATION = re.compile(
    r"\b(no|not|without|nothing|absent|absence|free of|clear of|rule out|ruled out|exclude|excluded|negative for)\b"
)
_NO_FINDINGS = re.compile(r"\b(no|not|without|nothing)\b.*\b(findings?|abnormal\w*|patholog\w*|disease|wrong)\b")
_FINDINGS = re.compile(
    r"\bwhats?\b.*\b(wrong|abnormal\w*|going on|happening|there|this|it)\b"
    r"|\btell\b.*\babout\b|\b(describe|description|interpret\w*|impression|summar\w*|findings?|abnormalit\w*|"
    r"diagnos\w*|see|seen|notice\w*|show\w*|visible|list|read|report)\b"
)
_NORMAL = re.compile(
    r"\b(normal|abnormal|unremarkable|ok|okay|fine|healthy|negative|clear|clean|wnl|wrong|patholog\w*|disease|"
    r"diseased|alright|good|bad|acute|process)\b"
)
_ABNORMAL = re.compile(r"\b(abnormal\w*|wrong|patholog\w*|disease\w*|findings?|bad|acute|process)\b")
_ANYTHING = re.compile(r"\b(anything|something|else)\b")
_FILLER = re.compile(r"\b(yes or no|or not)\b")

_CUES = (*(p for _, p in _UNSUPPORTED), _METADATA, _LATERALITY, _SEVERITY, _POSITION, _NEGATION, _FINDINGS, _NORMAL)
_COMMON_WORDS = (
    "a an the is are was were be been there theres this that these those it its of in on at to for from with and or "
    "any anything something some does do did can could would you your i we me my us patient patients pt chest xray "
    "x ray cxr film image images study radiograph picture scan exam have has present evidence sign signs yes please "
    "tell about here also very much more really look looks like appear appears seem seems clearly visible lung lungs "
    "place plain chance spine thing things features direction marker least black "  # near misses of cue words
    "heart side sides sided fields parenchyma amount size seen"
)
_COMMON = frozenset(_COMMON_WORDS.split())


# ------------------------------------------------------------------------------------------- phrase index build
def _tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower().replace("'", " ").replace("\u2019", " "))


_Mention = tuple[str, str | None, str | None]  # (role, finding, device or out-of-vocabulary phrase)


def _phrase_index() -> dict[tuple[str, ...], _Mention]:
    """Token tuple → mention; later tables overwrite earlier ones (own synonyms over the labeler's)."""
    index: dict[tuple[str, ...], _Mention] = {}

    def add(phrases: tuple[str, ...] | list[str], mention: _Mention | None = None) -> None:
        for p in phrases:
            index[tuple(_tokenize(p))] = mention or ("ood", None, p)

    add([p for p in (*labeler_phrases.OTHER_PHRASES, *labeler_phrases.IGNORE, *_OOD_EXTRA) if p not in _NOT_OOD])
    add(labeler_phrases.FINDING_PHRASES[_SD])  # devices the model does not read (overwritten below by known ones)
    anatomy = labeler_phrases.ANATOMY_PHRASES
    shared = set(anatomy["Cardiomegaly"]) & set(anatomy["Enlarged Cardiomediastinum"])
    for finding, phrases in anatomy.items():
        add([p for p in phrases if p not in shared and "size" not in p], ("anatomy", finding, None))
    for table in (labeler_phrases.FINDING_PHRASES, FINDING_PHRASES):
        for finding, phrases in table.items():
            if finding != _SD:
                add(phrases, ("finding", finding, None))
    for device, phrases in DEVICE_PHRASES.items():
        add(phrases, ("device", _SD, device))
    return index


_INDEX = _phrase_index()
_LONGEST = max(map(len, _INDEX))
_CUE_TEXT = " ".join(c.pattern.replace(r"\b", " ") for c in _CUES)
_STEMS = tuple(sorted(set(re.findall(r"([a-z]+)\\w\*", _CUE_TEXT))))  # "wors" of wors\w*: a token it starts is known
_FUZZY_WORDS = sorted(
    {w for p in _INDEX for w in p}
    | set(_SIDE_WORDS)
    | set(_SEVERITY_WORDS)
    | set(re.findall(r"[a-z]{2,}", _CUE_TEXT.replace(r"\w", " "))) - set(_STEMS)  # "words" is no typo of "wors"
)
_KNOWN = frozenset(_FUZZY_WORDS) | _COMMON


# ------------------------------------------------------------------------------------------------------ parsing
@functools.lru_cache(maxsize=8192)
def _fix(word: str) -> str:
    """``word``, or the known word it is a typo of."""
    if word in _KNOWN or len(word) < 5 or not word.isalpha() or word.startswith(_STEMS):
        return word
    # a typo keeps the first letter and drops, adds or swaps about one letter ("effusoin", "pnuemonia")
    near = [w for w in _FUZZY_WORDS if w[0] == word[0] and abs(len(w) - len(word)) <= 1 + len(word) // 10]
    hit = difflib.get_close_matches(word, near, n=1, cutoff=FUZZY_CUTOFF)
    return hit[0] if hit else word


def _correct(tokens: list[str]) -> list[str]:
    """Typos fixed; two adjacent words joined when one is unknown and the join is known ("pneumo thorax")."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if i + 1 < len(tokens) and not (tokens[i] in _KNOWN and tokens[i + 1] in _KNOWN):
            joined = _fix(tokens[i] + tokens[i + 1])
            if len(joined) >= 8 and joined in _KNOWN:
                out.append(joined)
                i += 2
                continue
        out.append(_fix(tokens[i]))
        i += 1
    return out


def _mentions(tokens: list[str]) -> tuple[list[_Mention], str]:
    """Longest-phrase mentions, and the left-over words (a mention replaced by ``@``) that the cues read."""
    found: list[_Mention] = []
    rest: list[str] = []
    i = 0
    while i < len(tokens):
        for n in range(min(_LONGEST, len(tokens) - i), 0, -1):
            mention = _INDEX.get(tuple(tokens[i : i + n]))
            if mention:
                found.append(mention)
                rest.append("@")
                i += n
                break
        else:
            rest.append(tokens[i])
            i += 1
    return found, _FILLER.sub(" ", " ".join(rest)).strip()


def _side(sides: set[str]) -> str | None:
    if "bilateral" in sides or {"left", "right"} <= sides:
        return "bilateral"
    return next(iter(sides), None)


def _unsupported(text: str, reason: str) -> Question:
    return Question(text, "unsupported", reason=reason)


def parse_question(text: str) -> Question:
    """The :class:`Question` that ``text`` asks (kind ``unsupported``, with a ``reason``, when one image cannot
    answer it)."""
    text = text if isinstance(text, str) else ""
    tokens = _correct(_tokenize(text))
    if not any(len(t) > 1 and t in _KNOWN for t in tokens):
        return _unsupported(text, _R_EMPTY)
    mentions, rest = _mentions(tokens)
    for reason, cue in _UNSUPPORTED:
        if cue.search(rest):
            return _unsupported(text, reason)

    targets = {(role, f, d) for role, f, d in mentions if role != "ood"}
    if any(d for _, _, d in targets):  # "is the tube an ET tube" names one device
        targets = {t for t in targets if t[2]}
    if len({(f, d) for _, f, d in targets}) > 1:
        return _unsupported(text, _R_SEVERAL)
    if not targets and _LUNGS.search(rest) and _LUNG_QUALIFIER.search(rest):
        targets = {("lungs", "Lung Opacity", None)}
    if not targets:
        ood = [d for role, _, d in mentions if role == "ood"]
        return _unsupported(text, _R_OOD.format(ood[0])) if ood else _whole_image(text, rest)

    role, finding, device = targets.pop()
    words = rest.split()
    sides = {_SIDE_WORDS[w] for w in words if w in _SIDE_WORDS}
    named = {_SEVERITY_WORDS[w] for w in words if w in _SEVERITY_WORDS}  # "small or large?" asks for a grade
    severities = {_SEVERITY_WORDS[w] for w in words if w in _SEVERITY_WORDS and (role == "finding" or w not in _SIZE)}
    either = len(sides) >= 2 and " or " in f" {rest} "
    negated = bool(_NEGATION.search(rest))
    normal_word = role in ("anatomy", "lungs") and bool(_NORMAL_QUALIFIER.search(rest))
    polarity = negated == normal_word  # "are the lungs clear?" / "no effusion?": yes = absent; both: yes = present

    if role == "device":
        if _POSITION.search(rest) or either:
            return Question(text, "device_position", _SD, device)
        side = _side(sides) if device in LATERAL_DEVICES else None
        return Question(text, "device", _SD, device, side=side, polarity=polarity)
    assert finding is not None
    if _LATERALITY.search(rest) or either or (not sides and _SIDE_WORD.search(rest)):
        if finding not in LATERAL_FINDINGS:
            return _unsupported(text, _R_NO_SIDE.format(finding))
        return Question(text, "laterality", finding)
    if (_SEVERITY.search(rest) or len(named) >= 2) and not normal_word:
        if finding not in SEVERITY_FINDINGS:
            return _unsupported(text, _R_NO_GRADE.format(finding))
        return Question(text, "severity", finding)
    side = _side(sides) if finding in LATERAL_FINDINGS else None
    severity = next(iter(severities)) if len(severities) == 1 and finding in SEVERITY_FINDINGS else None
    return Question(text, "presence", finding, side=side, severity=severity, polarity=polarity)


def _whole_image(text: str, rest: str) -> Question:
    """A question that names no finding or device: the list of findings, normal or not, or unsupported."""
    if _METADATA.search(rest):
        return _unsupported(text, _R_METADATA)
    if _NO_FINDINGS.search(rest) or (not _FINDINGS.search(rest) and _NORMAL.search(rest)):
        # "normal?" yes = normal; "abnormal?" / "anything wrong?" yes = abnormal; a negation flips it
        return Question(text, "normal", polarity=bool(_ABNORMAL.search(rest)) == bool(_NEGATION.search(rest)))
    if _FINDINGS.search(rest) or _ANYTHING.search(rest):
        return Question(text, "findings")
    return _unsupported(text, _R_NOTHING)
