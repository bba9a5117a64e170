"""A batch sampler for the sentence-transformers trainer: seeded per epoch, optionally one language per batch.

It keeps the standard signature ``(dataset, batch_size, drop_last, valid_label_columns, generator,
seed)``; the languages come in through :func:`language_batch_sampler`, which returns a factory the
trainer calls like a class. ``len(sampler)`` always equals the number of batches it yields.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from sentence_transformers.base.sampler import DefaultBatchSampler


class LanguageBatchSampler(DefaultBatchSampler):
    """Shuffled batches (re-seeded with ``seed + epoch``); with ``one_language_per_batch`` each batch holds one language.

    Args:
        languages: language of each dataset row (``None`` counts as its own language); defaults to one group.
        one_language_per_batch: group rows by language before batching (seed paper B).
    """

    def __init__(
        self, dataset, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
        generator=None, seed: int = 0, *, languages: Sequence[str | None] | None = None,
        one_language_per_batch: bool = False,
    ) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        n = len(dataset)
        if languages is not None and len(languages) != n:
            raise ValueError(f"languages has {len(languages)} entries for a dataset of {n} rows")
        groups: dict[str | None, list[int]] = defaultdict(list)  # in order of first appearance: no
        for i in range(n):                                       # language code is treated specially
            key = languages[i] if (one_language_per_batch and languages is not None) else "all"
            groups[key].append(i)
        self.groups = [np.asarray(v, dtype=np.int64) for v in groups.values()]
        self.one_language_per_batch = one_language_per_batch

    def _batches_in(self, size: int) -> int:
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)

    def __len__(self) -> int:
        return sum(self._batches_in(len(g)) for g in self.groups)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([int(self.seed or 0), int(self.epoch)])
        batches: list[list[int]] = []
        for group in self.groups:
            order = group[rng.permutation(len(group))]
            for b in range(self._batches_in(len(group))):
                batches.append([int(i) for i in order[b * self.batch_size : (b + 1) * self.batch_size]])
        for b in rng.permutation(len(batches)):
            yield batches[b]


def language_batch_sampler(languages: Sequence[str | None], *, one_language_per_batch: bool = False):
    """A factory with the trainer's batch-sampler signature, bound to the rows' languages."""
    return functools.partial(
        LanguageBatchSampler, languages=list(languages), one_language_per_batch=one_language_per_batch
    )
