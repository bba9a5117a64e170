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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._quiet import quiet_transformers
from ..errors import MlretError
from ..kb import KBRecord, QueryRecord, as_kb_records, as_query_records
from .card import CARD_FILE, write_card
from .data import TrainingData, prepare_training_data
from .examples import Example, build_examples
from .label_similarity import SIMILARITIES, anchor_similarity, confusion_similarity, label_similarity
from .negatives import STRATEGIES, NegativeSampler, mine_hard_negatives
from .translate import Translator

logger = logging.getLogger(__name__)


class OutputExistsError(MlretError, FileExistsError):
    """The output folder is not empty and ``overwrite`` was not given."""


@dataclass
class FinetuneResult:
    """What a fine-tune produced: the folder, data statistics, configuration, loss and evaluation."""

    out: Path
    stats: dict[str, Any]
    config: dict[str, Any]
    train_loss: float | None
    seconds: float
    evaluation: dict[str, Any] | None = None
    examples: list[Example] = field(default_factory=list, repr=False)


def finetune(
    kb: Any,
    queries: Any = None,
    *,
    out: str | os.PathLike[str],
    model: Any = None,
    negatives: str = "weighted",
    negatives_per_anchor: int = 3,
    temperature: float = 0.05,
    similarity: str = "centroid",
    hardness_mode: str | None = None,
    hardness_strength: float = 0.0,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 2e-5,
    seed: int = 0,
    freeze_embeddings: bool = True,
    one_language_per_batch: bool = False,
    train_ratio: float = 0.3,
    translator: Translator | None = None,
    translate_to: Sequence[str] = (),
    label_descriptions: dict[str, str] | None = None,
    scale: float = 20.0,
    max_steps: int | None = None,
    overwrite: bool = False,
    eval_queries: Any = None,
    show_progress_bar: bool = True,
) -> FinetuneResult:
    """Fine-tune ``model`` on ``kb`` so questions in any language retrieve its entries; save it to ``out``.

    Args:
        kb: knowledge-base records (path, dataset, dicts or :class:`~mlret_rag.kb.KBRecord`), labelled.
        queries: labelled training queries in any language; ``None`` splits the KB into index/training parts.
        out: folder to write (a normal sentence-transformers folder plus ``mlret_card.json``).
        model: ``None`` (bundled multilingual-e5-small), a model name or a folder.
        negatives: ``"standard"``, ``"weighted"`` or ``"hard"`` (see :mod:`mlret_rag.finetune.negatives`).
        negatives_per_anchor: explicit negatives per anchor (the paper's 1:3 ratio by default).
        temperature: softmax temperature of the weighted sampler over label similarities.
        similarity: what ``weighted`` sampling weighs by (:mod:`mlret_rag.finetune.label_similarity`):
            ``"centroid"`` (label centroids or descriptions), ``"confusion"`` (the base model's label
            confusions on the training anchors) or ``"anchor"`` (each anchor's cosine to label centroids).
        hardness_mode, hardness_strength: loss-side hardness weighting as in sentence-transformers'
            MultipleNegativesRankingLoss (:mod:`mlret_rag.finetune.loss`); off by default.
        epochs, batch_size, learning_rate, seed: training settings; ``seed`` fixes every random choice.
        freeze_embeddings: keep the word-embedding matrix fixed (less memory, faster, protects unseen languages).
        one_language_per_batch: build each batch from one anchor language.
        train_ratio: share of labelled KB rows used as anchors when ``queries`` is ``None``.
        translator, translate_to: render training rows into these languages (``queries`` is ``None`` only).
        label_descriptions: label -> description; used for label similarity when every label has one.
        scale: inverse temperature of the InfoNCE softmax.
        max_steps: stop after this many optimiser steps (overrides ``epochs``; for quick runs).
        overwrite: replace a non-empty ``out`` folder.
        eval_queries: held-out queries; base and tuned models are evaluated and the figures go in the card.
        show_progress_bar: show training progress.

    Raises:
        OutputExistsError: ``out`` is a non-empty folder and ``overwrite`` is false.
        KnowledgeBaseError: unlabelled KB, empty queries, or nothing usable to train on.
        ValueError: an invalid option (the message names it).
    """
    started = time.perf_counter()
    _check_options(negatives, negatives_per_anchor, temperature, epochs, batch_size, learning_rate, max_steps)
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {', '.join(SIMILARITIES)}; got {similarity!r}")
    from .loss import HARDNESS_MODES

    if hardness_mode not in HARDNESS_MODES:
        raise ValueError(f"hardness_mode must be one of {HARDNESS_MODES}; got {hardness_mode!r}")
    if not isinstance(hardness_strength, (int, float)) or not hardness_strength >= 0:
        raise ValueError(f"hardness_strength must be a number >= 0, got {hardness_strength!r}")
    out = Path(out).expanduser()
    _check_output(out, overwrite)
    kb_records = as_kb_records(kb)
    query_records = None if queries is None else as_query_records(queries)
    data = prepare_training_data(kb_records, query_records, train_ratio=train_ratio, seed=seed,
                                 translator=translator, translate_to=translate_to)
    eval_records = None if eval_queries is None else as_query_records(eval_queries)

    import transformers

    from ..encoder import MultilingualEncoder

    random.seed(seed)
    np.random.seed(seed)
    transformers.set_seed(seed)
    encoder = MultilingualEncoder(model, show_progress_bar=False, backend="torch")  # the model being trained
    evaluation: dict[str, Any] = {}
    if eval_records is not None:
        evaluation["base"] = _evaluate(encoder, kb_records, eval_records)

    examples = _examples(encoder, data, negatives, negatives_per_anchor, temperature, seed, label_descriptions,
                         similarity)
    config = {
        "negatives": negatives, "negatives_per_anchor": negatives_per_anchor, "temperature": temperature,
        "label_similarity": _similarity_name(similarity, label_descriptions, data.labels),
        "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed,
        "freeze_embeddings": freeze_embeddings, "one_language_per_batch": one_language_per_batch,
        "loss": "InfoNCE, explicit + in-batch negatives, same-label in-batch candidates masked",
        "scale": scale, "max_steps": max_steps,
        "hardness_mode": hardness_mode, "hardness_strength": hardness_strength,
    }
    stats = dict(data.stats, examples=len(examples),
                 anchors_without_positive=len(data.anchors) - len(examples))
    train_loss = _train(encoder, examples, config, show_progress_bar)

    transformers.set_seed(seed)
    if eval_records is not None:
        evaluation["tuned"] = _evaluate(encoder, kb_records, eval_records)  # the trained weights, in memory
    card = {
        "base_model": encoder.model_name, "prompts": encoder.prompts, "data": stats,
        "sampling": {k: config[k] for k in _SAMPLING_KEYS},
        "training": {k: v for k, v in config.items() if k not in _SAMPLING_KEYS}
        | {"train_loss": train_loss, "seconds": round(time.perf_counter() - started, 1)},
        "evaluation": evaluation or None,
    }
    _save(encoder, out, card)
    return FinetuneResult(out=out, stats=stats, config=config, train_loss=train_loss,
                          seconds=time.perf_counter() - started, evaluation=evaluation or None, examples=examples)


