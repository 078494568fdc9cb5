"""Errors the viewer turns into a 4xx JSON answer: ``{"error": message}`` with the status they carry."""

from __future__ import annotations

__all__ = ["BadRequest", "Forbidden", "NotFound", "TooLarge", "UnsupportedType", "ViewerError"]


class ViewerError(Exception):
    """A request the viewer refuses; ``status`` is the HTTP status, ``str(err)`` the one-line message."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class BadRequest(ViewerError):
    """A malformed parameter (400)."""

    status = 400


class Forbidden(ViewerError):
    """A path outside the workspace or a file kind the viewer does not serve (403)."""

    status = 403


class NotFound(ViewerError):
    """No such run, feature, image or file (404)."""

    status = 404


class TooLarge(ViewerError):
    """An upload over the configured limit (413)."""

    status = 413


class UnsupportedType(ViewerError):
    """An upload whose content type the viewer does not take (415)."""

    status = 415
