"""The viewer's settings: one frozen dataclass, the single source of the ``cxrlens view`` defaults."""

from __future__ import annotations

import dataclasses

from cxrlens.errors import BadInputError

__all__ = ["ViewerConfig"]


@dataclasses.dataclass(frozen=True)
class ViewerConfig:
    """How ``cxrlens view`` serves a workspace.

    Attributes:
        host: interface to bind; ``127.0.0.1`` (this machine only) by default. Anything else exposes the workspace
            to the network and is the user's explicit choice.
        port: TCP port.
        page_size: rows per page of the feature browser and the study list when the client does not say.
        max_page_size: the largest ``limit`` a client may ask for (bigger is a 400, so one request stays cheap).
        thumb_size: longer side (px) of the image thumbnails served to the grids; ``size`` may ask for 32…1024.
        upload_limit_bytes: largest image accepted by ``POST /api/upload`` (bigger is a 413 before it is read).
        uploads: whether the upload endpoint is enabled at all (it encodes the image with the backbone and SAE).
        cache_dir: thumbnail cache, relative to the workspace root (written atomically, safe to delete).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    page_size: int = 50
    max_page_size: int = 500
    thumb_size: int = 256
    upload_limit_bytes: int = 8 * 1024 * 1024
    uploads: bool = True
    cache_dir: str = ".viewer-cache"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise BadInputError(None, f"port must be in 0…65535, got {self.port}")
        if not 1 <= self.page_size <= self.max_page_size:
            raise BadInputError(
                None, f"page_size must be in 1…max_page_size ({self.max_page_size}), got {self.page_size}"
            )
        if not 32 <= self.thumb_size <= 1024:
            raise BadInputError(None, f"thumb_size must be in 32…1024, got {self.thumb_size}")
        if self.upload_limit_bytes < 1:
            raise BadInputError(None, f"upload_limit_bytes must be ≥ 1, got {self.upload_limit_bytes}")
        if not self.cache_dir or self.cache_dir.startswith("/") or ".." in self.cache_dir.split("/"):
            raise BadInputError(None, f"cache_dir must be a relative path inside the workspace, got {self.cache_dir!r}")
