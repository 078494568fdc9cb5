"""Saving and loading trained SAEs: ``model.safetensors`` + ``config.json`` (schema, arch config, package version)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from cxrlens import __version__
from cxrlens.config import config_from_dict, config_to_dict
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes, atomic_write_json
from cxrlens.sae.base import SAE, SAEConfig
from cxrlens.sae.registry import build_sae

__all__ = ["MODEL_FILE", "MODEL_SCHEMA", "load_sae", "save_sae"]

MODEL_SCHEMA = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_sae(sae: SAE, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (atomically, each file)."""

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}
    atomic_write_bytes(directory / MODEL_FILE, save(tensors, metadata={"schema": str(MODEL_SCHEMA)}))
    header = {
        "schema": MODEL_SCHEMA,
        "package_version": __version__,
        "sae": config_to_dict(sae.cfg),
        **(extra or {}),
    }
    atomic_write_json(directory / CONFIG_FILE, header)
    return directory


def load_sae(directory: str | Path, device: str | torch.device = "cpu") -> SAE:
    """The SAE saved in ``directory`` by :func:`save_sae`, in eval mode."""

    directory = Path(directory)
    try:
        header = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise BadInputError(directory / CONFIG_FILE, f"not a readable SAE config ({exc})") from None
    if header.get("schema") != MODEL_SCHEMA:
        raise BadInputError(directory / CONFIG_FILE, f"SAE schema {header.get('schema')} != supported {MODEL_SCHEMA}")
    try:
        cfg = config_from_dict(SAEConfig, header["sae"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(directory / CONFIG_FILE, f"bad SAE config ({exc})") from None
    sae = build_sae(cfg)
    try:
        state = load_file(str(directory / MODEL_FILE), device=str(device))
    except Exception as exc:  # safetensors raises its own error types for missing/corrupt files
        raise BadInputError(directory / MODEL_FILE, f"not a readable safetensors file ({exc})") from None
    sae.load_state_dict(state)
    return sae.to(device).eval()
