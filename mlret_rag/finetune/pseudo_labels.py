"""Self-training from unlabelled questions: confident pseudo-labels, the threshold set on untrained queries.

Paper A's Algorithm 1 takes unlabelled target-language questions next to the KB and the training
queries. Here they are used by self-training, refreshed every labelling epoch (each epoch is a round):

1. encode the unlabelled questions, the calibration queries and the index with the **current** model;
2. a question's confidence is the **margin** by which its best target (label, or passage for passage
   KBs) beats the runner-up: ``score(best) - score(second)``, a target scoring as its best index record.
   With ``voters`` (intent KBs, ``pseudo_label_agreement``) the labelled training queries vote too
   (:func:`agreed_margins`): the label must also win among them, and the confidence is the sum of both
   margins. Measured on Home Assistant, it vetoes confident mistakes such as Basque lawn-mower questions
   labelled "previous track" (which cost Catalan and Greek their lawn-mower questions);
3. the threshold is the lowest margin at which the calibration queries (labelled, not trained on at that
   point, never pseudo-labelled) that clear it are at least ``precision`` correct (:func:`choose_threshold`);
4. questions clearing it get that pseudo-label for good; only questions never trained on are labelled
   (one trained on its own label scores confidently whatever the label is). Every epoch trains on the
   labelled ones (at most ``per_epoch``, a seeded sample); the precision of the new labels is estimated
   from the calibration queries by margin (:func:`estimated_precision`), bounded below for their small number
   (:func:`precision_lower_bound`), and reported per epoch with the counts per language;
5. with ``pseudo_labels_frozen_layers``, a pseudo-labelled question trains only the layers above that many:
   its gradient stops below them, while the labelled queries train every layer (off by default; measured
   on Home Assistant, it spares Catalan, which otherwise loses 1.6 points to the pool, for a quarter of
   the pool's gain).
6. with ``pseudo_label_propagation``, a question below the threshold may take a label from its own language's
   questions labelled that round (:func:`propagated_targets`), at a margin the calibration queries set the same
   way for :data:`PROPAGATION_PRECISION` (:meth:`PseudoLabeller._propagate`): a dialect's questions resemble
   each other more than they resemble the KB.

The calibration queries are training queries (:func:`calibration_languages`) of languages that sit out
training until the last of the ``labelling_epochs``, so they are as untrained as the unlabelled questions
whenever labels are given; no label is given after that. By default the base model gives every label (one
labelling epoch), before any query trains, so the training queries of every language calibrate and none
sits out; with more labelling epochs (or ``pseudo_label_agreement``, whose voters are the other languages'
queries) a quarter of the languages do. Measured on Home Assistant: two languages drawn by the seed gave
no threshold at all, or a low one with 75-83 % right labels, on some seeds (README). Dev
queries, which share their languages with the training queries, would be far more confidently right
after an epoch than questions in other languages at the same margin (measured on Home Assistant: dev said
97 % while 60 % were right). With too few languages or queries for that, the dev queries calibrate and
every epoch labels. The unlabelled questions' own labels (if a file has them) are ignored.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import KnowledgeBaseError
from ..kb import QueryRecord
from .dev import MIN_DEV_QUERIES
from .examples import Anchor

logger = logging.getLogger(__name__)

DEFAULT_PRECISION = 0.97  # measured: at 0.9 on dev, the kept dialect questions were only 54-75 % right
# with calibration languages, the epochs that give new labels (they sit out those before the last). Measured on
# Home Assistant, one (labels from the base model only) against two: as much pool gain, no trained-language
# loss, half the time
CALIBRATED_LABELLING_EPOCHS = 1
AUTO_LANGUAGE_SHARE = 4  # with labelling after training too, a quarter of the training languages calibrate (2 of 8 on Home Assistant)
BOUND_CONFIDENCE = 0.95  # the precision reported as "at least" holds with this confidence on calibration-like queries
MIN_CLEARING = 10  # a threshold is only trusted when at least this many dev queries clear it
# propagated labels (``pseudo_label_propagation``) aim lower than the KB margin's: on Home Assistant 0.97 found
# a margin on 2 of 10 seeds; 0.9 on 6, where the propagated labels were 84-92 % right
PROPAGATION_PRECISION = 0.9


def target_margins(query_vecs: np.ndarray, index_vecs: np.ndarray, index_targets: Sequence[int],
                   exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best target per query and its margin over the runner-up (cosine of unit vectors).

    ``index_targets[i]`` is the target of index record ``i`` (a label id, or the record's own position
    for passages; ``-1``: none). A target scores as its best record. With one target the margin is its
    score. ``exclude[q, i]``: record ``i`` does not count for query ``q`` (it scores below any cosine).
    """
    scores = np.asarray(query_vecs, dtype=np.float64) @ np.asarray(index_vecs, dtype=np.float64).T
    if exclude is not None:
        scores = np.where(exclude, -2.0, scores)
    targets = np.asarray(index_targets)
    keep = targets >= 0
    if not keep.any():
        raise ValueError("no index record has a target")
    scores, targets = scores[:, keep], targets[keep]
    order = np.argsort(targets, kind="stable")
    sorted_targets = targets[order]
    starts = np.flatnonzero(np.r_[True, sorted_targets[1:] != sorted_targets[:-1]])
    per_target = np.maximum.reduceat(scores[:, order], starts, axis=1)  # (queries, targets present)
    present = sorted_targets[starts]
    if per_target.shape[1] == 1:
        return np.full(len(scores), present[0]), per_target[:, 0]
    top2 = np.argpartition(-per_target, 1, axis=1)[:, :2]
    rows = np.arange(len(scores))[:, None]
    pair = per_target[rows, top2]
    first = np.where(pair[:, 0] >= pair[:, 1], top2[:, 0], top2[:, 1])
    margin = np.abs(pair[:, 0] - pair[:, 1])
    return present[first], margin


