"""Labelled multilingual voice-command utterances sampled from the Home Assistant intent grammars.

Data: the ``home-assistant-intents`` package (sentence templates written by native speakers for ~40
intents in ~65 languages, plus English intent descriptions) and the ``hassil`` template parser, both
by the Home Assistant / Open Home Foundation authors, Apache License 2.0
(https://github.com/OHF-Voice/intents, https://github.com/OHF-Voice/hassil). Nothing from them is
copied into this repository: utterances are generated at run time from the installed packages.

Sampling: a template is expanded by a seeded random walk over hassil's parsed expression tree (one
alternative per group, a random order for permutations, a random value per slot list). hassil's own
``sample_intents`` enumerates expansions exhaustively in order, which is millions of sentences for
some templates and biased towards the first alternatives when cut off. Choices made here:

* Templates that need user data are skipped: slot lists the package does not define (``{name}``,
  ``{area}``, ``{floor}`` …) and wildcard lists (``{message}``, ``{search_query}``, ``{timer_name}`` …).
  Intents with only such templates (e.g. HassBroadcast) do not appear.
* Digit leaks: numbers from range lists (timer durations, volume, brightness, temperature) are written
  as words in the utterance's language with hassil's RBNF engine (the one Home Assistant uses to read
  spoken numbers), and any utterance still containing an ASCII digit (literal ``1/2``, ``%`` forms) is
  dropped, so no language-independent token like ``25`` ties a German query to an English KB entry.
* Near-duplicate intents (HassTurnOn/HassTurnOff, HassMediaPause/HassMediaUnpause, HassPauseTimer/
  HassUnpauseTimer, HassMediaPlayerMute/Unmute …) are kept on purpose: they are the confusable
  labels weighted negative sampling is about. A text that two intents of one language both produce is
  ambiguous and dropped from both.
* Deterministic: each (language, intent) draws from its own ``random.Random(f"{seed}:{lang}:{intent}")``,
  so a language's sample does not depend on which other languages were requested.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..kb import KBRecord, QueryRecord

PIVOT_LANGUAGE = "en"
DEFAULT_TRAIN_LANGUAGES = ("de", "fr", "es", "ru", "zh-CN", "ar", "hi", "pl")
"""Training languages used when none are given: several scripts and families."""

_ASCII_DIGIT = re.compile(r"[0-9]")
_SPACES = re.compile(r"\s+")
_MAX_ATTEMPTS_PER_SAMPLE = 20


class _NeedsUserData(Exception):
    """A template refers to a list the package does not define, a wildcard, or an unspeakable number."""


# -------------------------------------------------------------------------------------------------
def available_languages() -> list[str]:
    """Language codes the installed ``home-assistant-intents`` package has grammars for."""
    from home_assistant_intents import get_languages

    return list(get_languages())


def intent_descriptions() -> dict[str, str]:
    """English one-line description of every intent, e.g. ``{"HassTurnOn": "Turns on a device or entity"}``."""
    from home_assistant_intents import get_intent_info

    info = get_intent_info() or {}
    return {name: str(item.get("description", "")) for name, item in info.items()}


def load_home_assistant_intents(
    languages: Iterable[str] | None = None,
    *,
    per_intent: int = 50,
    seed: int = 0,
    intents: Iterable[str] | None = None,
) -> dict[str, list[tuple[str, str]]]:
    """Sample up to ``per_intent`` distinct utterances per (language, intent).

    Args:
        languages: language codes (see :func:`available_languages`); ``None`` means all of them.
        per_intent: cap on distinct utterances per language and intent.
        seed: sampling seed; the same seed gives the same utterances.
        intents: restrict to these intent names (``None``: every intent with usable templates).

    Returns:
        ``{lang: [(text, intent), ...]}`` sorted by intent, then sampling order. Languages with no usable
        template are present with an empty list.

    Raises:
        ValueError: an unknown language code or a non-positive ``per_intent``.
    """
    if not isinstance(per_intent, int) or isinstance(per_intent, bool) or per_intent < 1:
        raise ValueError(f"per_intent must be a positive integer, got {per_intent!r}")
    known = available_languages()
    langs = list(known) if languages is None else list(dict.fromkeys(languages))
    unknown = [lang for lang in langs if lang not in known]
    if unknown:
        raise ValueError(f"languages: unknown code(s) {unknown}; available: {', '.join(known)}")
    wanted = None if intents is None else set(intents)
    return {lang: _sample_language(lang, per_intent, seed, wanted) for lang in langs}


def language_coverage(data: dict[str, list[tuple[str, str]]]) -> dict[str, int]:
    """Number of distinct intents per language in a :func:`load_home_assistant_intents` result."""
    return {lang: len({intent for _, intent in rows}) for lang, rows in data.items()}


# -------------------------------------------------------------------------------------------------
@cache
def _grammar(lang: str) -> Any:
    from hassil import Intents
    from home_assistant_intents import get_intents

    return Intents.from_dict(get_intents(lang, json_load=json.load))


def _sample_language(lang: str, per_intent: int, seed: int, wanted: set[str] | None) -> list[tuple[str, str]]:
    grammar = _grammar(lang)
    by_intent: dict[str, list[str]] = {}
    for name in sorted(grammar.intents):
        if wanted is not None and name not in wanted:
            continue
        templates = usable_templates(grammar, grammar.intents[name])
        if templates:
            by_intent[name] = sample_intent(lang, name, templates, per_intent, seed)
    owners: dict[str, set[str]] = {}
    for name, texts in by_intent.items():
        for text in texts:
            owners.setdefault(_key(text), set()).add(name)
    rows = [(t, name) for name, texts in by_intent.items() for t in texts if len(owners[_key(t)]) == 1]
    return rows


def usable_templates(grammar: Any, intent: Any) -> list[tuple[Any, dict, dict]]:
    """(sentence, slot lists, expansion rules) for each template that needs no user data."""
    from hassil import WildcardSlotList

    out = []
    for data in intent.data:
        lists = {**grammar.slot_lists, **data.slot_lists}
        rules = {**grammar.expansion_rules, **data.expansion_rules}
        for sentence in data.sentences:
            try:
                names = set(sentence.list_names(rules))
            except RecursionError:  # pragma: no cover - malformed grammar
                continue
            if all(n in lists and not isinstance(lists[n], WildcardSlotList) for n in names):
                out.append((sentence, lists, rules))
    return out


def sample_intent(lang: str, intent: str, templates: list, per_intent: int, seed: int) -> list[str]:
    """Up to ``per_intent`` distinct utterances expanded from ``templates`` (:func:`usable_templates`), seeded;
    a longer sample starts with the shorter one."""
    rng = random.Random(f"{seed}:{lang}:{intent}")
    seen: set[str] = set()
    texts: list[str] = []
    dead: set[int] = set()
    for _ in range(per_intent * _MAX_ATTEMPTS_PER_SAMPLE):
        if len(texts) >= per_intent or len(dead) == len(templates):
            break
        i = rng.randrange(len(templates))
        if i in dead:
            continue
        sentence, lists, rules = templates[i]
        try:
            text = _clean(_walk(sentence.expression, lists, rules, lang, rng))
        except _NeedsUserData:
            dead.add(i)
            continue
        if not text or _ASCII_DIGIT.search(text) or _key(text) in seen:
            continue
        seen.add(_key(text))
        texts.append(text)
    return texts


def _walk(expr: Any, lists: dict, rules: dict, lang: str, rng: random.Random, depth: int = 0) -> str:
    """One random expansion of a hassil expression."""
    from hassil import (
        Alternative,
        ListReference,
        Permutation,
        RangeSlotList,
        RuleReference,
        TextChunk,
        TextSlotList,
    )
    from hassil import (
        Sequence as Seq,
    )

    if depth > 50:
        raise _NeedsUserData("expansion too deep")
    walk = lambda e: _walk(e, lists, rules, lang, rng, depth + 1)
    if isinstance(expr, TextChunk):
        return expr.original_text
    if isinstance(expr, Alternative):
        return walk(rng.choice(expr.items)) if expr.items else ""
    if isinstance(expr, Permutation):
        items = list(expr.items)
        rng.shuffle(items)
        return " ".join(walk(item) for item in items)
    if isinstance(expr, Seq):
        return "".join(walk(item) for item in expr.items)
    if isinstance(expr, RuleReference):
        if expr.rule_name not in rules:
            raise _NeedsUserData(f"rule <{expr.rule_name}>")
        return walk(rules[expr.rule_name].expression)
    if isinstance(expr, ListReference):
        if expr.is_inline_range:
            start, stop, step = expr.get_inline_range()
            return _number_words(rng.choice(range(start, stop + 1, step)), lang, rng)
        slot = lists.get(expr.list_name)
        if isinstance(slot, TextSlotList) and slot.values:
            return walk(rng.choice(slot.values).text_in)
        if isinstance(slot, RangeSlotList):
            return _number_words(rng.choice(list(slot.get_numbers())), lang, rng)
        raise _NeedsUserData(f"list {{{expr.list_name}}}")
    raise _NeedsUserData(f"unexpected expression {type(expr).__name__}")


def _number_words(number: float, lang: str, rng: random.Random) -> str:
    from hassil.numbers import get_rbnf_engine

    try:
        result = get_rbnf_engine(lang).format_number(number)
    except Exception as exc:  # no RBNF rules for this language or number
        raise _NeedsUserData(f"number {number} in {lang}") from exc
    words = sorted(set(result.text_by_ruleset.values()))
    if not words:
        raise _NeedsUserData(f"number {number} in {lang}")
    return rng.choice(words)


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _key(text: str) -> str:
    return _clean(text).casefold()


# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IntentBenchmark:
    """An English intent KB and multilingual queries, split for fine-tuning and evaluation.

    Attributes:
        index: English KB records that are searched (label = intent); positives and negatives come from here.
        kb_train: the English training part of the KB (same labels; usable as monolingual anchors).
        train_queries: anchors in the training languages (label = intent, ``source_id`` None: they are
            independent utterances, not translations of a KB row).
        eval_queries: held-out queries in English, the training languages and the zero-shot languages.
        train_languages: languages of ``train_queries``.
        zero_shot_languages: evaluation languages left out of training.
        descriptions: English description per intent (for a label similarity).
        unlabelled_pool: utterances of ``pool_languages`` disjoint from every KB, training and evaluation
            text, for self-training; each carries its true label so a benchmark can score pseudo-labels
            (strip it before training: ``finetune`` ignores it anyway).
    """

    index: list[KBRecord]
    kb_train: list[KBRecord]
    train_queries: list[QueryRecord]
    eval_queries: list[QueryRecord]
    train_languages: tuple[str, ...]
    zero_shot_languages: tuple[str, ...]
    descriptions: dict[str, str] = field(default_factory=dict)
    unlabelled_pool: list[QueryRecord] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Intent labels of the index, sorted."""
        return sorted({r.label for r in self.index if r.label})

    @property
    def language_groups(self) -> dict[str, str]:
        """Each evaluation language's role: ``pivot``, ``train``, ``zero-shot-variant`` (a regional or
        script variant of a training language, e.g. de-CH next to de) or ``zero-shot``."""
        base = {lang.split("-")[0] for lang in self.train_languages}
        groups = {PIVOT_LANGUAGE: "pivot", **{lang: "train" for lang in self.train_languages}}
        for lang in self.zero_shot_languages:
            groups[lang] = "zero-shot-variant" if lang.split("-")[0] in base else "zero-shot"
        return groups

    def save(self, folder: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``index``, ``kb_train``, ``train_queries`` and ``eval_queries`` as JSON Lines files that
        ``mlret finetune`` / ``mlret eval`` read; returns the paths by part name."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for part in ("index", "kb_train", "train_queries", "eval_queries", "unlabelled_pool"):
            if part == "unlabelled_pool" and not self.unlabelled_pool:
                continue
            paths[part] = out / f"{part}.jsonl"
            with paths[part].open("w", encoding="utf-8") as fh:
                for rec in getattr(self, part):
                    row = {k: v for k, v in asdict(rec).items() if v not in (None, {})}
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return paths


def build_intent_benchmark(
    *,
    train_languages: Sequence[str] = DEFAULT_TRAIN_LANGUAGES,
    zero_shot_languages: Sequence[str] | None = None,
    kb_per_intent: int = 40,
    index_ratio: float = 0.5,
    train_per_intent: int = 20,
    eval_per_intent: int = 5,
    min_intents: int = 10,
    seed: int = 0,
    pool_languages: Sequence[str] = (),
    pool_per_intent: int = 0,
) -> IntentBenchmark:
    """Build the English-KB benchmark: index/train KB split, training anchors, held-out eval queries.

    Args:
        train_languages: languages whose utterances become training anchors (English is never one:
            the English training part of the KB is ``kb_train``).
        zero_shot_languages: evaluation-only languages; ``None`` means every other language covering at
            least ``min_intents`` of the KB's intents.
        kb_per_intent: English utterances sampled per intent for the KB (index + training part).
        index_ratio: share of each intent's English utterances that go to the index (at least one).
        train_per_intent: anchors per (training language, intent).
        eval_per_intent: held-out evaluation queries per (language, intent).
        min_intents: languages covering fewer KB intents are left out when picking zero-shot languages.
        seed: sampling and split seed.
        pool_languages, pool_per_intent: zero-shot languages that also get an unlabelled pool of up to
            ``pool_per_intent`` utterances per intent (``unlabelled_pool``); the evaluation queries are
            the same as without a pool.

    Every evaluation text differs (case-insensitively) from every KB and training text in any language,
    and only intents present in the English index are kept.

    Raises:
        ValueError: on an unknown language, a language in both lists, or out-of-range sizes.
    """
    if not 0.0 < index_ratio < 1.0:
        raise ValueError(f"index_ratio must be between 0 and 1 (exclusive), got {index_ratio!r}")
    for name, value in (("kb_per_intent", kb_per_intent), ("train_per_intent", train_per_intent),
                        ("eval_per_intent", eval_per_intent)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    train_langs = tuple(dict.fromkeys(train_languages))
    if PIVOT_LANGUAGE in train_langs:
        raise ValueError(f"train_languages must not contain the pivot language {PIVOT_LANGUAGE!r}")
    known = available_languages()
    if zero_shot_languages is None:
        candidates = [lang for lang in known if lang != PIVOT_LANGUAGE and lang not in train_langs]
    else:
        candidates = list(dict.fromkeys(zero_shot_languages))
        both = sorted(set(candidates) & set(train_langs))
        if both:
            raise ValueError(f"languages in both train_languages and zero_shot_languages: {both}")
        if PIVOT_LANGUAGE in candidates:
            raise ValueError(f"zero_shot_languages must not contain the pivot language {PIVOT_LANGUAGE!r}")

    rng = random.Random(f"{seed}:split")
    english = load_home_assistant_intents([PIVOT_LANGUAGE], per_intent=kb_per_intent + eval_per_intent,
                                          seed=seed)[PIVOT_LANGUAGE]
    index: list[KBRecord] = []
    kb_train: list[KBRecord] = []
    en_eval: list[tuple[str, str]] = []
    for intent, texts in _group(english).items():
        n_eval = min(eval_per_intent, len(texts) // 3)
        kb_texts, held = texts[: len(texts) - n_eval], texts[len(texts) - n_eval:]
        n_index = max(1, round(len(kb_texts) * index_ratio)) if len(kb_texts) > 1 else len(kb_texts)
        for i, text in enumerate(kb_texts):
            rec = KBRecord(id=f"ha-{PIVOT_LANGUAGE}-{intent}-{i:03d}", text=text, label=intent,
                           lang=PIVOT_LANGUAGE)
            (index if i < n_index else kb_train).append(rec)
        en_eval.extend((t, intent) for t in held)
    labels = {r.label for r in index}

    foreign = load_home_assistant_intents(
        list(train_langs) + candidates, per_intent=train_per_intent + eval_per_intent, seed=seed,
        intents=labels,
    )
    if zero_shot_languages is None:
        candidates = [lang for lang in candidates if len({i for _, i in foreign[lang]}) >= min_intents]
    used = {_key(r.text) for r in index + kb_train}
    train_queries: list[QueryRecord] = []
    eval_rows: list[tuple[str, str, str]] = [(t, i, PIVOT_LANGUAGE) for t, i in en_eval]
    for lang in train_langs:
        for intent, texts in _group(foreign[lang]).items():
            n_eval = min(eval_per_intent, len(texts) // 2)
            for text in texts[: len(texts) - n_eval]:
                train_queries.append(QueryRecord(text=text, label=intent, lang=lang))
                used.add(_key(text))
            eval_rows.extend((t, intent, lang) for t in texts[len(texts) - n_eval:])
    for lang in candidates:
        for intent, texts in _group(foreign[lang]).items():
            eval_rows.extend((t, intent, lang) for t in texts[:eval_per_intent])
    eval_queries = [QueryRecord(text=t, label=i, lang=lang) for t, i, lang in eval_rows
                    if i in labels and _key(t) not in used]
    pool = _unlabelled_pool(pool_languages, candidates, pool_per_intent, eval_per_intent, seed, labels,
                            used | {_key(q.text) for q in eval_queries})
    rng.shuffle(train_queries)
    descriptions = {k: v for k, v in intent_descriptions().items() if k in labels}
    return IntentBenchmark(index=index, kb_train=kb_train, train_queries=train_queries,
                           eval_queries=eval_queries, train_languages=train_langs,
                           zero_shot_languages=tuple(candidates), descriptions=descriptions,
                           unlabelled_pool=pool)


def _unlabelled_pool(languages: Sequence[str], zero_shot: Sequence[str], per_intent: int, eval_per_intent: int,
                     seed: int, labels: set[str], taken: set[str]) -> list[QueryRecord]:
    """Utterances past each (language, intent)'s evaluation sample, minus any text used elsewhere."""
    languages = list(dict.fromkeys(languages))
    if not languages:
        return []
    if isinstance(per_intent, bool) or not isinstance(per_intent, int) or per_intent < 1:
        raise ValueError(f"pool_per_intent must be a positive integer when pool_languages are given, got {per_intent!r}")
    stray = [lang for lang in languages if lang not in zero_shot]
    if stray:
        raise ValueError(f"pool_languages must be zero-shot languages of the benchmark; not: {stray}")
    extended = load_home_assistant_intents(languages, per_intent=eval_per_intent + per_intent, seed=seed,
                                           intents=labels)
    pool = []
    for lang in languages:
        for intent, texts in _group(extended[lang]).items():
            fresh = [t for t in texts[eval_per_intent:] if _key(t) not in taken]
            pool += [QueryRecord(text=t, label=intent, lang=lang) for t in fresh[:per_intent]]
    return pool


def _group(rows: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for text, intent in rows:
        out.setdefault(intent, []).append(text)
    return out
