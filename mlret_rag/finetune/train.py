"""``finetune``: adapt a multilingual encoder to one knowledge base (METHOD.md) on the sentence-transformers trainer."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._quiet import quiet_transformers
from ..errors import KnowledgeBaseError, OutputExistsError
from ..kb import KBRecord, QueryRecord, as_kb_records, as_query_records
from .augment import augmented_anchors
from .card import CARD_FILE, write_card
from .config import FinetuneConfig
from .data import TrainingData, prepare_training_data
from .dev import DEFAULT_DEV_SHARE, check_dev_queries, dev_score, language_guard, split_dev
from .epochs import ANCHOR_SIMILARITY_WITH_UNLABELLED, EpochExamples, descriptions_cover
from .examples import Anchor, Example
from .frozen_prefix import (
    FrozenPrefixCache,
    check_pseudo_label_frozen_layers,
    default_frozen_layers,
    freeze_prefix,
    transformer_model,
)
from .memory import check_training_memory
from .pseudo_labels import (
    PseudoLabeller,
    Voters,
    calibration_plan,
    default_propagation,
    unlabelled_questions,
)
from .schedule import LinearSchedule, steps_per_epoch
from .translate import Translator

logger = logging.getLogger(__name__)

MAX_WEIGHTED_LABELS = 20_000  # label (or passage) similarity matrix of at most 3.2 GB in float64


@dataclass
class FinetuneResult:
    """What a fine-tune produced: the folder, data statistics, configuration (as run: options left to
    ``None`` resolved), loss and evaluation.

    ``pseudo_labels`` (with ``unlabelled``): per epoch, the (question, label or passage id) pairs trained on;
    ``estimated_peak_gb``: the memory check's estimate (``None`` with ``check_memory=False``).
    """

    out: Path
    stats: dict[str, Any]
    config: FinetuneConfig
    train_loss: float | None
    seconds: float
    evaluation: dict[str, Any] | None = None
    examples: list[Example] = field(default_factory=list, repr=False)
    selection: dict[str, Any] = field(default_factory=dict)
    pseudo_labels: list[list[tuple[str, str]]] = field(default_factory=list, repr=False)
    estimated_peak_gb: float | None = None


def finetune(
    kb: Any,
    queries: Any = None,
    *,
    out: str | os.PathLike[str],
    model: Any = None,
    config: FinetuneConfig | Mapping[str, Any] | None = None,
    dev_queries: Any = None,
    unlabelled: Any = None,
    eval_queries: Any = None,
    translator: Translator | None = None,
    label_descriptions: dict[str, str] | None = None,
    **overrides: Any,
) -> FinetuneResult:
    """Fine-tune ``model`` on ``kb`` so questions in any language retrieve its entries; save it to ``out``.

    The schedule is chosen on held-out data: a dev part of the training queries (:mod:`.dev`) is scored
    after every epoch, the best epoch's weights are kept, and training stops after ``patience`` epochs
    without a better dev score (or at ``epochs``, ``max_steps`` or ``max_seconds``). Every option is a
    field of :class:`~mlret_rag.finetune.FinetuneConfig`.

    Args:
        kb: knowledge-base records (path, dataset, dicts or :class:`~mlret_rag.kb.KBRecord`): labelled
            (intent/FAQ), or passages when the training queries carry ``relevant_ids``.
        queries: training queries in any language with a ``label`` or ``relevant_ids``; ``None`` splits a
            labelled KB into index/training parts.
        out: folder to write (a normal sentence-transformers folder plus ``mlret_card.json``).
        model: ``None`` (bundled multilingual-e5-small), a model name or a folder.
        config: a :class:`~mlret_rag.finetune.FinetuneConfig` (or its ``to_dict()``); default: its defaults.
        dev_queries: your own dev queries (path, records or dicts) instead of a split.
        unlabelled: questions without labels (path, records or dicts of ``text`` and optional ``lang``),
            e.g. a deployed assistant's logs: self-training (:mod:`.pseudo_labels`) adds, every epoch, those
            the current model labels with a margin that dev shows to be ``pseudo_label_precision``
            correct. Needs a dev part; works with ``queries=None`` (the KB's training part gives it).
        eval_queries: held-out queries; base and tuned models are evaluated and the figures go in the card.
        translator: renders training rows into the ``translate_to`` languages (``queries`` is ``None`` only).
        label_descriptions: label -> description; used for label similarity when every label has one.
        **overrides: any :class:`FinetuneConfig` option (``epochs=3``, ``negatives="hard"``, ...), applied
            on top of ``config``.

    Raises:
        OutputExistsError: ``out`` is a non-empty folder and ``overwrite`` is false.
        KnowledgeBaseError: unlabelled KB without ``relevant_ids``, empty queries, a dev split too small,
            or nothing usable to train on.
        TrainingMemoryError: the estimated peak memory exceeds the available memory (``check_memory``).
        ValueError: an invalid option (the message names it).
        TypeError: an override that is not a :class:`FinetuneConfig` option.
    """
    started = time.perf_counter()
    c = _as_config(config).replace(**overrides)
    out = Path(out).expanduser()
    _check_output(out, c.overwrite)
    kb_records = as_kb_records(kb)
    query_records = None if queries is None else as_query_records(queries)
    data = prepare_training_data(kb_records, query_records, train_ratio=c.train_ratio, seed=c.seed,
                                 translator=translator, translate_to=c.translate_to, group_by=c.group_by)
    eval_records = None if eval_queries is None else as_query_records(eval_queries)
    if dev_queries is not None and c.dev_share not in (None, 0):
        raise ValueError("give dev_queries (--dev) or dev_share (--dev-share), not both")
    user_dev = None if dev_queries is None else check_dev_queries(as_query_records(dev_queries))
    data, dev, selection = _hold_out_dev(data, c.dev_share, user_dev, c.seed)
    pool = None if unlabelled is None else as_query_records(unlabelled)
    if c.pseudo_label_propagation is None:
        c = c.replace(pseudo_label_propagation=default_propagation(pool or [], passages=bool(data.passages)))
    labeller = None if pool is None else _pseudo_labeller(data, dev, pool, c)
    c = c.replace(  # the options as run: what None ("chosen from the data") came to
        negatives_per_anchor=c.negatives_per_anchor if c.negatives_per_anchor is not None else (1 if data.passages else 3),
        batch_size=c.batch_size if c.batch_size is not None else (8 if data.passages else 32),
        pseudo_labels_per_epoch=None if labeller is None else labeller.per_epoch,
    )
    _check_fits_data(c, data, dev)
    if c.augment:  # after the dev split and the labeller's calibration choice: copies train, never score
        anchors = augmented_anchors(data.anchors, [r.text for r in data.index], data.index_label_ids, c.seed)
        data = replace(data, anchors=anchors, stats=dict(data.stats, anchors=len(anchors),
                                                         augmented_anchors=len(anchors) - len(data.anchors)))

    import transformers

    from ..encoder import MultilingualEncoder

    random.seed(c.seed)
    np.random.seed(c.seed)
    transformers.set_seed(c.seed)
    encoder = MultilingualEncoder(model, show_progress_bar=False, backend="torch")  # the model being trained
    if c.frozen_layers is None:
        c = c.replace(frozen_layers=default_frozen_layers(encoder.sentence_transformer, passages=bool(data.passages)))
    if labeller is not None and c.pseudo_labels_frozen_layers:
        check_pseudo_label_frozen_layers(encoder.sentence_transformer, c.pseudo_labels_frozen_layers)
    peak_gb = None
    if c.check_memory:
        peak_gb = check_training_memory(encoder, data, batch_size=c.batch_size,
                                        negatives_per_anchor=c.negatives_per_anchor,
                                        max_seq_length=c.max_seq_length, freeze_embeddings=c.freeze_embeddings,
                                        document_embeddings=c.document_embeddings, frozen_layers=c.frozen_layers)
    evaluation: dict[str, Any] = {}
    if eval_records is not None:
        evaluation["base"] = _evaluate(encoder, kb_records, eval_records)

    sampling = EpochExamples(data, c.negatives, c.negatives_per_anchor, c.temperature, c.seed, label_descriptions,
                             c.similarity, c.false_negative_share)
    run = _train(encoder, sampling, dev, c, labeller)
    examples = run.first_examples
    stats = dict(data.stats, examples=len(examples),
                 anchors_without_positive=len(data.anchors) - run.first_sitting_out + run.first_pseudo - len(examples))
    if labeller is not None:
        stats["unlabelled"] = labeller.stats
    selection.update(run.selection)

    transformers.set_seed(c.seed)
    if eval_records is not None:
        evaluation["tuned"] = _evaluate(encoder, kb_records, eval_records)  # the kept weights, in memory
    sections = _card_sections(c, data, label_descriptions, labeller is not None, peak_gb)
    sections["training"] |= {"train_loss": run.train_loss, "steps": run.steps,
                             "seconds": round(time.perf_counter() - started, 1)}
    card = {"base_model": encoder.model_name, "prompts": encoder.prompts, "data": stats,
            "configuration": c.to_dict(), **sections, "selection": selection, "evaluation": evaluation or None}
    if _rank() == 0:  # under torchrun / accelerate launch every process trained the same weights
        _save(encoder, out, card)
    _barrier()
    return FinetuneResult(out=out, stats=stats, config=c, train_loss=run.train_loss,
                          seconds=time.perf_counter() - started, evaluation=evaluation or None,
                          examples=examples, selection=selection, pseudo_labels=run.pseudo_labels,
                          estimated_peak_gb=sections["training"]["estimated_peak_gb"])


# -------------------------------------------------------------------------------------------------
def _as_config(config: Any) -> FinetuneConfig:
    if config is None:
        return FinetuneConfig()
    if isinstance(config, FinetuneConfig):
        return config
    if isinstance(config, Mapping):
        return FinetuneConfig.from_dict(config)
    raise TypeError(f"config must be a FinetuneConfig or a mapping of its options, got {type(config).__name__}")


def _check_fits_data(c: FinetuneConfig, data: TrainingData, dev: _Dev | None) -> None:
    """The option checks that depend on the data or the launch (the others are FinetuneConfig's own)."""
    if c.similarity != "centroid" and data.passages:
        raise ValueError(f"similarity={c.similarity!r} needs labels; passage KBs use 'centroid' (passage cosine)")
    if c.augment and data.passages:
        raise ValueError("augment=True (--augment) mixes an anchor with a same-label KB text and is measured on "
                         "intent KBs only; passage KBs (relevant_ids) train without it")
    if c.max_seconds is not None and _distributed():
        raise ValueError("max_seconds would stop the processes of a distributed run at different steps; use max_steps")
    if c.interpolate and dev is None:
        raise ValueError("interpolate=True chooses the mix on dev data: give dev_queries or a dev_share that gives a dev part")
    if c.negatives == "weighted" and len(data.labels) > MAX_WEIGHTED_LABELS:
        raise ValueError(
            f"weighted sampling keeps a {len(data.labels)} x {len(data.labels)} similarity matrix; above "
            f"{MAX_WEIGHTED_LABELS} passages use group_by (e.g. a document id), or negatives='standard' / 'hard'"
        )


def _card_sections(c: FinetuneConfig, data: TrainingData, descriptions: dict[str, str] | None, self_training: bool,
                   peak_gb: float | None) -> dict[str, dict[str, Any]]:
    """The card's ``sampling`` and ``training``: the options as run, with what they amounted to."""
    sampling = c.section("sampling") | {
        "label_similarity": _similarity_name(c.similarity, descriptions, data.labels, data.passages),
        "negatives_redrawn": "every epoch" if c.negatives != "hard" else "re-mined with the current model every epoch",
    }
    if not (data.passages and c.negatives == "hard"):
        sampling["false_negative_share"] = None  # not used
    training = c.section("schedule") | {
        "schedule": "linear warmup, then linear decay to 0 over the planned steps",
        "loss": "InfoNCE, explicit + in-batch negatives, same-label in-batch candidates masked",
        "estimated_peak_gb": None if peak_gb is None else round(peak_gb, 2),
    }
    if not self_training:
        for name in ("pseudo_label_precision", "pseudo_label_propagation", "pseudo_labels_frozen_layers"):
            training[name] = None  # not used
    return {"sampling": sampling, "training": training}


@dataclass
class _Dev:
    """Dev queries and the index they are scored against, and how they were obtained."""

    queries: list[QueryRecord]
    index: list[KBRecord]


def _anchor_query(data: TrainingData, anchor: Anchor) -> QueryRecord:
    if anchor.relevant is not None:
        return QueryRecord(anchor.text, lang=anchor.lang, source_id=anchor.source_id,
                           relevant_ids=tuple(data.index[i].id for i in anchor.relevant))
    return QueryRecord(anchor.text, data.labels[anchor.label_id], anchor.lang, source_id=anchor.source_id)


def _hold_out_dev(data: TrainingData, dev_share: float | None, user_dev: list[QueryRecord] | None,
                  seed: int) -> tuple[TrainingData, _Dev | None, dict[str, Any]]:
    """Split the dev part off the anchors (or take the user's); returns the remaining data, dev and its description."""
    metric = "macro mean over dev languages of MRR"
    if user_dev is not None:
        return data, _Dev(user_dev, data.index), {"on": f"your dev queries ({len(user_dev)})", "metric": metric}
    if dev_share == 0:
        return data, None, {"on": None, "note": "no dev split (dev_share=0): the last epoch's weights are kept"}
    share = DEFAULT_DEV_SHARE if dev_share is None else dev_share
    try:
        split = split_dev([_anchor_query(data, a) for a in data.anchors], share=share, seed=seed)
    except KnowledgeBaseError as exc:
        if dev_share is not None:
            raise
        logger.warning("no dev split: %s; training runs every epoch and keeps the last", exc)
        return data, None, {"on": None, "note": f"no dev split ({len(data.anchors)} training anchors are too few); "
                                                 "the last epoch's weights are kept"}
    held = set(split.dev_rows)
    anchors = [a for i, a in enumerate(data.anchors) if i not in held]
    stats = dict(data.stats, anchors=len(anchors), dev_queries=len(split.dev),
                 anchors_per_language=dict(Counter(a.lang or "unknown" for a in anchors).most_common()))
    on = (f"dev split: {len(split.dev)} of {len(data.anchors)} training queries ({share:.0%}, seed {seed}, grouped "
          "by source_id, stratified by relevance target and language)")
    return replace(data, anchors=anchors, stats=stats), _Dev(split.dev, data.index), {"on": on, "metric": metric}


def _similarity_name(similarity: str, descriptions: dict[str, str] | None, labels: list[str],
                     passages: bool = False) -> str:
    if passages:
        return "cosine between passages (or group centroids) under the base model, document prompt"
    if similarity == "confusion":
        return "confusion: reciprocal-rank label confusions of the training anchors (base model), row-max scaled"
    if similarity == "anchor":
        return "per anchor: cosine between the anchor and each label centroid (base model)"
    if descriptions_cover(descriptions, labels):
        return "label descriptions"
    return "cosine between label centroids (base model, document prompt)"


def _dataset(examples: list[Example], flag_last: int | None = None):
    """The trainer's dataset; with ``flag_last``, the labels carry one more column, 1 for the last that many
    rows (the pseudo-labelled ones, :class:`.loss.LabelMaskedMNRLoss`'s ``flagged_frozen_layers``)."""
    from datasets import Dataset

    nfc = lambda t: unicodedata.normalize("NFC", t)
    k = len(examples[0].negatives)
    columns: dict[str, list] = {"anchor": [nfc(e.anchor) for e in examples],
                                "positive": [nfc(e.positive) for e in examples]}
    for j in range(k):
        columns[f"negative_{j + 1}"] = [nfc(e.negatives[j]) for e in examples]
    columns["label"] = [[e.label_id, *e.negative_label_ids] for e in examples]
    if flag_last is not None:
        first = len(examples) - flag_last
        columns["label"] = [[*row, int(i >= first)] for i, row in enumerate(columns["label"])]
    return Dataset.from_dict(columns)


@dataclass
class _Run:
    """What the epoch loop did: mean loss, steps, the first epoch's examples and the dev selection."""

    train_loss: float | None
    steps: int
    first_examples: list[Example]
    selection: dict[str, Any]
    first_pseudo: int = 0
    first_sitting_out: int = 0  # labelled anchors not in the first epoch (calibration languages)
    pseudo_labels: list[list[tuple[str, str]]] = field(default_factory=list)


def _freeze(st, config: FinetuneConfig) -> FrozenPrefixCache | None:
    """Fix what the config keeps fixed; with ``frozen_layers``, the cache that skips those layers at each step."""
    if config.freeze_embeddings:
        transformer_model(st).get_input_embeddings().weight.requires_grad_(False)
    if not config.frozen_layers:
        return None
    freeze_prefix(st, config.frozen_layers)
    return FrozenPrefixCache(st, config.frozen_layers)


def _train(encoder, sampling: EpochExamples, dev: _Dev | None, config: FinetuneConfig,
           labeller: PseudoLabeller | None = None) -> _Run:
    """Train epoch by epoch (fresh negatives, and pseudo-labels, each), score dev after each, keep the best
    weights, stop on patience."""
    import torch

    st = encoder.sentence_transformer
    show_progress_bar = config.show_progress_bar
    prefix = _freeze(st, config)
    trainable = [p for p in st.parameters() if p.requires_grad]
    rounds: list[dict[str, Any]] = []
    kept: list[list[tuple[str, str]]] = []
    first, first_pseudo = _epoch_examples(encoder, sampling, labeller, 0, rounds, kept, show_progress_bar)
    sitting_out = 0 if labeller is None else sum(a.lang in labeller.sitting_out(0) for a in sampling.data.anchors)
    if config.max_steps:  # it overrides epochs; enough epochs to reach it even if every epoch were the smallest
        planned = config.max_steps
        epochs = -(-planned // min(_epoch_plan(first, first_pseudo, 0, 2, labeller, sampling.data.anchors, config)))
    else:
        epochs = config.epochs
        planned = sum(_epoch_plan(first, first_pseudo, 0, epochs, labeller, sampling.data.anchors, config))
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    scheduler = LinearSchedule(optimizer, round(config.warmup_ratio * planned), planned)
    deadline = None if config.max_seconds is None else time.perf_counter() + config.max_seconds
    window = st.max_seq_length
    curve: list[dict[str, Any]] = []
    base_report = best_report = None
    best_score, best_epoch, best_weights, stale, stopped = -1.0, 0, None, 0, "epochs"
    if dev is not None:
        base_report = best_report = _evaluate(encoder, dev.index, dev.queries)
        best_score, best_weights = dev_score(base_report), _snapshot(trainable)
        base_weights = best_weights
        curve.append(_point(0, 0, base_report))
        _say(show_progress_bar, f"dev before training: {best_score:.4f} ({len(dev.queries)} queries)")
    losses: list[tuple[float, int]] = []
    steps, train_seconds = 0, 0.0
    for epoch in range(epochs):
        if epoch > 0:
            examples, pseudo = _epoch_examples(encoder, sampling, labeller, epoch, rounds, kept, show_progress_bar)
            if labeller is not None and not config.max_steps:  # this epoch's size is known now, later ones' better
                planned = steps + sum(_epoch_plan(examples, pseudo, epoch, epochs, labeller, sampling.data.anchors,
                                                  config))
                scheduler.replan(planned)
        else:
            examples, pseudo = first, first_pseudo
        todo = min(_steps([e.lang for e in examples], config), planned - steps)
        tick = time.perf_counter()
        with _training_window(st, config.max_seq_length):
            output = _train_one_epoch(st, examples, config, epoch, todo, optimizer, scheduler, deadline, prefix,
                                      pseudo)
        train_seconds += time.perf_counter() - tick
        st.eval()
        steps += output.global_step
        if output.training_loss is not None:
            losses.append((float(output.training_loss), output.global_step))
        line = f"epoch {epoch + 1}/{epochs}: {output.global_step} steps"
        if dev is not None:
            report = _evaluate(encoder, dev.index, dev.queries)
            score = dev_score(report)
            curve.append(_point(epoch + 1, steps, report))
            if score > best_score + 1e-9:
                best_score, best_epoch, best_report, stale = score, epoch + 1, report, 0
                best_weights = _snapshot(trainable)
                line += f", dev {score:.4f} (best)"
            else:
                stale += 1
                line += f", dev {score:.4f} (best {best_score:.4f} at epoch {best_epoch})"
        _say(show_progress_bar, line)
        if dev is not None and stale >= config.patience and epoch + 1 < epochs:
            stopped = f"patience: {stale} epochs without a better dev score"
            break
        if deadline is not None and time.perf_counter() >= deadline:
            stopped = f"time budget of {config.max_seconds} s spent"
            break
        if steps >= planned:
            stopped = "max_steps reached" if config.max_steps else "epochs"
            break
    assert st.max_seq_length == window
    selection: dict[str, Any] = {"stopped": stopped, "epochs_run": epoch + 1, "steps": steps,
                                 "seconds_per_step": round(train_seconds / max(1, steps), 3),
                                 # 0 when the decay ended where training did (not when stopped early)
                                 "last_learning_rate": scheduler.get_last_lr()[0]}
    if labeller is not None:
        selection["pseudo_labels"] = rounds
    if dev is not None:
        _restore(best_weights, trainable)
        if config.interpolate and best_epoch > 0:
            best_score, best_report, selection["interpolation"] = _interpolate(
                encoder, dev, trainable, base_weights, best_weights, best_score, best_report)
        selection.update(
            chosen_epoch=best_epoch, chosen_dev_score=round(best_score, 6), base_dev_score=curve[0]["dev_score"],
            curve=curve, dev_languages={lang: m["n_queries"] for lang, m in base_report["per_language"].items()},
            guard=language_guard(base_report, best_report),
        )
        if best_epoch == 0:
            logger.warning("no epoch beat the base model on the dev queries; the base weights are kept")
    loss = sum(v * n for v, n in losses) / sum(n for _, n in losses) if losses else None
    return _Run(train_loss=loss, steps=steps, first_examples=first, selection=selection, first_pseudo=first_pseudo,
                first_sitting_out=sitting_out, pseudo_labels=kept)


def _epoch_examples(encoder, sampling: EpochExamples, labeller: PseudoLabeller | None, epoch: int,
                    rounds: list[dict[str, Any]], kept: list[list[tuple[str, str]]],
                    show_progress_bar: bool) -> tuple[list[Example], int]:
    """This epoch's examples, with the questions the current model pseudo-labels (if any; recorded in
    ``rounds`` and ``kept``); and how many anchors those added."""
    if labeller is None:
        return sampling.examples(encoder, epoch), 0
    extra, report = labeller.round(encoder, epoch)
    data = sampling.data
    rounds.append(report)
    kept.append([(a.text, data.index[a.relevant[0]].id if a.relevant else data.labels[a.label_id]) for a in extra])
    _say(show_progress_bar, pseudo_label_line(report))
    return sampling.examples(encoder, epoch, extra, labeller.sitting_out(epoch)), len(extra)


def pseudo_label_line(report: dict[str, Any]) -> str:
    """One line on an epoch's pseudo-labels: threshold, new and used ones, dev and estimated precision (with its
    95 % lower bound)."""
    used = f"{report['used']} of {report['labelled']} labelled used"
    if not report.get("labelling", True):
        return f"epoch {report['epoch']} pseudo-labels: no new one (labelling epochs over); {used}"
    if report["threshold"] is None:
        on = "dev" if report.get("calibrated_on", "dev") == "dev" else "the calibration languages"
        return f"epoch {report['epoch']} pseudo-labels: no new one (no margin reaches the precision target on {on}); {used}"
    est, bound = report["estimated_precision"], report.get("precision_lower_bound")
    precision = "-" if est is None else f"{est:.2f}" + ("" if bound is None else f", at least {bound:.2f}")
    spread = report.get("propagated") or 0
    propagated = "" if not spread else (f"; {spread} more propagated at margin {report['propagation_threshold']:.3f}, "
                                        f"dev precision {report['propagation_dev_precision']:.2f}")
    return (f"epoch {report['epoch']} pseudo-labels: {report['cleared'] - spread} new above margin "
            f"{report['threshold']:.3f} (dev precision {report['dev_precision']:.2f}, estimated {precision}"
            f"{propagated}); {used}")


def _pseudo_labeller(data: TrainingData, dev: _Dev | None, questions: list[QueryRecord],
                     c: FinetuneConfig) -> PseudoLabeller:
    """Set up self-training: the dev queries with their correct targets, and the questions to label."""
    if c.similarity == "anchor":  # refused here, before a model loads, with EpochExamples' message
        raise ValueError(ANCHOR_SIMILARITY_WITH_UNLABELLED)
    languages, labelling_epochs = calibration_plan(data.anchors, c.calibration_languages, c.seed, c.labelling_epochs,
                                                   c.pseudo_label_agreement)
    if dev is None and not languages:
        raise KnowledgeBaseError(
            "unlabelled questions need dev queries to set the pseudo-label threshold on: give dev queries "
            "(--dev FILE), more training queries, a dev_share (--dev-share) that leaves at least 20 of them, "
            "or calibration languages (--calibration-languages)"
        )
    dev_texts, dev_targets, dev_sources, dev_langs = [], [], [], []
    if languages:  # calibrated on these languages' anchors, untrained while labels are given, not on dev
        held_out = [a for a in data.anchors if a.lang in languages]
        dev_texts = [a.text for a in held_out]
        dev_targets = [a.relevant if data.passages else (a.label_id,) for a in held_out]
        dev_sources = [a.source_id for a in held_out]
        dev_langs = [a.lang for a in held_out]
    else:
        position = {r.id: i for i, r in enumerate(data.index)}
        label_ids = {label: i for i, label in enumerate(data.labels)}
        for q in dev.queries:
            if q.relevant_ids is not None:
                targets = tuple(position[x] for x in q.relevant_ids if x in position)
            else:
                targets = (label_ids[q.label],) if q.label in label_ids else ()
            if targets:
                dev_texts.append(q.text)
                dev_targets.append(targets)
                dev_sources.append(q.source_id)
                dev_langs.append(q.lang)
    known = [a.text for a in data.anchors] + ([q.text for q in dev.queries] if dev else [])
    questions, stats = unlabelled_questions(questions, known_texts=known)
    per_epoch = c.pseudo_labels_per_epoch if c.pseudo_labels_per_epoch is not None else max(len(data.anchors) // 2, 128)
    targets = list(range(len(data.index))) if data.passages else list(data.index_label_ids)
    if languages:
        stats["calibration"] = {"languages": list(languages), "queries": len(dev_texts),
                                "labelling_epochs": labelling_epochs}
    # intent KBs: the labelled anchors that train may vote on each label (a passage has too few queries to)
    voters = None
    if c.pseudo_label_agreement and data.passages:
        logger.warning("pseudo_label_agreement applies to intent KBs; a passage KB's pseudo-labels use the KB "
                       "margin alone")
    elif c.pseudo_label_agreement and (voting := [a for a in data.anchors if a.lang not in languages]):
        voters = Voters([a.text for a in voting], [a.label_id for a in voting], [a.source_id for a in voting],
                        dev_sources)
    return PseudoLabeller(questions, dev_texts, dev_targets, [r.text for r in data.index], targets,
                          list(data.index_label_ids), data.passages, c.pseudo_label_precision, per_epoch, c.seed, stats,
                          languages, labelling_epochs, voters, c.pseudo_label_propagation, dev_langs)


def _interpolate(encoder, dev: _Dev, trainable: list, base: list, tuned: list, score: float,
                 report: dict[str, Any]) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """WiSE-FT style: try ``base + a * (tuned - base)`` on dev, keep the best (``a = 1`` is the tuned model)."""
    tried, best_alpha = {"1.0": round(score, 6)}, 1.0
    for alpha in (0.25, 0.5, 0.75):
        _restore([b + alpha * (t - b) for b, t in zip(base, tuned)], trainable)
        candidate = _evaluate(encoder, dev.index, dev.queries)
        tried[str(alpha)] = round(dev_score(candidate), 6)
        if dev_score(candidate) > score + 1e-9:
            score, report, best_alpha = dev_score(candidate), candidate, alpha
    _restore([b + best_alpha * (t - b) for b, t in zip(base, tuned)], trainable)
    return score, report, {"dev_score_by_alpha": tried, "chosen_alpha": best_alpha}


def _train_one_epoch(st, examples: list[Example], config: FinetuneConfig, epoch: int, steps: int, optimizer,
                     scheduler, deadline: float | None, prefix: FrozenPrefixCache | None = None, pseudo: int = 0):
    """One pass of the sentence-transformers trainer, continuing the shared optimizer and schedule (the last
    ``pseudo`` examples are pseudo-labelled)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    from .loss import LabelMaskedMNRLoss
    from .sampler import language_batch_sampler

    class _NoCardTrainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict: dict) -> None:
            """We write our own card; skip sentence-transformers' card bookkeeping (it embeds widget examples)."""

    class _Deadline(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if deadline is not None and time.perf_counter() >= deadline:
                control.should_training_stop = True

    show_progress_bar = config.show_progress_bar
    # pseudo-labelled anchors stop their gradient below these layers, unless all anchors already do
    flagged = config.pseudo_labels_frozen_layers if pseudo else 0
    flagged = flagged if flagged > config.frozen_layers else 0
    dataset = _dataset(examples, pseudo if flagged else None)
    prompts = training_prompts(st.prompts, dataset.column_names)
    with tempfile.TemporaryDirectory(prefix="mlret-ft-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp, num_train_epochs=1, max_steps=steps,
            per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
            seed=_epoch_seed(config.seed, epoch), data_seed=_epoch_seed(config.seed, epoch), save_strategy="no",
            report_to="none", logging_strategy="no", disable_tqdm=not show_progress_bar,
            bf16=config.bf16, use_cpu=config.bf16 and st.device.type == "cpu",  # CPU autocast needs use_cpu
            prompts=prompts or None, dataloader_drop_last=False, dataloader_pin_memory=False,
            **({"ddp_backend": "gloo"} if _distributed() and not _cuda() else {}),
            batch_sampler=language_batch_sampler([e.lang for e in examples],
                                                 one_language_per_batch=config.one_language_per_batch),
        )
        with quiet_transformers():
            trainer = _NoCardTrainer(
                model=st, args=args, train_dataset=dataset, optimizers=(optimizer, scheduler), callbacks=[_Deadline()],
                loss=LabelMaskedMNRLoss(st, scale=config.scale, hardness_mode=config.hardness_mode,
                                        hardness_strength=config.hardness_strength,
                                        document_embeddings=config.document_embeddings, encode=prefix,
                                        flagged_frozen_layers=flagged),
            )
        if not show_progress_bar:  # with tqdm off, transformers prints the final metrics dict instead
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        with _transformers_errors_only():
            return trainer.train()


def _distributed() -> bool:
    """True in a process started by torchrun / accelerate launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _barrier() -> None:
    """Wait for every process of a distributed run (rank 0 writes the folder the others then return)."""
    if not _distributed():
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _epoch_seed(seed: int, epoch: int) -> int:
    """A trainer seed per (seed, epoch) that never equals another pair's (``seed + epoch`` would)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] % (2**31))


def _steps(languages: list[str | None], config: FinetuneConfig) -> int:
    """Steps of one process in an epoch of anchors in ``languages`` (distributed: each takes 1/world of the batches)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return -(-steps_per_epoch(languages, config.batch_size, config.one_language_per_batch) // world)


def _epoch_plan(examples: list[Example], pseudo: int, epoch: int, epochs: int, labeller: PseudoLabeller | None,
                anchors: Sequence[Anchor], config: FinetuneConfig) -> list[int]:
    """Steps (per process) of ``epoch``, whose ``examples`` are known (the last ``pseudo`` of them
    pseudo-labelled), and of each later epoch up to ``epochs``, as far as they can be known now.

    Later epochs keep this one's labelled anchors, plus the calibration languages once they stop sitting
    out, and this one's number of pseudo-labels once no later epoch gives new ones; while some will, a
    bound: the most an epoch may use."""
    languages = [e.lang for e in examples]
    labelled, pseudo_languages = languages[: len(languages) - pseudo], languages[len(languages) - pseudo :]
    if labeller is not None and labeller.labelling(epoch + 1):
        pseudo_languages = [None] * min(labeller.per_epoch or len(labeller.questions), len(labeller.questions))
    plan = [_steps(languages, config)]
    for later in range(epoch + 1, epochs):
        rejoining = frozenset() if labeller is None else labeller.sitting_out(epoch) - labeller.sitting_out(later)
        plan.append(_steps(labelled + [a.lang for a in anchors if a.lang in rejoining] + pseudo_languages, config))
    return plan


def _point(epoch: int, step: int, report: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": epoch, "step": step, "dev_score": round(dev_score(report), 6),
            "per_language": {lang: m["mrr"] for lang, m in report["per_language"].items()}}


def _snapshot(trainable: list) -> list:
    return [p.detach().clone() for p in trainable]


def _restore(weights: list | None, trainable: list) -> None:
    import torch

    if weights is None:
        return
    with torch.no_grad():
        for p, w in zip(trainable, weights):
            p.copy_(w)


@contextlib.contextmanager
def _training_window(st, max_seq_length: int | None) -> Iterator[None]:
    """Cap training texts at ``max_seq_length`` tokens; evaluation and the saved model keep the full window."""
    window = st.max_seq_length
    if max_seq_length is not None and (window is None or max_seq_length < window):
        st.max_seq_length = max_seq_length
    try:
        yield
    finally:
        st.max_seq_length = window


def _say(show: bool, line: str) -> None:
    if show:
        print(line, flush=True)


def _evaluate(encoder, kb: list[KBRecord], queries: list[QueryRecord]) -> dict[str, Any]:
    from ..evaluate import evaluate

    return evaluate(encoder, kb, queries)


@contextlib.contextmanager
def _transformers_errors_only() -> Iterator[None]:
    """Hide transformers' informational notes (e.g. PAD/BOS alignment) but keep the training bar."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def training_prompts(prompts: dict[str, str], columns: Sequence[str]) -> dict[str, str]:
    """Prompt per training column: anchors are queries, positives and negatives are KB entries."""
    by_column = {c: prompts["query"] if c == "anchor" else prompts["document"]
                 for c in columns if c == "anchor" or c == "positive" or c.startswith("negative_")}
    return {c: p for c, p in by_column.items() if p}


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out``; with ``overwrite`` replace only a folder that holds a model."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise OutputExistsError(f"output folder {out} is not empty; pass overwrite=True (--overwrite) to replace it")
    if not out.is_dir() or not ((out / "modules.json").is_file() or (out / CARD_FILE).is_file()):
        raise OutputExistsError(
            f"output folder {out} holds something other than a model; refusing to replace it even with overwrite"
        )


def _save(encoder, out: Path, card: dict) -> None:
    """Write the model and its card into a temporary sibling, then move it into place (nothing half-written)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        with quiet_transformers():  # no 'Writing model shards' bar
            encoder.sentence_transformer.save(str(tmp), create_model_card=False)
        write_card(tmp, card)
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
