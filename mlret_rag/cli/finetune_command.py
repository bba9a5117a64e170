"""``mlret finetune``: a thin call into :func:`mlret_rag.finetune.finetune`, with every option it has."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from . import app
from ._common import MODEL_HELP, QUIET_HELP, one_line_errors

_TRAINING = "Training"
_SAMPLING = "Negatives and batches"
_DEV = "Schedule chosen on dev data"
_SELF = "Unlabelled questions (self-training)"


@app.command("finetune")
@one_line_errors
def finetune_command(
    kb: Annotated[Path, typer.Option("--kb", help="Knowledge base (.jsonl/.csv): labelled intents, or passages.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the fine-tuned model to.")],
    queries: Annotated[Path | None, typer.Option(
        "--queries", help="Training queries in any language, with a label or relevant_ids (passage KBs); "
        "without them a labelled KB is split into index and training rows.")] = None,
    unlabelled: Annotated[Path | None, typer.Option(
        "--unlabelled", help="Questions without labels (.jsonl/.csv: text, lang), e.g. logs: pseudo-labelled "
        "in the first epochs when the current model is confident enough (threshold set on held-out languages "
        "or dev, see --calibration-languages).",
        rich_help_panel=_SELF)] = None,
    pseudo_label_precision: Annotated[float, typer.Option(
        "--pseudo-label-precision", help="Share of correct pseudo-labels the threshold aims at.",
        rich_help_panel=_SELF)] = 0.97,
    pseudo_label_agreement: Annotated[bool, typer.Option(
        "--pseudo-label-agreement", help="Intent KBs: pseudo-label a question only when its nearest training "
        "queries agree with the KB's label (more precise labels; see the README).", rich_help_panel=_SELF)] = False,
    pseudo_label_propagation: Annotated[bool | None, typer.Option(
        "--pseudo-label-propagation/--no-pseudo-label-propagation", help="Also label questions below the threshold "
        "from the most similar labelled question of their language, when its label wins clearly (default: on for "
        "intent KBs whose questions name their language, off for passage KBs; see the README).", rich_help_panel=_SELF, show_default=False)] = None,
    pseudo_labels_per_epoch: Annotated[int | None, typer.Option(
        "--pseudo-labels-per-epoch", help="Most pseudo-labelled questions per epoch (default: half as many as "
        "the labelled anchors, at least 128).", rich_help_panel=_SELF)] = None,
    pseudo_labels_frozen_layers: Annotated[int, typer.Option(
        "--pseudo-labels-frozen-layers", help="Pseudo-labelled questions train only the layers above this many "
        "of the lowest (0: every layer); 4 spares unrelated languages for less pool gain (see the README).",
        rich_help_panel=_SELF)] = 0,
    calibration_languages: Annotated[int | None, typer.Option(
        "--calibration-languages", help="Set the pseudo-label threshold on the training queries of this many "
        "languages, untrained whenever labels are given (default: every language when the base model gives "
        "every label, else a quarter, when that gives 20+ queries; 0: on dev).", rich_help_panel=_SELF)] = None,
    labelling_epochs: Annotated[int | None, typer.Option(
        "--labelling-epochs", help="Only the first N epochs give new pseudo-labels (default: every epoch; 1 "
        "when languages calibrate).", rich_help_panel=_SELF)] = None,
    train_ratio: Annotated[float, typer.Option(
        "--train-ratio", help="Without --queries: share of labelled KB rows used as training anchors.",
        rich_help_panel=_TRAINING)] = 0.3,
    model: Annotated[str | None, typer.Option("--model", help=MODEL_HELP)] = None,
    negatives: Annotated[str, typer.Option("--negatives", help="standard | weighted | hard.",
                                           rich_help_panel=_SAMPLING)] = "weighted",
    negatives_per_anchor: Annotated[int | None, typer.Option(
        "--negatives-per-anchor", help="Explicit negatives per anchor (default 3; 1 for passage KBs).",
        rich_help_panel=_SAMPLING)] = None,
    temperature: Annotated[float, typer.Option("--temperature", help="Softmax temperature of weighted sampling.",
                                               rich_help_panel=_SAMPLING)] = 0.05,
    similarity: Annotated[str, typer.Option("--similarity", help="Weighted sampling by: centroid | confusion | anchor.",
                                            rich_help_panel=_SAMPLING)] = "centroid",
    one_language_per_batch: Annotated[bool, typer.Option(
        "--one-language-per-batch", help="Build each batch from one anchor language.",
        rich_help_panel=_SAMPLING)] = False,
    augment: Annotated[bool, typer.Option(
        "--augment", help="Add a code-switched or noisy copy of every training query (intent KBs; doubles "
        "the steps per epoch).", rich_help_panel=_SAMPLING)] = False,
    group_by: Annotated[str | None, typer.Option(
        "--group-by", help="Passage KBs: metadata key (e.g. a document id) whose passages are never each other's negatives.",
        rich_help_panel=_SAMPLING)] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Most passes over the training queries.",
                                        rich_help_panel=_TRAINING)] = 5,
    learning_rate: Annotated[float, typer.Option("--learning-rate", "--lr", help="Peak learning rate.",
                                                 rich_help_panel=_TRAINING)] = 5e-05,
    warmup_ratio: Annotated[float, typer.Option("--warmup-ratio", help="Share of planned steps spent warming up.",
                                                rich_help_panel=_TRAINING)] = 0.1,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="Anchors per step (default 32; 8 for passage KBs).", rich_help_panel=_TRAINING)] = None,
    max_seq_length: Annotated[int, typer.Option("--max-seq-length", help="Token cap for training texts.",
                                                rich_help_panel=_TRAINING)] = 256,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many steps in all.",
                                                  rich_help_panel=_TRAINING)] = None,
    max_seconds: Annotated[float | None, typer.Option("--max-seconds", help="Time budget for training, in seconds.",
                                                      rich_help_panel=_TRAINING)] = None,
    freeze_embeddings: Annotated[bool, typer.Option(
        "--freeze-embeddings/--train-embeddings", help="Keep the word-embedding matrix fixed (less memory).",
        rich_help_panel=_TRAINING)] = True,
    frozen_layers: Annotated[int | None, typer.Option(
        "--frozen-layers", help="Keep the embeddings and this many lowest transformer layers fixed; their output is "
        "computed once per text, so steps run only the upper layers (default: 8 of 12 for passage KBs, 3.5x faster "
        "steps for about 0.03 MRR; 0 for intent KBs; 0 = train every layer).", rich_help_panel=_TRAINING)] = None,
    bf16: Annotated[bool, typer.Option(
        "--bf16", help="Train in bfloat16 autocast (faster on CPUs with AVX-512 BF16 or AMX).",
        rich_help_panel=_TRAINING)] = False,
    document_embeddings: Annotated[str, typer.Option(
        "--document-embeddings", help="trained | constant | cached: embed a step's passages with gradients, "
        "without (every step), or without and once per epoch (much faster, lighter passage steps, "
        "but measured 0.06 MRR worse on passages).",
        rich_help_panel=_TRAINING)] = "trained",
    seed: Annotated[int, typer.Option("--seed", help="Seed for every random choice.",
                                      rich_help_panel=_TRAINING)] = 0,
    dev: Annotated[Path | None, typer.Option("--dev", help="Your own dev queries instead of a split.",
                                             rich_help_panel=_DEV)] = None,
    dev_share: Annotated[float | None, typer.Option(
        "--dev-share", help="Share of training queries held out as dev; 0 = none (default 0.15 when that gives "
        ">= 20 queries).", rich_help_panel=_DEV)] = None,
    patience: Annotated[int, typer.Option("--patience", help="Epochs without a better dev score before stopping.",
                                          rich_help_panel=_DEV)] = 2,
    interpolate: Annotated[bool, typer.Option(
        "--interpolate", help="Also try base/tuned weight mixes on dev and keep the best.",
        rich_help_panel=_DEV)] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help=QUIET_HELP)] = False,
) -> None:
    """Fine-tune the encoder on your KB so questions in any language retrieve its entries; the epoch kept is chosen on dev data."""
    # The defaults above are FinetuneConfig's (tests/test_finetune_config.py holds them equal).
    from ..finetune import FinetuneConfig, finetune  # here: numpy and the rest load only for this command
    from ..kb import load_kb, load_queries

    config = FinetuneConfig(
        negatives=negatives, negatives_per_anchor=negatives_per_anchor, temperature=temperature,
        similarity=similarity, one_language_per_batch=one_language_per_batch, group_by=group_by, augment=augment,
        train_ratio=train_ratio, epochs=epochs, patience=patience, dev_share=dev_share, batch_size=batch_size,
        learning_rate=learning_rate, warmup_ratio=warmup_ratio, max_steps=max_steps, max_seconds=max_seconds,
        max_seq_length=max_seq_length, freeze_embeddings=freeze_embeddings, frozen_layers=frozen_layers, bf16=bf16, interpolate=interpolate,
        document_embeddings=document_embeddings,
        pseudo_label_precision=pseudo_label_precision, pseudo_label_agreement=pseudo_label_agreement,
        pseudo_label_propagation=pseudo_label_propagation,
        pseudo_labels_per_epoch=pseudo_labels_per_epoch, pseudo_labels_frozen_layers=pseudo_labels_frozen_layers,
        calibration_languages=calibration_languages, labelling_epochs=labelling_epochs, seed=seed,
        overwrite=overwrite, show_progress_bar=not quiet,
    )  # every option checked before a file is read or a model loaded
    kb_records = load_kb(kb)  # every file validated before a model is loaded
    query_records = None if queries is None else load_queries(queries)
    dev_records = None if dev is None else load_queries(dev)
    unlabelled_records = None if unlabelled is None else load_queries(unlabelled)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    result = finetune(kb_records, query_records, out=out, model=model, config=config, dev_queries=dev_records,
                      unlabelled=unlabelled_records)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process trains; the first one reports
        typer.echo(summary_lines(result))


def summary_lines(result: Any) -> str:
    """What ``mlret finetune`` prints: data used and skipped, the dev curve, the chosen epoch, the language guard."""
    s, sel = result.stats, result.selection
    if s.get("relevance", "").startswith("relevant_ids"):
        skipped = (f"{s['queries_without_relevant_ids']} queries without relevant_ids and "
                   f"{s['queries_no_relevant_id_in_kb']} whose relevant_ids are all missing skipped; "
                   f"{s['relevant_ids_not_in_kb']} relevant_ids entries not in the KB")
        what = f"{s['index_records']} passages"
    else:
        skipped = (f"{s.get('queries_label_not_in_kb', 0)} queries with a label not in the KB and "
                   f"{s.get('queries_without_label', 0)} without a label skipped")
        what = f"{s['labels']} labels, {s['index_records']} KB records"
    synthetic = (f"{s['augmented_anchors']} of the {s['anchors']} labelled anchors are synthetic copies (--augment); "
                 if s.get("augmented_anchors") else "")
    lines = [(f"fine-tuned on {s['examples']} anchors ({what}; {synthetic}{skipped}) in {result.seconds:.0f} s; "
             f"saved to {result.out}")]
    if sel.get("curve"):
        lines.append(f"chosen on {sel['on']}; metric: {sel['metric']}")
        lines.append("dev curve: " + ", ".join(
            f"{'base' if p['epoch'] == 0 else 'epoch ' + str(p['epoch'])} {p['dev_score']:.4f}" for p in sel["curve"]))
        chosen = "the base weights (no epoch beat them)" if sel["chosen_epoch"] == 0 else f"epoch {sel['chosen_epoch']}"
        mix = sel.get("interpolation", {}).get("chosen_alpha", 1.0)
        chosen += "" if mix == 1.0 else f", mixed with the base weights at {mix}"
        lines.append(f"kept {chosen}: dev {sel['chosen_dev_score']:.4f} vs base {sel['base_dev_score']:.4f}; "
                     f"stopped: {sel['stopped']}")
        if sel["guard"]:
            lines.append("WARNING: dev languages losing more than 2 MRR points against the base model: " + ", ".join(
                f"{g['lang']} {g['delta']:+.3f} ({g['n_queries']} queries)" for g in sel["guard"]))
        else:
            lines.append("language guard: no dev language loses more than 2 MRR points against the base model")
    else:
        lines.append(f"no dev selection: {sel.get('note', '')}")
    if sel.get("pseudo_labels"):
        from ..finetune.pseudo_labels import PROPAGATION_PRECISION, never_cleared
        from ..finetune.train import pseudo_label_line

        pool = s["unlabelled"]
        dropped = sum(pool.get("unreadable_dropped", {}).values())
        lines.append(f"unlabelled questions: {pool['used']} used of {pool['given']} ("
                     + ", ".join(f"{lang} {n}" for lang, n in pool["per_language"].items()) + ")"
                     + (f"; {dropped} left out as unreadable to the model" if dropped else "")
                     + (f"; the labels of {pool['labels_ignored']} rows ignored" if pool["labels_ignored"] else ""))
        if pool.get("calibration"):
            cal = pool["calibration"]
            out_for = cal["labelling_epochs"] - 1  # the last labelling epoch trains them: its labels come first
            lines.append(f"pseudo-label threshold set on the {cal['queries']} training queries in "
                         f"{', '.join(cal['languages'])}, "
                         + ("before they train" if out_for == 0 else
                            f"which sit out the first {'epoch' if out_for == 1 else f'{out_for} epochs'}"))
        if voters := sel["pseudo_labels"][0].get("voters"):
            lines.append(f"a pseudo-label also needs the {voters} training queries nearest to the question to "
                         "agree (margin: KB + queries)")
        if "propagated" in sel["pseudo_labels"][0]:
            lines.append("labels also propagate to a question from the most similar labelled question of its "
                         f"language (threshold set on the calibration queries for {100 * PROPAGATION_PRECISION:.0f} % precision)")
        for r in sel["pseudo_labels"]:
            per = ", ".join(f"{lang} {n}/{r['used_per_language'].get(lang, 0)}"
                            for lang, n in r["cleared_per_language"].items())
            lines.append(pseudo_label_line(r) + (f"; new/used per language: {per}" if r["used"] else ""))
        never = never_cleared(sel["pseudo_labels"])
        if never:
            lines.append("WARNING: no unlabelled question in " + ", ".join(
                f"{lang} ({pool['per_language'][lang]})" for lang in never)
                + " ever matched the KB confidently enough to be pseudo-labelled")
    return "\n".join(lines)
