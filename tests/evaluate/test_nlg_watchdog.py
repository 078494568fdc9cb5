"""METEOR's java scorer is read with blocking readline(): one that stops answering must not hang the evaluation."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from cxrlens.evaluate import nlg


class _SilentMeteor:
    """Looks like pycocoevalcap's Meteor, but its 'java' never answers (a process that only sleeps)."""

    def __init__(self) -> None:
        self.meteor_p = subprocess.Popen(
            ["sleep", "600"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.lock = threading.Lock()

    def compute_score(self, gts, res):
        self.lock.acquire()  # as the real one: held while it waits for java's answer
        line = self.meteor_p.stdout.readline()
        return float(line.strip()), []


def test_meteor_that_never_answers_is_killed_and_reported(monkeypatch):
    import pycocoevalcap.meteor.meteor as meteor_mod

    monkeypatch.setattr(nlg.shutil, "which", lambda _: "/usr/bin/java")
    monkeypatch.setattr(meteor_mod, "Meteor", _SilentMeteor)
    monkeypatch.setattr(nlg, "_METEOR_TIMEOUT_S", 1.0)
    t0 = time.monotonic()
    score, status = nlg._meteor({"0": ["a b"]}, {"0": ["a b"]})
    assert time.monotonic() - t0 < 20
    assert score is None and status.startswith("unavailable: METEOR gave no answer within 1 s")


@pytest.mark.skipif(nlg.shutil.which("java") is None, reason="java not installed")
def test_real_meteor_still_scores_under_the_watchdog():
    score, status = nlg._meteor({"0": ["no pleural effusion ."]}, {"0": ["no pleural effusion ."]})
    assert status.startswith("ok") and score is not None and score > 0.9