# -------------------------------------------------------------------------------------------------
_SAMPLING_KEYS = ("negatives", "negatives_per_anchor", "temperature", "label_similarity", "one_language_per_batch")


def _check_options(negatives, k, temperature, epochs, batch_size, learning_rate, max_steps) -> None:
    if negatives not in STRATEGIES:
        raise ValueError(f"negatives must be one of {', '.join(STRATEGIES)}; got {negatives!r}")
    for name, value, low in (("negatives_per_anchor", k, 0), ("epochs", epochs, 1), ("batch_size", batch_size, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be a positive integer or None, got {max_steps!r}")
    if not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0 (inf allowed), got {temperature!r}")
    if not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")


def _descriptions_cover(descriptions: dict[str, str] | None, labels: list[str]) -> bool:
    return bool(descriptions) and all(label in descriptions for label in labels)  # type: ignore[operator]


def _similarity_name(similarity: str, descriptions: dict[str, str] | None, labels: list[str]) -> str:
    if similarity == "confusion":
        return "confusion: reciprocal-rank label confusions of the training anchors (base model), row-max scaled"
    if similarity == "anchor":
        return "per anchor: cosine between the anchor and each label centroid (base model)"
    if _descriptions_cover(descriptions, labels):
        return "label descriptions"
    return "cosine between label centroids (base model, document prompt)"


def _examples(encoder, data: TrainingData, strategy: str, k: int, temperature: float, seed: int,
              descriptions: dict[str, str] | None, source: str = "centroid") -> list[Example]:
    """Label similarity / mined rankings under the base model, then the sampled examples."""
    similarity, ranked, per_anchor = None, None, None
    if strategy == "weighted" and source in ("confusion", "anchor"):
        anchor_vecs = encoder.encode_queries([a.text for a in data.anchors])
        index_vecs = encoder.encode_documents([r.text for r in data.index])
        n = len(data.labels)
        similarity = confusion_similarity(anchor_vecs, [a.label_id for a in data.anchors], index_vecs,
                                          data.index_label_ids, n)
        if source == "anchor":
            per_anchor = anchor_similarity(anchor_vecs, index_vecs, data.index_label_ids, n)
    elif strategy == "weighted":
        labelled = [i for i, lab in enumerate(data.index_label_ids) if lab >= 0]
        desc = ({i: descriptions[label] for i, label in enumerate(data.labels)}  # type: ignore[index]
                if _descriptions_cover(descriptions, data.labels) else None)
        similarity = label_similarity(encoder, [data.index[i].text for i in labelled],
                                      [data.index_label_ids[i] for i in labelled], len(data.labels),
                                      descriptions=desc)
    elif strategy == "hard":
        anchor_vecs = encoder.encode_queries([a.text for a in data.anchors])
        index_vecs = encoder.encode_documents([r.text for r in data.index])
        # a few spare candidates so the anchor's own source record can never crowd out a real negative
        ranked = mine_hard_negatives(anchor_vecs, index_vecs, [a.label_id for a in data.anchors],
                                     data.index_label_ids, k + 2)
    sampler = NegativeSampler(data.index_label_ids, len(data.labels), strategy=strategy, similarity=similarity,
                              temperature=temperature)
    examples, _ = build_examples(data.anchors, data.index, data.index_label_ids, sampler,
                                 negatives_per_anchor=k, seed=seed, ranked=ranked, anchor_similarity=per_anchor)
    if not examples:
        from ..errors import KnowledgeBaseError

        raise KnowledgeBaseError("no training example: no anchor has a same-label index record other than its source")
    return examples


def _dataset(examples: list[Example]):
    from datasets import Dataset

    nfc = lambda t: unicodedata.normalize("NFC", t)
    k = len(examples[0].negatives)
    columns: dict[str, list] = {"anchor": [nfc(e.anchor) for e in examples],
                                "positive": [nfc(e.positive) for e in examples]}
    for j in range(k):
        columns[f"negative_{j + 1}"] = [nfc(e.negatives[j]) for e in examples]
    columns["label"] = [[e.label_id, *e.negative_label_ids] for e in examples]
    return Dataset.from_dict(columns)


def _train(encoder, examples: list[Example], config: dict[str, Any], show_progress_bar: bool) -> float | None:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from .loss import LabelMaskedMNRLoss
    from .sampler import language_batch_sampler

    class _NoCardTrainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict: dict) -> None:
            """We write our own card; skip sentence-transformers' card bookkeeping (it embeds widget examples)."""

    st = encoder.sentence_transformer
    if config["freeze_embeddings"]:
        inner = getattr(st[0], "model", None) or getattr(st[0], "auto_model", None)
        if inner is None or not hasattr(inner, "get_input_embeddings"):
            raise ValueError("freeze_embeddings=True needs a transformer model with an input-embedding matrix")
        inner.get_input_embeddings().weight.requires_grad_(False)
    dataset = _dataset(examples)
    prompts = training_prompts(encoder.prompts, dataset.column_names)
    with tempfile.TemporaryDirectory(prefix="mlret-ft-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp, num_train_epochs=config["epochs"], max_steps=config["max_steps"] or -1,
            per_device_train_batch_size=config["batch_size"], learning_rate=config["learning_rate"],
            warmup_steps=0.1, seed=config["seed"], data_seed=config["seed"], save_strategy="no",
            report_to="none", logging_strategy="no", disable_tqdm=not show_progress_bar,
            prompts=prompts or None, dataloader_drop_last=False, dataloader_pin_memory=False,
            batch_sampler=language_batch_sampler([e.lang for e in examples],
                                                 one_language_per_batch=config["one_language_per_batch"]),
        )
        with quiet_transformers():
            trainer = _NoCardTrainer(
                model=st, args=args, train_dataset=dataset,
                loss=LabelMaskedMNRLoss(st, scale=config["scale"], hardness_mode=config["hardness_mode"],
                                        hardness_strength=config["hardness_strength"]),
            )
        if not show_progress_bar:  # with tqdm off, transformers prints the final metrics dict instead
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        with _transformers_errors_only():
            output = trainer.train()
    st.eval()
    return float(output.training_loss) if output.training_loss is not None else None


def _evaluate(encoder, kb: list[KBRecord], queries: list[QueryRecord]) -> dict[str, Any] | None:
    try:
        from ..evaluate import evaluate
    except ImportError:
        logger.warning("mlret_rag.evaluate is not available; skipping evaluation")
        return None
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
