"""The held-out dev part of the training queries: a seeded, grouped, stratified split, and what it decides.

The dev part picks the schedule's point (the epoch whose weights are kept) and stops training when it
stops improving; it also guards each language against losing to the base model. Two rules keep it honest:

* **grouped**: queries sharing a ``source_id`` (translations of one KB row) land on the same side, so a
  dev query never has its own translation among the training anchors;
* **stratified**: within each stratum (relevance target x language) about ``share`` of the groups go
  to dev, with a seeded random offset per stratum so small strata do not all round to zero.

The score is the macro mean of per-language MRR (:func:`dev_score`): a large language cannot hide a
small one's loss.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import KnowledgeBaseError
from ..kb import QueryRecord

DEFAULT_DEV_SHARE = 0.15
MIN_DEV_QUERIES = 20
GUARD_POINTS = 0.02  # a dev language losing more MRR than this against the base model is reported


@dataclass(frozen=True)
class DevSplit:
    """Training and dev queries (disjoint, grouped by ``source_id``) and the input positions of the dev ones."""

    train: list[QueryRecord]
    dev: list[QueryRecord]
    dev_rows: list[int]


def split_dev(queries: Sequence[QueryRecord], *, share: float = DEFAULT_DEV_SHARE, seed: int = 0,
              min_dev: int = MIN_DEV_QUERIES) -> DevSplit:
    """Set aside about ``share`` of ``queries`` as dev: seeded, grouped by ``source_id``, stratified.

    Raises:
        ValueError: ``share`` outside (0, 1).
        KnowledgeBaseError: the dev part would hold fewer than ``min_dev`` queries, or no training query would be left.
    """
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        raise ValueError(f"dev_share must be a number strictly between 0 and 1, got {share!r}")
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, q in enumerate(queries):
        groups[("source", q.source_id) if q.source_id is not None else ("row", i)].append(i)
    strata: dict[Any, list[Any]] = defaultdict(list)
    for key, members in groups.items():
        first = queries[members[0]]
        target = first.label if first.relevant_ids is None else first.relevant_ids[0]
        strata[(target, tuple(sorted({queries[i].lang or "" for i in members})))].append(key)
    rng = np.random.default_rng([seed, 7])
    dev_groups: set[Any] = set()
    for stratum in sorted(strata, key=repr):  # a fixed order: the rng draws do not depend on dict order
        keys = strata[stratum]
        order = rng.permutation(len(keys))
        u = rng.random()  # seeded phase: strata smaller than 1/share still send some groups to dev
        for rank, j in enumerate(order):
            if np.floor((rank + 1) * share + u) > np.floor(rank * share + u):
                dev_groups.add(keys[j])
    dev_rows = sorted(i for key in dev_groups for i in groups[key])
    dev_set = set(dev_rows)
    split = DevSplit(train=[q for i, q in enumerate(queries) if i not in dev_set],
                     dev=[queries[i] for i in dev_rows], dev_rows=dev_rows)
    if len(split.dev) < min_dev:
        raise KnowledgeBaseError(
            f"the dev split is too small: {len(split.dev)} of {len(queries)} training queries at dev_share={share} "
            f"(at least {min_dev} needed for a dev score worth choosing on); give more queries, a larger "
            "dev_share (--dev-share), your own dev queries (--dev FILE), or dev_share=0 to train without one"
        )
    if not split.train:
        raise KnowledgeBaseError("the dev split left no training query; lower dev_share (--dev-share)")
    return split


def dev_score(report: Mapping[str, Any]) -> float:
    """Macro mean of per-language MRR of an :func:`~mlret_rag.evaluate` report."""
    per = report["per_language"]
    return float(np.mean([m["mrr"] for m in per.values()])) if per else float(report["overall"]["mrr"])


def language_guard(base: Mapping[str, Any], chosen: Mapping[str, Any],
                   points: float = GUARD_POINTS) -> list[dict[str, Any]]:
    """Dev languages whose MRR under the chosen weights is more than ``points`` below the base model's."""
    out = []
    for lang, m in chosen["per_language"].items():
        before = base["per_language"].get(lang)
        if before is not None and m["mrr"] < before["mrr"] - points:
            out.append({"lang": lang, "n_queries": m["n_queries"], "base_mrr": before["mrr"],
                        "tuned_mrr": m["mrr"], "delta": round(m["mrr"] - before["mrr"], 6)})
    return sorted(out, key=lambda row: row["delta"])


def check_dev_queries(dev: Sequence[QueryRecord], where: str = "dev queries") -> list[QueryRecord]:
    """User-given dev queries: at least :data:`MIN_DEV_QUERIES` with a label or ``relevant_ids``."""
    dev = list(dev)
    unusable = sum(q.label is None and q.relevant_ids is None for q in dev)
    if unusable:
        raise KnowledgeBaseError(f"{where}: {unusable} queries have neither \"label\" nor \"relevant_ids\"")
    if len(dev) < MIN_DEV_QUERIES:
        raise KnowledgeBaseError(f"{where}: {len(dev)} queries; at least {MIN_DEV_QUERIES} are needed to choose on")
    return dev
