"""Checkpoint files: safetensors tensors + a JSON header (schema version, config, package version …) in metadata.

Every trainer (SAE, LT-ViT, VAEs, the alignment adapter) writes its own header under its own metadata key and
reads it back through :func:`read_checkpoint`, which turns every way a file can be wrong into one clear line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from cxrlens.errors import BadInputError

__all__ = ["read_checkpoint"]


def read_checkpoint(
    path: str | Path, *, key: str, schema: int, kind: str
) -> tuple[dict[str, Any], dict[str, str], dict[str, torch.Tensor]]:
    """(header, all metadata, tensors) of a checkpoint whose metadata holds a JSON header under ``key``.

    Raises :class:`BadInputError` naming ``path`` when the file is missing, is not safetensors, has no ``key``
    header (not a ``kind`` checkpoint) or has another schema version than ``schema``.
    """

    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, f"{kind} checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        reason = f"safetensors: {type(exc).__name__}: {exc}"
        raise BadInputError(path, f"not a readable {kind} checkpoint ({reason})") from None
    if key not in meta:
        raise BadInputError(path, f"no {key} header: not a {kind} checkpoint")
    try:
        header = json.loads(meta[key])
    except json.JSONDecodeError as exc:
        raise BadInputError(path, f"corrupt {key} header ({exc})") from None
    if header.get("schema") != schema:
        raise BadInputError(path, f"checkpoint schema {header.get('schema')} != supported {schema}; retrain")
    return header, meta, tensors
