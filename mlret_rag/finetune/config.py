"""``FinetuneConfig``: every option of :func:`~mlret_rag.finetune.finetune`, in three sections, validated once.

Like sentence-transformers' ``TrainingArguments``: one frozen value, its defaults measured on the
benchmarks (README, "Fine-tuning"), written into the model card (``configuration``) so that
``FinetuneConfig.from_dict(card["configuration"])`` repeats a run.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .label_similarity import SIMILARITIES
from .negatives import STRATEGIES
from .pseudo_labels import DEFAULT_PRECISION

# Defaults measured on benchmarks/quality_ha.py (README, "Fine-tuning"): lr 5e-5 beat 2e-5, and the dev
# curve peaks within 2-4 epochs; patience 2 rides out one noisy epoch.
DEFAULT_EPOCHS = 5
DEFAULT_LEARNING_RATE = 5e-5
DEFAULT_PATIENCE = 2
DEFAULT_MAX_SEQ_LENGTH = 256

SECTIONS = ("sampling", "schedule", "output")
_INTEGERS = ("negatives_per_anchor", "epochs", "patience", "batch_size", "max_steps", "max_seq_length", "frozen_layers",
             "pseudo_labels_per_epoch", "pseudo_labels_frozen_layers", "calibration_languages", "labelling_epochs", "seed")
HARDNESS_MODES = (None, "in_batch_negatives", "hard_negatives", "all_negatives")  # see .loss
DOCUMENT_EMBEDDINGS = ("trained", "constant", "cached")  # see .loss


def _in(section: str) -> dict[str, str]:
    return {"section": section}


@dataclass(frozen=True)
class FinetuneConfig:
    """How :func:`~mlret_rag.finetune.finetune` samples, trains and writes; ``None`` means "chosen from the data".

    Sampling (which anchors, positives and negatives):
        negatives: ``"standard"``, ``"weighted"`` or ``"hard"`` (:mod:`mlret_rag.finetune.negatives`);
            sampled negatives are redrawn every epoch, hard ones re-mined with the current model.
        negatives_per_anchor: explicit negatives per anchor (default: the paper's 3; 1 for passage KBs).
        temperature: softmax temperature of the weighted sampler over label (or passage) similarities.
        similarity: what ``weighted`` sampling weighs by (:mod:`mlret_rag.finetune.label_similarity`):
            ``"centroid"`` (label centroids or descriptions; passages: passage cosine), ``"confusion"`` (the
            base model's label confusions on the training anchors) or ``"anchor"`` (per anchor).
        hardness_mode, hardness_strength: loss-side hardness weighting as in sentence-transformers'
            MultipleNegativesRankingLoss (:mod:`mlret_rag.finetune.loss`); off by default.
        one_language_per_batch: build each batch from one anchor language.
        group_by: passage KBs: a metadata key (e.g. a document id) whose records are never each other's negatives.
        false_negative_share: ``hard`` negatives on passage KBs: drop candidates scoring above this share
            of the anchor's best relevant passage.
        train_ratio: share of labelled KB rows used as anchors when there are no training queries.
        translate_to: render training rows into these languages (needs a translator; no training queries).
        augment: add one synthetic copy of every labelled training anchor, code-switched with a same-label
            KB text or with character noise (:mod:`mlret_rag.finetune.augment`); intent KBs only. Measured:
            unseen varieties gain, a few languages lose 1-4 points and a run takes ~1.3x as long, so it is
            off by default (README, "Learning from unlabelled questions").

    Schedule (chosen on dev data, :mod:`mlret_rag.finetune.dev`):
        epochs: most passes over the training anchors (dev selection usually stops earlier).
        patience: epochs without a better dev score before training stops.
        dev_share: share of the training anchors held out as dev. ``None``: 15 % when that gives at least
            20 queries, else no dev split (the last epoch is kept, and the card says so); ``0``: no dev
            split; a number that gives fewer than 20 dev queries is an error.
        batch_size: anchors per step (default 32; 8 for passage KBs, whose texts are long).
        learning_rate, warmup_ratio: peak learning rate, and the share of planned steps spent warming up
            to it (then linear decay to 0 at the planned end).
        scale: inverse temperature of the InfoNCE softmax.
        max_steps: stop after this many optimiser steps in all.
        max_seconds: time budget for training; the epoch running when it is spent ends early.
        max_seq_length: token cap for training texts (inference keeps the model's own window).
        freeze_embeddings: keep the word-embedding matrix fixed (less memory, faster, protects unseen languages).
        frozen_layers: keep the whole embedding block (word embeddings included) and this many of the lowest
            transformer layers fixed; their output is computed once per text (:mod:`~mlret_rag.finetune.frozen_prefix`), so a step
            runs only the upper layers. ``None``: two thirds of the layers (8 of 12) for passage KBs, whose
            steps this makes 3.5x faster for about 0.03 non-English MRR (README, "Passage KB"); 0 for intent
            KBs. ``0``: every layer trains.
        bf16: run training forwards and backwards in bfloat16 autocast (weights and optimiser stay
            float32); about 1.75x faster steps on CPUs with AVX-512 BF16 or AMX, far slower where
            bfloat16 is emulated (AVX2 only).
        document_embeddings: how a step embeds its positive and negative documents
            (:class:`~mlret_rag.finetune.loss.LabelMaskedMNRLoss`): ``"trained"`` (with gradients),
            ``"constant"`` (without autograd, so only the anchors are trained toward them) or ``"cached"``
            (without autograd, each text once per epoch). The latter two make passage steps far faster
            and lighter but train worse: measured on the passage benchmark, non-English MRR 0.506
            (cached) and 0.466 (constant) against 0.565, each with every layer trained (README, "Passage KB").
        interpolate: after choosing the epoch, also try ``base + a * (tuned - base)`` for ``a`` in 0.25,
            0.5, 0.75 and keep whichever scores best on dev (needs a dev part; measured in
            ``benchmarks/finetune_ha.py``, off by default).
        pseudo_label_precision: with unlabelled questions, the share of correct pseudo-labels the
            dev-chosen threshold aims at (:mod:`mlret_rag.finetune.pseudo_labels`).
        pseudo_label_agreement: intent KBs: pseudo-label a question only when the labelled training
            queries nearest to it name the KB's best label too, its confidence then the sum of both margins
            (:func:`~mlret_rag.finetune.pseudo_labels.agreed_margins`). Measured on Home Assistant: the labels
            are more often right (91-97 % instead of 89-92 %) and the precision estimate comes within 4 points,
            but more languages lose a point or two, so it is off by default (README, "Learning from
            unlabelled questions"). Passage KBs: the KB margin alone.
        pseudo_label_propagation: also label a question below the threshold from the questions of its
            language labelled that epoch: it takes the label of its most similar one when that label beats
            the runner-up by a margin set on the calibration queries the same way, for the precision
            :data:`~mlret_rag.finetune.pseudo_labels.PROPAGATION_PRECISION` names
            (:func:`~mlret_rag.finetune.pseudo_labels.propagated_targets`). ``None``: on for intent KBs whose
            unlabelled questions all name their language, else off (passage KBs: not measured; without a
            language the questions would all count as one). On Home Assistant (seeds 0-9) the pool languages gain
            0.041 with it instead of 0.033, the trained languages and English move by under 0.001, at 1.2-1.45x
            the time of the fine-tune without the pool instead of 1.0-1.25x (README, "Learning from
            unlabelled questions").
        pseudo_labels_per_epoch: most pseudo-labelled anchors per epoch (a seeded sample); default: half as
            many as the labelled anchors (at least 128), so the labelled ones keep two thirds of every epoch.
        pseudo_labels_frozen_layers: a pseudo-labelled question's gradient stops below this many of the
            lowest transformer layers (and the embedding block): it trains only the layers above, while the
            labelled queries train every layer. Measured on Home Assistant with 4 (of 12): no language loses
            to the pool on every seed any more (Catalan did, by 1.6 points), but the pool languages gain
            0.035 instead of 0.045, so it is 0 (every layer) by default (README, "Learning from unlabelled
            questions").
        calibration_languages: with unlabelled questions, this many languages of the training queries (a
            seeded choice, at least one language stays) set the threshold and the precision estimate instead
            of dev: they sit out training until the last labelling epoch (which gives its labels before it
            trains), so they are as untrained as the unlabelled questions whenever labels are given.
            ``None``: every language (two or more) when the base model gives every label (one labelling
            epoch, no ``pseudo_label_agreement``), else a quarter of them (rounded down); either only when
            their queries number 20 or more. ``0``: the threshold is set on dev.
        labelling_epochs: the first epochs that give new pseudo-labels (later ones train on those given);
            ``None``: every epoch, or 1 with ``calibration_languages`` (whose queries then join training).
        check_memory: refuse, before training, a run whose estimated peak memory exceeds what is available.
        seed: fixes every random choice (split, negatives per epoch, batches, dropout).

    Output:
        overwrite: replace a non-empty output folder (only one that holds a model).
        show_progress_bar: show training progress and one line per epoch.
    """

    negatives: str = field(default="weighted", metadata=_in("sampling"))
    negatives_per_anchor: int | None = field(default=None, metadata=_in("sampling"))
    temperature: float = field(default=0.05, metadata=_in("sampling"))
    similarity: str = field(default="centroid", metadata=_in("sampling"))
    hardness_mode: str | None = field(default=None, metadata=_in("sampling"))
    hardness_strength: float = field(default=0.0, metadata=_in("sampling"))
    one_language_per_batch: bool = field(default=False, metadata=_in("sampling"))
    group_by: str | None = field(default=None, metadata=_in("sampling"))
    false_negative_share: float = field(default=0.95, metadata=_in("sampling"))
    train_ratio: float = field(default=0.3, metadata=_in("sampling"))
    translate_to: tuple[str, ...] = field(default=(), metadata=_in("sampling"))
    augment: bool = field(default=False, metadata=_in("sampling"))

    epochs: int = field(default=DEFAULT_EPOCHS, metadata=_in("schedule"))
    patience: int = field(default=DEFAULT_PATIENCE, metadata=_in("schedule"))
    dev_share: float | None = field(default=None, metadata=_in("schedule"))
    batch_size: int | None = field(default=None, metadata=_in("schedule"))
    learning_rate: float = field(default=DEFAULT_LEARNING_RATE, metadata=_in("schedule"))
    warmup_ratio: float = field(default=0.1, metadata=_in("schedule"))
    scale: float = field(default=20.0, metadata=_in("schedule"))
    max_steps: int | None = field(default=None, metadata=_in("schedule"))
    max_seconds: float | None = field(default=None, metadata=_in("schedule"))
    max_seq_length: int | None = field(default=DEFAULT_MAX_SEQ_LENGTH, metadata=_in("schedule"))
    freeze_embeddings: bool = field(default=True, metadata=_in("schedule"))
    frozen_layers: int | None = field(default=None, metadata=_in("schedule"))
    bf16: bool = field(default=False, metadata=_in("schedule"))
    document_embeddings: str = field(default="trained", metadata=_in("schedule"))
    interpolate: bool = field(default=False, metadata=_in("schedule"))
    pseudo_label_precision: float = field(default=DEFAULT_PRECISION, metadata=_in("schedule"))
    pseudo_label_agreement: bool = field(default=False, metadata=_in("schedule"))
    pseudo_label_propagation: bool | None = field(default=None, metadata=_in("schedule"))
    pseudo_labels_per_epoch: int | None = field(default=None, metadata=_in("schedule"))
    pseudo_labels_frozen_layers: int = field(default=0, metadata=_in("schedule"))
    calibration_languages: int | None = field(default=None, metadata=_in("schedule"))
    labelling_epochs: int | None = field(default=None, metadata=_in("schedule"))
    check_memory: bool = field(default=True, metadata=_in("schedule"))
    seed: int = field(default=0, metadata=_in("schedule"))

    overwrite: bool = field(default=False, metadata=_in("output"))
    show_progress_bar: bool = field(default=True, metadata=_in("output"))

    def __post_init__(self) -> None:
        if isinstance(self.translate_to, (str, bytes)) or not isinstance(self.translate_to, Iterable):
            raise TypeError(f"translate_to must be a list of language codes, got {self.translate_to!r}")
        object.__setattr__(self, "translate_to", tuple(self.translate_to))
        for name in _INTEGERS:  # numpy integers and the like become plain ints (the card is JSON)
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
                object.__setattr__(self, name, int(value))
        for problem in _problems(self):
            raise ValueError(problem)

    # ---------------------------------------------------------------------------------------------
    def replace(self, **overrides: Any) -> FinetuneConfig:
        """A copy with ``overrides`` applied (validated again); an unknown name is a ``TypeError`` naming it."""
        unknown = sorted(set(overrides) - set(field_names()))
        if unknown:
            raise TypeError(f"unknown fine-tune option(s) {', '.join(map(repr, unknown))}; "
                            f"FinetuneConfig has: {', '.join(field_names())}")
        return dataclasses.replace(self, **overrides) if overrides else self

    def section(self, name: str) -> dict[str, Any]:
        """The options of one section (``"sampling"``, ``"schedule"`` or ``"output"``) as a dict."""
        if name not in SECTIONS:
            raise ValueError(f"section must be one of {', '.join(SECTIONS)}; got {name!r}")
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata["section"] == name}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """All options by section, JSON-ready: what the model card stores as ``configuration``."""
        return {name: self.section(name) for name in SECTIONS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinetuneConfig:
        """Rebuild from :meth:`to_dict` (sections) or from one flat mapping of option names."""
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if key in SECTIONS and isinstance(value, Mapping):
                flat.update(value)
            else:
                flat[key] = value
        return cls().replace(**flat)


def field_names() -> tuple[str, ...]:
    """Every option name of :class:`FinetuneConfig`, in section order."""
    return tuple(f.name for f in dataclasses.fields(FinetuneConfig))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _problems(c: FinetuneConfig) -> list[str]:
    """What is wrong with ``c``, one message per option (the first one is raised)."""

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def integer(value: Any, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    checks = [
        (c.negatives in STRATEGIES, f"negatives must be one of {', '.join(STRATEGIES)}; got {c.negatives!r}"),
        (c.negatives_per_anchor is None or integer(c.negatives_per_anchor, 0),
         f"negatives_per_anchor must be an integer >= 0, got {c.negatives_per_anchor!r}"),
        (number(c.temperature) and c.temperature >= 0,
         f"temperature must be a number >= 0 (inf allowed), got {c.temperature!r}"),
        (c.similarity in SIMILARITIES, f"similarity must be one of {', '.join(SIMILARITIES)}; got {c.similarity!r}"),
        (c.hardness_mode in HARDNESS_MODES, f"hardness_mode must be one of {HARDNESS_MODES}; got {c.hardness_mode!r}"),
        (number(c.hardness_strength) and c.hardness_strength >= 0,
         f"hardness_strength must be a number >= 0, got {c.hardness_strength!r}"),
        (number(c.false_negative_share) and 0 < c.false_negative_share <= 1,
         f"false_negative_share must be a number in (0, 1], got {c.false_negative_share!r}"),
        (c.group_by is None or (isinstance(c.group_by, str) and bool(c.group_by)),
         f"group_by must be a metadata key (a non-empty string) or None, got {c.group_by!r}"),
        (number(c.train_ratio) and 0 < c.train_ratio < 1,
         f"train_ratio must be a number strictly between 0 and 1, got {c.train_ratio!r}"),
        (all(isinstance(lang, str) and lang for lang in c.translate_to),
         f"translate_to must hold language codes (non-empty strings), got {list(c.translate_to)!r}"),
        (integer(c.epochs, 1), f"epochs must be an integer >= 1, got {c.epochs!r}"),
        (integer(c.patience, 1), f"patience must be an integer >= 1, got {c.patience!r}"),
        (c.dev_share is None or (number(c.dev_share) and 0 <= c.dev_share < 1),
         f"dev_share must be None (auto), 0 (no dev split) or a number below 1, got {c.dev_share!r}"),
        (c.batch_size is None or integer(c.batch_size, 2), f"batch_size must be an integer >= 2, got {c.batch_size!r}"),
        (number(c.learning_rate) and c.learning_rate > 0,
         f"learning_rate must be a positive number, got {c.learning_rate!r}"),
        (number(c.warmup_ratio) and 0 <= c.warmup_ratio < 1,
         f"warmup_ratio must be a number in [0, 1), got {c.warmup_ratio!r}"),
        (number(c.scale) and c.scale > 0, f"scale must be a positive number, got {c.scale!r}"),
        (c.max_steps is None or integer(c.max_steps, 1),
         f"max_steps must be a positive integer or None, got {c.max_steps!r}"),
        (c.max_seconds is None or (number(c.max_seconds) and c.max_seconds > 0),
         f"max_seconds must be a positive number or None, got {c.max_seconds!r}"),
        (c.max_seq_length is None or integer(c.max_seq_length, 8),
         f"max_seq_length must be an integer >= 8 or None, got {c.max_seq_length!r}"),
        (c.frozen_layers is None or integer(c.frozen_layers, 0),
         f"frozen_layers must be an integer >= 0 or None, got {c.frozen_layers!r}"),
        (number(c.pseudo_label_precision) and 0 < c.pseudo_label_precision < 1,
         f"pseudo_label_precision must be a number strictly between 0 and 1, got {c.pseudo_label_precision!r}"),
        (c.pseudo_labels_per_epoch is None or integer(c.pseudo_labels_per_epoch, 1),
         f"pseudo_labels_per_epoch must be a positive integer or None, got {c.pseudo_labels_per_epoch!r}"),
        (c.calibration_languages is None or integer(c.calibration_languages, 0),
         f"calibration_languages must be an integer >= 0 or None, got {c.calibration_languages!r}"),
        (c.labelling_epochs is None or integer(c.labelling_epochs, 1),
         f"labelling_epochs must be a positive integer or None, got {c.labelling_epochs!r}"),
        (c.document_embeddings in DOCUMENT_EMBEDDINGS,
         f"document_embeddings must be one of {', '.join(DOCUMENT_EMBEDDINGS)}; got {c.document_embeddings!r}"),
        (integer(c.seed, 0), f"seed must be an integer >= 0, got {c.seed!r}"),
        (integer(c.pseudo_labels_frozen_layers, 0),
         f"pseudo_labels_frozen_layers must be an integer >= 0, got {c.pseudo_labels_frozen_layers!r}"),
        (c.pseudo_label_propagation is None or isinstance(c.pseudo_label_propagation, bool),
         f"pseudo_label_propagation must be True, False or None (auto), got {c.pseudo_label_propagation!r}"),
    ]
    flags = ("augment", "one_language_per_batch", "freeze_embeddings", "bf16", "interpolate", "pseudo_label_agreement",
             "check_memory", "overwrite", "show_progress_bar")
    checks += [(isinstance(getattr(c, name), bool), f"{name} must be True or False, got {getattr(c, name)!r}")
               for name in flags]
    return [message for ok, message in checks if not ok]
