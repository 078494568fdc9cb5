"""Vision backbones behind one interface (:class:`Backbone`), loaded by spec string (:func:`load_backbone`)."""

from cxrlens.backbones.base import TOKEN_KINDS, Backbone, EncodeOutput, Preprocessor
from cxrlens.backbones.registry import SPEC_KINDS, load_backbone, parse_spec, spec_slug
from cxrlens.backbones.vit import DEFAULT_BACKBONE

__all__ = [
    "DEFAULT_BACKBONE",
    "SPEC_KINDS",
    "TOKEN_KINDS",
    "Backbone",
    "EncodeOutput",
    "Preprocessor",
    "load_backbone",
    "parse_spec",
    "spec_slug",
]
