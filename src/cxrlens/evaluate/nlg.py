"""Natural-language-generation metrics for reports, via pycocoevalcap 1.2 (the reference implementation).

Variants, named exactly in every output:

* ``BLEU-1`` … ``BLEU-4`` — corpus-level BLEU (pycocoevalcap ``Bleu(4)``, brevity penalty with the closest reference
  length, no smoothing).
* ``ROUGE-L`` — pycocoevalcap ``Rouge`` (LCS-based F-measure with β = 1.2), averaged over reports.
* ``CIDEr-D`` — pycocoevalcap ``Cider`` (n = 1..4, Gaussian length penalty σ = 6, clipped counts; idf from the
  reference corpus of the evaluated set), averaged over reports.
* ``METEOR`` — METEOR 1.5 (``meteor-1.5.jar`` shipped with pycocoevalcap, ``-l en -norm``) through Java. When Java
  is missing or fails, the value is ``None`` and ``meteor_status`` says why — never a made-up number.

Tokenisation (the same for generated and reference text, documented because scores depend on it): lower-case;
``XXXX`` de-identification tokens removed; every character other than a–z, 0–9 and ``.`` becomes a space; ``.``
becomes its own token. This mirrors the usual IU X-ray report-generation preprocessing (R2Gen-style) without
needing the Stanford PTB tokenizer.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Sequence

__all__ = ["NLG_METRICS", "nlg_scores", "tokenize_report"]

_METEOR_TIMEOUT_S = 120.0  # + 50 ms per report: java answers ~1,500 reports in a few seconds

NLG_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "METEOR", "CIDEr-D")
_NON_WORD = re.compile(r"[^a-z0-9.]+")


def tokenize_report(text: str) -> str:
    """``"No  pleural effusion, XXXX."`` → ``"no pleural effusion ."`` (see module docstring)."""
    text = text.lower().replace("xxxx", " ")
    text = _NON_WORD.sub(" ", text).replace(".", " . ")
    return " ".join(text.split())


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float | None, str]:
    if shutil.which("java") is None:
        return None, "unavailable: java not found on PATH"
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = None
    watchdog = None
    try:
        scorer = Meteor()
        # the scorer reads java's answers with blocking readline(): a java that stops answering would wait forever,
        # so a watchdog kills it after a generous deadline and the readline then fails (→ "unavailable")
        deadline = _METEOR_TIMEOUT_S + 0.05 * len(gts)
        watchdog = threading.Timer(deadline, scorer.meteor_p.kill)
        watchdog.daemon = True
        watchdog.start()
        score, _ = scorer.compute_score(gts, res)
        return float(score), "ok (METEOR 1.5, -l en -norm)"
    except (OSError, ValueError) as exc:  # java crashed, was killed, or printed something that is not a score
        if watchdog is not None and not watchdog.is_alive():
            return None, f"unavailable: METEOR gave no answer within {deadline:.0f} s (java killed)"
        return None, f"unavailable: METEOR failed ({type(exc).__name__}: {exc})"
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if scorer is not None:
            if scorer.lock.locked():  # compute_score failed while holding it; the scorer's __del__ would block on it
                scorer.lock.release()
            proc = scorer.meteor_p
            proc.stdin.close()
            proc.kill()
            proc.wait()  # the scorer's own __del__ later closes/kills again, which is a no-op now
            proc.stdout.close()
            proc.stderr.close()


def nlg_scores(
    generated: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], *, meteor: bool = True
) -> dict[str, float | str | None]:
    """Corpus NLG scores of ``generated[i]`` against ``references[i]`` (one string or a list of strings each).

    Returns ``{"BLEU-1": …, …, "CIDEr-D": …, "meteor_status": "…"}``. Empty generated reports count (they score 0);
    ``len(generated)`` must equal ``len(references)`` and be > 0.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated reports but {len(references)} references")
    if not generated:
        raise ValueError("no reports to score")
    res, gts = {}, {}
    for i, (gen, ref) in enumerate(zip(generated, references, strict=True)):
        refs = [ref] if isinstance(ref, str) else list(ref)
        gts[str(i)] = [tokenize_report(r) or "." for r in refs]
        res[str(i)] = [tokenize_report(gen) or "."]  # pycocoevalcap cannot score an empty hypothesis
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    out: dict[str, float | str | None] = {f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)}
    out["ROUGE-L"] = float(rouge)
    out["CIDEr-D"] = float(cider)
    out["METEOR"], out["meteor_status"] = _meteor(gts, res) if meteor else (None, "not requested")
    return out
