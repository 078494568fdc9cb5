"""Phantom chest radiographs with pixel-level ground truth: renderer (anatomy, findings, acquisition) and the
``iu-phantom`` / ``cxr-sprites`` datasets. See docs/phantom.md."""

from cxrlens.data.phantom.render import (
    Rendered,
    decode_label_masks,
    encode_label_masks,
    label_masks,
    png_bytes,
    read_label_masks,
    render,
)
from cxrlens.data.phantom.spec import (
    DEVICE_KINDS,
    KIND_LABEL,
    KINDS,
    LABEL_CHANNELS,
    FindingSpec,
    ImageSpec,
)

__all__ = [
    "DEVICE_KINDS",
    "KINDS",
    "KIND_LABEL",
    "LABEL_CHANNELS",
    "FindingSpec",
    "ImageSpec",
    "Rendered",
    "decode_label_masks",
    "encode_label_masks",
    "label_masks",
    "png_bytes",
    "read_label_masks",
    "render",
]
