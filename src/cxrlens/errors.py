"""User-facing errors. Each renders as one clear line that names the file (if any) and the problem."""

from __future__ import annotations

from pathlib import Path

__all__ = ["BadInputError", "CxrlensError", "StageLockedError"]


class CxrlensError(Exception):
    """An error the user can act on; the CLI prints ``str(err)`` as one line and exits with status 2."""


class BadInputError(CxrlensError, ValueError):
    """A bad input file or item: ``BadInputError(path, problem)`` renders as ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever the cause said
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")


class StageLockedError(CxrlensError):
    """Another process holds the lock of the artefact this process wants to write."""
