"""A batch sampler for the sentence-transformers trainer: seeded per epoch, optionally one language per batch.

It keeps the standard signature ``(dataset, batch_size, drop_last, valid_label_columns, generator,
seed)``; the languages come in through :func:`language_batch_sampler`, which returns a factory the
trainer calls like a class. ``len(sampler)`` always equals the number of batches it yields. Rows added at
the end (pseudo-labelled anchors) can be batched apart, so that adding them leaves the other rows' batches
as they were: a fine-tune with unlabelled questions then differs from one without them by those batches,
not by a reshuffle of every batch.
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
        added_rows: the last ``added_rows`` rows form batches of their own, shuffled and placed among the
            others with a seed of their own: the other rows get the batches and order they get without them.
    """

    def __init__(
        self, dataset, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
        generator=None, seed: int = 0, *, languages: Sequence[str | None] | None = None,
        one_language_per_batch: bool = False, added_rows: int = 0,
    ) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        n = len(dataset)
        if languages is not None and len(languages) != n:
            raise ValueError(f"languages has {len(languages)} entries for a dataset of {n} rows")
        if not 0 <= added_rows <= n:
            raise ValueError(f"added_rows must be between 0 and the dataset's {n} rows, got {added_rows}")
        self.one_language_per_batch = one_language_per_batch
        self.groups = self._groups(range(n - added_rows), languages)
        self.added_groups = self._groups(range(n - added_rows, n), languages)

    def _groups(self, rows: range, languages: Sequence[str | None] | None) -> list[np.ndarray]:
        groups: dict[str | None, list[int]] = defaultdict(list)  # in order of first appearance: no
        for i in rows:                                           # language code is treated specially
            key = languages[i] if (self.one_language_per_batch and languages is not None) else "all"
            groups[key].append(i)
        return [np.asarray(v, dtype=np.int64) for v in groups.values()]

    def _batches_in(self, size: int) -> int:
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)

    def __len__(self) -> int:
        return sum(self._batches_in(len(g)) for g in (*self.groups, *self.added_groups))

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._shuffled(self.groups, np.random.default_rng([int(self.seed or 0), int(self.epoch)]))
        if self.added_groups:
            rng = np.random.default_rng([int(self.seed or 0), int(self.epoch), 1])
            added = self._shuffled(self.added_groups, rng)
            at = set(rng.choice(len(batches) + len(added), size=len(added), replace=False).tolist())
            rest, extra = iter(batches), iter(added)
            batches = [next(extra) if slot in at else next(rest) for slot in range(len(batches) + len(added))]
        yield from batches

    def _shuffled(self, groups: list[np.ndarray], rng: np.random.Generator) -> list[list[int]]:
        """The groups' rows shuffled and cut into batches, the batches shuffled."""
        batches: list[list[int]] = []
        for group in groups:
            order = group[rng.permutation(len(group))]
            for b in range(self._batches_in(len(group))):
                batches.append([int(i) for i in order[b * self.batch_size : (b + 1) * self.batch_size]])
        return [batches[b] for b in rng.permutation(len(batches))]


def language_batch_sampler(languages: Sequence[str | None], *, one_language_per_batch: bool = False,
                           added_rows: int = 0):
    """A factory with the trainer's batch-sampler signature, bound to the rows' languages."""
    return functools.partial(LanguageBatchSampler, languages=list(languages),
                             one_language_per_batch=one_language_per_batch, added_rows=added_rows)
