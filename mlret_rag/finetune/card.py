"""The model card of a fine-tuned folder: ``mlret_card.json`` (machine-readable) and ``README.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD_FILE = "mlret_card.json"


def write_card(out: Path, card: dict[str, Any]) -> None:
    """Write ``card`` (data statistics, sampling/training configuration, evaluation) as JSON and markdown."""
    out = Path(out)
    (out / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False, default=str) + "\n")
    (out / "README.md").write_text(render_markdown(card))


def read_card(folder: Path) -> dict[str, Any]:
    """Read the ``mlret_card.json`` of a fine-tuned folder."""
    return json.loads((Path(folder) / CARD_FILE).read_text())


def render_markdown(card: dict[str, Any]) -> str:
    """A human-readable model card."""
    lines = [
        "---", "library_name: sentence-transformers", "tags: [sentence-transformers, mlret-rag, cross-lingual]",
        "---", "", f"# {card.get('base_model', 'model')} fine-tuned with mlret-rag", "",
        (
            "Fine-tuned for cross-lingual retrieval over one knowledge base with weighted negative sampling "
            "(mlret-rag `finetune`). Load it with `SentenceTransformer(path)` or "
            f"`mlret_rag.MultilingualEncoder(path)`; prompts: `{json.dumps(card.get('prompts', {}), ensure_ascii=False)}`."
        ), "",
    ]
    for title, key in (("Data", "data"), ("Sampling", "sampling"), ("Training", "training")):
        section = card.get(key) or {}
        lines += [f"## {title}", "", "| key | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in section.items()]
        lines.append("")
    lines += _selection_lines(card.get("selection") or {})
    lines += pseudo_label_lines(card.get("selection") or {}, (card.get("data") or {}).get("unlabelled"))
    evaluation = card.get("evaluation")
    if evaluation:
        lines += ["## Evaluation", "", "| model | language | n | MRR | hit@1 | hit@3 | hit@10 | nDCG@10 |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, report in evaluation.items():
            rows = [("overall", report.get("overall", {}))] + sorted((report.get("per_language") or {}).items())
            for lang, m in rows:
                lines.append(
                    f"| {name} | {lang} | {m.get('n_queries', '')} | " + " | ".join(
                        f"{m.get(k, float('nan')):.4f}" for k in ("mrr", "hit@1", "hit@3", "hit@10", "ndcg@10")
                    ) + " |"
                )
        lines.append("")
    return "\n".join(lines)


def _selection_lines(selection: dict[str, Any]) -> list[str]:
    """The dev curve, the chosen epoch and the per-language guard, or why there was no dev selection."""
    if not selection.get("curve"):
        return ["## Schedule", "", selection.get("note") or "no dev selection", ""]
    lines = ["## Schedule chosen on dev data", "", f"Chosen on {selection['on']}; metric: {selection['metric']}.",
             f"Kept epoch {selection['chosen_epoch']} (0 = the base weights); stopped: {selection['stopped']}.", "",
             "| epoch | step | dev score |", "|---:|---:|---:|"]
    lines += [f"| {p['epoch']} | {p['step']} | {p['dev_score']:.4f} |" for p in selection["curve"]]
    mix = selection.get("interpolation")
    if mix:
        lines += ["", (f"Weights mixed with the base model (base + a x (tuned - base)), a chosen on dev: "
                  f"{mix['chosen_alpha']}; dev score per a: `{json.dumps(mix['dev_score_by_alpha'])}`.")]
    lines.append("")
    guard = selection.get("guard") or []
    if guard:
        lines += ["**Languages losing more than 2 MRR points on dev against the base model:**", "",
                  "| language | dev queries | base | tuned | delta |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {g['lang']} | {g['n_queries']} | {g['base_mrr']:.4f} | {g['tuned_mrr']:.4f} | {g['delta']:+.4f} |"
                  for g in guard]
    else:
        lines.append("No dev language loses more than 2 MRR points against the base model.")
    lines.append("")
    return lines


def pseudo_label_lines(selection: dict[str, Any], pool: dict[str, Any] | None) -> list[str]:
    """Self-training per epoch: the threshold, precision on its calibration queries and estimated for the kept
    questions, and how many of each language cleared it."""
    rounds = selection.get("pseudo_labels")
    if not rounds:
        return []
    langs = list((pool or {}).get("per_language") or rounds[0]["cleared_per_language"])
    cal = (pool or {}).get("calibration")
    epochs = "" if not cal else ("first epoch, the only one" if cal["labelling_epochs"] == 1
                                 else f"first {cal['labelling_epochs']} epochs, the only ones")
    on = (f"the {cal['queries']} training queries in {', '.join(cal['languages'])}, which sat out training in the "
          f"{epochs} giving new labels" if cal else "the dev queries")
    voters = rounds[0].get("voters")
    agreeing = ("" if not voters else f" The {voters} labelled training queries vote too: the label must also win "
                "among them, and the margin is the sum of both.")
    lines = ["## Pseudo-labelled questions (self-training)", "",
             (f"{(pool or {}).get('used', '?')} unlabelled questions, pseudo-labelled with the current model at the "
              "start of each epoch; a question never trained on gets a label for good when its best target beats "
              f"the runner-up by the threshold margin, chosen for the precision target on {on}.{agreeing} The estimate "
              "applies their accuracy per margin (isotonic fit) to the new labels' margins ('dev precision': "
              "theirs above the threshold; 'at least': its one-sided 95 % Clopper-Pearson lower bound, for how "
              "few they are). Both describe queries like the calibration ones; questions in harder languages "
              "can be less precise at the same margin. Per language: new/used."), "",
             "| epoch | threshold | dev precision | estimated precision (new) | at least | new | labelled | used | "
             + " | ".join(f"{lang} ({pool['per_language'][lang]})" if pool else lang for lang in langs) + " |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(langs)]
    for r in rounds:
        cells = [str(r["epoch"]), _fmt(r["threshold"]), _fmt(r["dev_precision"]), _fmt(r["estimated_precision"]),
                 _fmt(r.get("precision_lower_bound")),
                 str(r["cleared"]), str(r.get("labelled", r["cleared"])), str(r["used"])] + [
            f"{r['cleared_per_language'].get(lang, 0)}/{r.get('used_per_language', {}).get(lang, 0)}" for lang in langs]
        lines.append("| " + " | ".join(cells) + " |")
    from .pseudo_labels import PROPAGATION_PRECISION, never_cleared

    if "propagated" in rounds[0]:
        lines += ["", _PROPAGATION.format(100 * PROPAGATION_PRECISION), ""]
        lines += [f"* epoch {r['epoch']}: {_propagated(r)}" for r in rounds if r.get("labelling", True)]
    never = never_cleared(rounds)
    if never:
        lines += ["", "**Never pseudo-labelled (no confident KB match in any epoch):** " + ", ".join(never)]
    lines.append("")
    return lines


_PROPAGATION = ("Labels also propagate: a question below the threshold takes the label of its most similar question "
                "of its language labelled that epoch, when that label beats the runner-up by a margin set the same way "
                "on the calibration queries (those above the threshold seeding the others) for {:.0f} % precision. 'new' "
                "counts them, and the estimate and bound cover them:")


def _propagated(report: dict[str, Any]) -> str:
    if not report.get("propagated"):
        return "none propagated"
    per = ", ".join(f"{lang} {n}" for lang, n in report["propagated_per_language"].items())
    return (f"{report['propagated']} propagated at margin {_fmt(report['propagation_threshold'])} "
            f"(dev precision {_fmt(report['propagation_dev_precision'])}): {per}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        return "`" + json.dumps(value, ensure_ascii=False, default=str) + "`"
    return str(value)
