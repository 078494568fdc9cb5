"""The text-embedding cache (keyed by text hash, safetensors) and the polarity flips used as hard negatives."""

from __future__ import annotations

import numpy as np
import pytest

from cxrlens.align.negation import flip_polarity, is_negated
from cxrlens.align.text import TextEmbeddingCache, text_key
from cxrlens.errors import BadInputError


def test_cache_embeds_only_new_texts_and_persists(tmp_path, hashing_encoder) -> None:
    cache = TextEmbeddingCache.in_workspace(tmp_path, hashing_encoder)
    first = cache.get(["no effusion", "effusion", "no effusion"])
    assert hashing_encoder.calls == [2] and first.shape == (3, 64)
    np.testing.assert_array_equal(first[0], first[2])
    again = TextEmbeddingCache.in_workspace(tmp_path, hashing_encoder)  # reads the file back
    out = again.get(["effusion", "cardiomegaly"])
    assert hashing_encoder.calls == [2, 1]
    np.testing.assert_array_equal(out[0], first[1])
    np.testing.assert_array_equal(out[1], hashing_encoder.encode(["cardiomegaly"])[0])
    assert len(again) == 3 and len(text_key("x")) == 32
    assert cache.path.name == "test-hashing-64.safetensors" and cache.path.parent.name == "text-embeddings"


def test_cache_rejects_other_model_or_garbage(tmp_path, hashing_encoder) -> None:
    cache = TextEmbeddingCache(tmp_path / "c.safetensors", hashing_encoder)
    cache.get(["a"])

    class Other(type(hashing_encoder)):
        name = "other"

    with pytest.raises(BadInputError, match="not 'other'"):
        TextEmbeddingCache(tmp_path / "c.safetensors", Other())
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BadInputError, match="unreadable"):
        TextEmbeddingCache(tmp_path / "bad.safetensors", hashing_encoder)


@pytest.mark.parametrize(
    ("sentence", "flipped"),
    [
        ("There is no pleural effusion.", "There is pleural effusion."),
        ("No pneumothorax or pleural effusion.", "Pneumothorax or pleural effusion."),
        ("No evidence of pneumonia.", "Evidence of pneumonia."),
        ("Pneumothorax is not seen.", "Pneumothorax is seen."),
        ("Stable cardiomegaly without edema.", "Stable cardiomegaly with edema."),
        ("The heart is enlarged.", "The heart is not enlarged."),
        ("Heart size normal.", "Heart size abnormal."),
        ("Small left pleural effusion.", "No small left pleural effusion."),
        ("Effusion cannot be excluded.", None),
        ("Possible left lower lobe pneumonia.", None),
        ("The lungs are not hyperinflated, no effusion.", None),
        ("", None),
    ],
)
def test_flip_polarity(sentence: str, flipped: str | None) -> None:
    assert flip_polarity(sentence) == flipped
    if flipped is not None and "normal" not in sentence:  # normal → abnormal flips meaning without a cue
        assert is_negated(sentence) != is_negated(flipped)
