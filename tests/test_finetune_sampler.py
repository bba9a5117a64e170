"""METHOD.md behaviour 5 (batch side) and the sampler contract: len == batches yielded, re-seeded per epoch,
optionally one language per batch."""

from __future__ import annotations

import pytest
from datasets import Dataset

from mlret_rag.finetune import LanguageBatchSampler, language_batch_sampler

LANGS = ["de"] * 13 + ["sw"] * 7 + [None] * 5 + ["hi-Latn"] * 10


def _make(one_language: bool, drop_last: bool = False, seed: int = 0, batch_size: int = 4) -> LanguageBatchSampler:
    ds = Dataset.from_dict({"anchor": [f"a{i}" for i in range(len(LANGS))]})
    factory = language_batch_sampler(LANGS, one_language_per_batch=one_language)
    # called exactly the way the sentence-transformers trainer calls a custom batch sampler
    return factory(ds, batch_size=batch_size, drop_last=drop_last, valid_label_columns=["label"],
                   generator=None, seed=seed)


@pytest.mark.parametrize("one_language", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_len_equals_what_it_yields_and_every_row_once(one_language, drop_last):
    sampler = _make(one_language, drop_last)
    batches = list(sampler)
    assert len(sampler) == len(batches)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))
    if not drop_last:
        assert sorted(flat) == list(range(len(LANGS)))
    assert all(len(b) == 4 for b in batches) or not drop_last


def test_one_language_per_batch():
    batches = list(_make(True))
    for b in batches:
        assert len({LANGS[i] for i in b}) == 1
    mixed = list(_make(False))
    assert any(len({LANGS[i] for i in b}) > 1 for b in mixed)


def test_reseeded_per_epoch_and_reproducible():
    a, b = _make(True, seed=3), _make(True, seed=3)
    first = list(a)
    assert first == list(b) == list(a)  # same seed and epoch: same batches
    a.set_epoch(1)
    second = list(a)
    assert second != first and sorted(map(tuple, second)) != sorted(map(tuple, first))
    b.set_epoch(1)
    assert list(b) == second
    assert list(_make(True, seed=4)) != first


def test_languages_must_match_the_dataset():
    ds = Dataset.from_dict({"anchor": ["x", "y"]})
    with pytest.raises(ValueError, match="languages has 3 entries"):
        LanguageBatchSampler(ds, 2, False, languages=["a", "b", "c"])