def agreed_margins(query_vecs: np.ndarray, index_vecs: np.ndarray, index_targets: Sequence[int],
                   voter_vecs: np.ndarray, voter_targets: Sequence[int],
                   exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best index target per query, and a confidence that needs a second opinion: among the labelled
    ``voter`` queries the same target must win too; the confidence is then the sum of the two margins, else
    ``-inf`` (never cleared). ``exclude[q, v]``: voter ``v`` may not vote on query ``q`` (e.g. its translation).
    """
    best, margin = target_margins(query_vecs, index_vecs, index_targets)
    voted, vote_margin = target_margins(query_vecs, voter_vecs, voter_targets, exclude)
    return best, np.where(voted == best, margin + vote_margin, -np.inf)


def propagated_targets(query_vecs: np.ndarray, query_langs: Sequence[str | None], seeds: Sequence[int],
                       seed_targets: Sequence[int], candidates: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate question: the target of its most similar seeded question **of the same language**, and
    the margin by which that target's best similarity beats the runner-up target's (:func:`target_margins`
    with the seeds as the index).

    The margin is ``-inf`` (never cleared) where the candidate's language has seeds of fewer than two
    targets: with nothing to compare, any similarity would look like a wide margin.
    """
    langs = np.asarray([lang or "" for lang in query_langs], dtype=object)
    seeds, candidates = np.asarray(seeds, dtype=int), np.asarray(candidates, dtype=int)
    seed_targets = np.asarray(seed_targets, dtype=int)
    if not len(candidates):
        return np.zeros(0, dtype=int), np.zeros(0)
    if not len(seeds):
        return np.zeros(len(candidates), dtype=int), np.full(len(candidates), -np.inf)
    other_language = langs[candidates][:, None] != langs[seeds][None, :]
    best, margin = target_margins(query_vecs[candidates], query_vecs[seeds], seed_targets, exclude=other_language)
    targets_per_language = {lang: len(set(seed_targets[langs[seeds] == lang].tolist())) for lang in set(langs[seeds])}
    comparable = np.array([targets_per_language.get(lang, 0) >= 2 for lang in langs[candidates]])
    return best, np.where(comparable, margin, -np.inf)


def choose_threshold(margins: Sequence[float], correct: Sequence[bool], *, precision: float = DEFAULT_PRECISION,
                     min_clearing: int = MIN_CLEARING) -> float | None:
    """Lowest margin ``t`` such that the dev queries with margin >= ``t`` are >= ``precision`` correct.

    Only cut points between distinct margins count, and at least ``min_clearing`` queries must clear
    ``t``; ``None`` when no such threshold exists (then nothing is pseudo-labelled). A margin of ``-inf``
    never clears (:func:`agreed_margins`' disagreements).
    """
    m = np.asarray(margins, dtype=np.float64)
    c = np.asarray(correct, dtype=bool)
    if len(m) != len(c):
        raise ValueError(f"margins and correct differ in length ({len(m)} vs {len(c)})")
    m, c = m[m > -np.inf], c[m > -np.inf]
    if not len(m):
        return None
    order = np.argsort(-m, kind="stable")
    m, c = m[order], c[order]
    cleared = np.arange(1, len(m) + 1)
    prec = np.cumsum(c) / cleared
    last_of_tie = np.r_[m[1:] != m[:-1], True]  # a cut may only fall after the last of equal margins
    ok = np.flatnonzero(last_of_tie & (prec >= precision) & (cleared >= min_clearing))
    return float(m[ok[-1]]) if len(ok) else None


def estimated_precision(dev_margins: Sequence[float], dev_correct: Sequence[bool],
                        kept_margins: Sequence[float]) -> float | None:
    """Precision of kept pseudo-labels estimated from dev: P(correct | margin), fitted on dev by isotonic
    regression (monotone in the margin), averaged over the kept margins.

    Plain dev precision above the threshold would overstate it when the kept questions sit closer to
    the threshold than the dev ones do (harder languages do).
    """
    if not len(kept_margins):
        return None
    from sklearn.isotonic import IsotonicRegression

    m = np.asarray(dev_margins, dtype=np.float64)
    fit = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    fit.fit(m[m > -np.inf], np.asarray(dev_correct, dtype=np.float64)[m > -np.inf])  # -inf: never kept
    return float(np.mean(fit.predict(np.asarray(kept_margins, dtype=np.float64))))


def precision_lower_bound(correct: Sequence[bool], *, confidence: float = BOUND_CONFIDENCE) -> float | None:
    """One-sided Clopper-Pearson lower bound on the precision that ``correct`` (the calibration queries above
    the threshold) measures: with a few dozen queries, 40 of 40 right still allows 93 %.

    It covers the sampling error of a small calibration set, not a shift between its languages and the
    questions'."""
    c = np.asarray(correct, dtype=bool)
    if not len(c):
        return None
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    from scipy.stats import beta

    right = int(c.sum())
    return 0.0 if right == 0 else float(beta.ppf(1.0 - confidence, right, len(c) - right + 1))


def default_propagation(questions: Sequence[QueryRecord], *, passages: bool) -> bool:
    """What ``pseudo_label_propagation=None`` means: on for intent KBs, where it was measured, unless a question
    names no language (they would all count as one); off for passage KBs, where it was not measured."""
    unnamed = sum(not q.lang for q in questions)
    if unnamed and not passages:
        logger.info("%d unlabelled questions name no language: labels are not propagated inside the pool "
                    "(give each question its lang to propagate)", unnamed)
    return not passages and not unnamed


def unlabelled_questions(records: Sequence[QueryRecord], *, known_texts: Sequence[str] = (),
                         where: str = "unlabelled questions") -> tuple[list[QueryRecord], dict[str, Any]]:
    """The questions to pseudo-label: texts only (labels and ``relevant_ids`` ignored, said so), each text
    once, and none that is also a labelled training or dev query (``known_texts``).

    Raises:
        KnowledgeBaseError: no question is given, or none is left.
    """
    records = list(records)
    if not records:
        raise KnowledgeBaseError(f"{where}: no questions (the file is empty)")
    carried = sum(q.label is not None or q.relevant_ids is not None for q in records)
    if carried:
        logger.warning("%s: %d rows carry a label or relevant_ids; ignored (these questions are pseudo-labelled)",
                       where, carried)
    known = {_key(t) for t in known_texts}
    seen: set[str] = set()
    kept: list[QueryRecord] = []
    duplicates = labelled = 0
    for q in records:
        key = _key(q.text)
        if key in known:
            labelled += 1
        elif key in seen:
            duplicates += 1
        else:
            seen.add(key)
            kept.append(QueryRecord(q.text, lang=q.lang))
    if not kept:
        raise KnowledgeBaseError(f"{where}: every question is also a labelled training or dev query; nothing to learn from")
    stats = {"given": len(records), "used": len(kept), "labels_ignored": carried, "duplicates_dropped": duplicates,
             "also_labelled_dropped": labelled,
             "per_language": dict(Counter(q.lang or "unknown" for q in kept).most_common())}
    return kept, stats


@dataclass(frozen=True)
class Voters:
    """Labelled queries that must agree with a pseudo-label (:func:`agreed_margins`): their texts, targets
    and sources; a calibration query's translations (its ``dev_sources`` entry) do not vote on it."""

    texts: list[str]
    targets: list[int]
    sources: list[str | None]
    dev_sources: list[str | None]

    def exclusions(self) -> np.ndarray | None:
        """``[calibration query, voter]``: True where they share a source (``None`` when none does)."""
        dev = np.asarray([s if s is not None else "\0dev" for s in self.dev_sources], dtype=object)
        own = np.asarray([s if s is not None else "\0voter" for s in self.sources], dtype=object)
        shared = dev[:, None] == own[None, :]
        return shared if shared.any() else None


@dataclass
class PseudoLabeller:
    """Pseudo-labels the unlabelled questions with the current model, once per epoch.

    ``dev_texts``/``dev_targets`` hold the calibration queries (dev, or the calibration languages' training
    queries) with their correct targets (label ids, or relevant index positions for passages); ``index_targets`` the target of each index record and ``index_labels`` its
    label id (what a pseudo-labelled anchor carries).
    """

    questions: list[QueryRecord]
    dev_texts: list[str]
    dev_targets: list[tuple[int, ...]]
    index_texts: list[str]
    index_targets: list[int]
    index_labels: list[int]
    passages: bool
    precision: float = DEFAULT_PRECISION
    per_epoch: int | None = None
    seed: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    calibration_languages: tuple[str, ...] = ()  # their anchors are ``dev_texts``; they train once labelling ends
    labelling_epochs: int | None = None  # the first epochs that give new labels; None: all
    voters: Voters | None = None  # None: the index margin alone decides
    propagation: bool = False  # also propagate labels to same-language neighbours (:meth:`_propagate`)
    dev_langs: list[str | None] = field(default_factory=list)  # the calibration queries' languages (propagation)
    _labels: dict[int, int] = field(default_factory=dict, repr=False)  # question -> its pseudo-label, for good
    _estimates: list[tuple[int, float, float]] = field(default_factory=list, repr=False)  # (new, estimate, bound)

    def __post_init__(self) -> None:
        if self.propagation and len(self.dev_langs) != len(self.dev_texts):
            raise ValueError(f"propagation needs the language of every calibration query: {len(self.dev_langs)} "
                             f"languages for {len(self.dev_texts)} queries")

    def labelling(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) gives new pseudo-labels."""
        return self.labelling_epochs is None or epoch < self.labelling_epochs

    def sitting_out(self, epoch: int) -> frozenset[str]:
        """Languages whose labelled anchors skip ``epoch``: the calibration languages while a later epoch still
        gives labels. An epoch's labels are given before it trains, so the last labelling epoch trains them."""
        return frozenset(self.calibration_languages) if self.labelling(epoch + 1) else frozenset()

    def round(self, encoder, epoch: int) -> tuple[list[Anchor], dict[str, Any]]:
        """Pseudo-labelled anchors for ``epoch`` and what was decided (threshold, counts, estimated precision).

        Only questions the model has never trained on are labelled, and a label once given stays: after
        training on its own pseudo-label a question scores confidently whatever that label is, so its margin
        would no longer mean what it means for the (untrained) calibration queries."""
        if "unreadable_dropped" not in self.stats:
            self._drop_unreadable(encoder)
        fresh = [i for i in range(len(self.questions)) if i not in self._labels]
        new: list[int] = []
        estimate = bound = threshold = dev_above = None
        spread: dict[str, Any] = {}
        if self.labelling(epoch):
            index_vecs = encoder.encode_documents(self.index_texts)
            voter_vecs = None if self.voters is None else encoder.encode_queries(self.voters.texts)
            dev_vecs = encoder.encode_queries(self.dev_texts)
            dev_best, dev_margin = self._confidence(dev_vecs, index_vecs, voter_vecs,
                                                    self.voters and self.voters.exclusions())
            dev_correct = np.array([best in targets for best, targets in zip(dev_best.tolist(), self.dev_targets)])
            threshold = choose_threshold(dev_margin, dev_correct, precision=self.precision)
            if threshold is not None:
                dev_above = dev_correct[dev_margin >= threshold]  # the calibration queries the labels are judged by
                bound = precision_lower_bound(dev_above)
        if fresh and threshold is not None:
            fresh_vecs = encoder.encode_queries([self.questions[i].text for i in fresh])
            best, margin = self._confidence(fresh_vecs, index_vecs, voter_vecs)
            clears = np.flatnonzero(margin >= threshold)
            new = [fresh[j] for j in clears.tolist()]
            self._labels.update((fresh[j], int(best[j])) for j in clears.tolist())
            estimate = estimated_precision(dev_margin, dev_correct, margin[clears])
            if self.propagation and len(clears):
                spread = self._propagate(fresh, fresh_vecs, clears, best, dev_vecs, dev_best, dev_margin >= threshold)
                if spread.get("labels"):
                    self._labels.update(spread["labels"])
                    new += [i for i, _ in spread["labels"]]
                    estimate = (len(clears) * estimate + len(spread["labels"]) * spread["estimate"]) / len(new)
                    bound = precision_lower_bound(np.concatenate([dev_above, spread["dev_above"]]))
            if estimate is not None:
                self._estimates.append((len(new), estimate, bound))
        labelled = sorted(self._labels)
        kept = labelled
        if self.per_epoch is not None and len(labelled) > self.per_epoch:
            rng = np.random.default_rng([self.seed, epoch, 11])
            kept = sorted(rng.choice(labelled, size=self.per_epoch, replace=False).tolist())
        anchors = [self._anchor(self.questions[i], self._labels[i]) for i in kept]
        langs = Counter(q.lang or "unknown" for q in self.questions)
        cleared = Counter(self.questions[i].lang or "unknown" for i in new)
        used = Counter(self.questions[i].lang or "unknown" for i in kept)
        weight = sum(n for n, _, _ in self._estimates)
        report = {
            "epoch": epoch + 1, "labelling": self.labelling(epoch),
            "calibrated_on": list(self.calibration_languages) or "dev",
            "voters": None if self.voters is None else len(self.voters.texts),
            "threshold": None if threshold is None else round(threshold, 6),
            "dev_precision": None if dev_above is None else round(float(dev_above.mean()), 4),
            "estimated_precision": _rounded(estimate),
            "estimated_precision_all": _rounded(sum(n * e for n, e, _ in self._estimates) / weight if weight else None),
            "precision_lower_bound": _rounded(bound if new else None),
            "precision_lower_bound_all": _rounded(sum(n * b for n, _, b in self._estimates) / weight if weight else None),
            "cleared": len(new), "labelled": len(labelled), "used": len(anchors),
            "cleared_per_language": {lang: cleared.get(lang, 0) for lang, _ in langs.most_common()},
            **({} if not self.propagation else {
                "propagation_threshold": _rounded(spread.get("threshold")),
                "propagation_dev_precision": _rounded(spread.get("dev_precision")),
                "propagated": len(spread.get("labels", ())),
                "propagated_per_language": {lang: n for lang, n in Counter(
                    self.questions[i].lang or "unknown" for i, _ in spread.get("labels", ())).items()},
            }),
            "used_per_language": {lang: used.get(lang, 0) for lang, _ in langs.most_common()},
        }
        if threshold is None and self.labelling(epoch):
            logger.warning("epoch %d: no margin makes %d+ %s queries %.0f%% correct; no new pseudo-label this epoch",
                           epoch + 1, MIN_CLEARING, "calibration" if self.calibration_languages else "dev",
                           100 * self.precision)
        return anchors, report

    def _propagate(self, fresh: list[int], fresh_vecs: np.ndarray, clears: np.ndarray, best: np.ndarray,
                   dev_vecs: np.ndarray, dev_best: np.ndarray, dev_seeded: np.ndarray) -> dict[str, Any]:
        """Labels for fresh questions below the KB threshold, from this round's labelled questions of their language
        (:func:`propagated_targets`), at a margin the calibration queries set the same way: those clearing the
        KB threshold seed the others, at :data:`PROPAGATION_PRECISION`. Empty when no margin reaches it."""
        seeds, others = np.flatnonzero(dev_seeded), np.flatnonzero(~dev_seeded)
        dev_spread, dev_margin = propagated_targets(dev_vecs, self.dev_langs, seeds, dev_best[seeds], others)
        right = np.array([t in self.dev_targets[c] for t, c in zip(dev_spread.tolist(), others.tolist())], dtype=bool)
        threshold = choose_threshold(dev_margin, right, precision=PROPAGATION_PRECISION)
        if threshold is None:
            logger.info("no propagation margin makes %d+ calibration queries %.0f%% correct; labels are not propagated",
                        MIN_CLEARING, 100 * PROPAGATION_PRECISION)
            return {}
        below = np.setdiff1d(np.arange(len(fresh)), clears)
        spread, margin = propagated_targets(fresh_vecs, [self.questions[i].lang for i in fresh], clears, best[clears],
                                            below)
        take = np.flatnonzero(margin >= threshold)
        dev_above = right[dev_margin >= threshold]
        return {"threshold": threshold, "dev_precision": float(dev_above.mean()), "dev_above": dev_above,
                "labels": [(fresh[below[j]], int(spread[j])) for j in take.tolist()],
                "estimate": estimated_precision(dev_margin, right, margin[take])}

    def _confidence(self, query_vecs: np.ndarray, index_vecs: np.ndarray, voter_vecs: np.ndarray | None,
                    exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if voter_vecs is None:
            return target_margins(query_vecs, index_vecs, self.index_targets)
        return agreed_margins(query_vecs, index_vecs, self.index_targets, voter_vecs, self.voters.targets, exclude)

    def _drop_unreadable(self, encoder) -> None:
        """Drop questions the model's vocabulary cannot read (mostly unknown tokens): they all encode alike,
        so a margin says nothing about them."""
        readable = [not flag for flag in mostly_unknown_tokens(encoder, [q.text for q in self.questions])]
        dropped = Counter(q.lang or "unknown" for q, ok in zip(self.questions, readable) if not ok)
        self.stats["unreadable_dropped"] = dict(dropped)
        if dropped:
            logger.warning("%d unlabelled questions are mostly unknown tokens to the model and are left out: %s",
                           sum(dropped.values()), dict(dropped))
        self.questions = [q for q, ok in zip(self.questions, readable) if ok]
        self.stats["used"] = len(self.questions)
        self.stats["per_language"] = dict(Counter(q.lang or "unknown" for q in self.questions).most_common())
        if not self.questions:
            raise KnowledgeBaseError("unlabelled questions: the model's vocabulary cannot read any of them "
                                     "(mostly unknown tokens)")

    def _anchor(self, question: QueryRecord, best: int) -> Anchor:
        if self.passages:
            return Anchor(question.text, self.index_labels[best], question.lang, None, relevant=(best,))
        return Anchor(question.text, best, question.lang, None)


def calibration_languages(anchors: Sequence[Anchor], count: int | None, seed: int, *,
                          labels_once: bool = False) -> tuple[str, ...]:
    """``count`` languages of the labelled anchors (a seeded choice), leaving at least one to train while
    they sit out.

    ``None`` (the default) chooses every language (two or more) when the base model gives every label
    (``labels_once``: no anchor has trained yet, so none needs to sit out), else a quarter of them, rounded
    down; either only when they hold :data:`~.dev.MIN_DEV_QUERIES` queries or more, otherwise none (the
    threshold is set on dev)."""
    present = sorted({a.lang for a in anchors if a.lang})
    if count is None:
        if labels_once and len(present) >= 2:
            chosen = tuple(present)
        else:
            chosen = _seeded_languages(present, len(present) // AUTO_LANGUAGE_SHARE, seed)
        return chosen if sum(a.lang in chosen for a in anchors) >= MIN_DEV_QUERIES else ()
    if count <= 0:
        return ()
    if len(present) < 2:
        logger.warning("calibration_languages=%d needs training queries in two or more languages (found %d); "
                       "the pseudo-label threshold is set on dev", count, len(present))
        return ()
    return _seeded_languages(present, min(count, len(present) - 1), seed)


def calibration_plan(anchors: Sequence[Anchor], count: int | None, seed: int, labelling_epochs: int | None = None,
                     agreement: bool = False) -> tuple[tuple[str, ...], int | None]:
    """The calibration languages (:func:`calibration_languages`) and the labelling epochs they imply.

    Calibrating languages sit out while labels are given, so by default only the first
    :data:`CALIBRATED_LABELLING_EPOCHS` give them; when that leaves the base model giving every label (and no
    voter needs the other languages' queries) every language may calibrate. Without calibration languages
    ``labelling_epochs`` is returned as given."""
    calibrated = CALIBRATED_LABELLING_EPOCHS if labelling_epochs is None else labelling_epochs
    languages = calibration_languages(anchors, count, seed, labels_once=calibrated == 1 and not agreement)
    return languages, (calibrated if languages else labelling_epochs)


def _seeded_languages(present: list[str], count: int, seed: int) -> tuple[str, ...]:
    if count <= 0:
        return ()
    rng = np.random.default_rng([seed, 13])
    return tuple(sorted(rng.choice(present, size=count, replace=False).tolist()))


def never_cleared(rounds: Sequence[dict[str, Any]]) -> list[str]:
    """Languages none of whose questions cleared the threshold in any epoch (no confident KB match)."""
    if not rounds:
        return []
    return [lang for lang in rounds[0]["cleared_per_language"]
            if not any(r["cleared_per_language"].get(lang) for r in rounds)]


def mostly_unknown_tokens(encoder, texts: Sequence[str], share: float = 0.5) -> list[bool]:
    """Per text: at least ``share`` of its tokens are the tokenizer's unknown token (or it has none)."""
    tokenizer = encoder.sentence_transformer.tokenizer
    unk = tokenizer.unk_token_id
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [not row or (unk is not None and sum(t == unk for t in row) >= share * len(row)) for row in ids]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())
