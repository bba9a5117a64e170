"""Self-training from unlabelled questions on Home Assistant intents: the same fine-tune with and without a pool.

The benchmark of ``finetune_ha.py`` (same KB, training and evaluation queries) plus an unlabelled pool:
utterances of six weak zero-shot languages and variants (de-CH, eu, ga, lb, lt, lv), disjoint from every
evaluation text, 2,000 in all (a seeded sample). Per seed: ``finetune(kb, queries)`` (library defaults)
and ``finetune(kb, queries, unlabelled=pool)`` with labels by the KB margin alone (the arm ``with``, the default
until 2026-12-08) or also propagated (``with-propagation``, the default for intent KBs since), evaluated on the
same queries. Reports MRR per language group and for the pool languages, the languages (>= 100 queries) that lose
more than 1 point because of the pool, the pseudo-labels' true precision per epoch next to the dev-estimated one,
and the time ratio.
Writes ``benchmarks/results/selftrain_ha.{json,md,png}``.

    python benchmarks/selftrain_ha.py [--seeds 0,1,2] [--arms without,with,with-dev-threshold] [--append]
                                      [--reuse-without] [--render-only]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from _machine import cpu_description
from finetune_ha import MIN_QUERIES, groups, losers

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results"
POOL_LANGUAGES = ("de-CH", "eu", "ga", "lb", "lt", "lv")
POOL_SIZE = 2000


def pool_benchmark() -> tuple:
    """The benchmark, its pool (a seeded sample, with true labels) and the pool as given to the library (texts only)."""
    from mlret_rag.datasets.home_assistant import build_intent_benchmark
    from mlret_rag.kb import QueryRecord

    bench = build_intent_benchmark(kb_per_intent=20, train_per_intent=3, eval_per_intent=4, seed=0,
                                   pool_languages=POOL_LANGUAGES, pool_per_intent=40)
    pool = random.Random(0).sample(bench.unlabelled_pool, min(POOL_SIZE, len(bench.unlabelled_pool)))
    return bench, pool, [QueryRecord(q.text, lang=q.lang) for q in pool]  # no labels reach the library


def pool_mrr(report: dict) -> float:
    per = report["per_language"]
    return statistics.mean(per[lang]["mrr"] for lang in POOL_LANGUAGES)


def label_ids(index: list) -> tuple[list[str], dict[str, int]]:
    """The KB's labels, sorted, and each one's id: the ids the library gives them (``target_margins``' targets)."""
    labels = sorted({r.label for r in index})
    return labels, {label: n for n, label in enumerate(labels)}


def held_out_for_dev(train_queries: list, seed: int) -> set[int]:
    """The rows of ``train_queries`` that ``finetune``'s default dev split holds out for ``seed``: the others
    train, and with a pool they are the calibration queries (every language calibrates)."""
    from mlret_rag.finetune import split_dev
    from mlret_rag.finetune.dev import DEFAULT_DEV_SHARE

    return set(split_dev(train_queries, share=DEFAULT_DEV_SHARE, seed=seed).dev_rows)


def reordered(train_queries: list, seed: int) -> list:
    """``train_queries`` with the rows that train shuffled among themselves inside each (label, language):
    the dev split is the same (checked), the anchors too, only their order, hence batches and negative draws,
    differ. A placebo for the pool, which changes those as well as adding anchors."""
    from collections import defaultdict

    held = held_out_for_dev(train_queries, seed)
    strata = defaultdict(list)
    for i, q in enumerate(train_queries):
        if i not in held:
            strata[(q.label, q.lang)].append(i)
    out, rng = list(train_queries), random.Random(seed)
    for rows in strata.values():
        for i, j in zip(rows, rng.sample(rows, len(rows))):
            out[i] = train_queries[j]
    if held_out_for_dev(out, seed) != held:  # the untouched dev rows, so the same dev records
        raise RuntimeError(f"reordering moved seed {seed}'s dev split: the placebo would change more than the order")
    return out


def right_only(encoder, index: list, pool: list) -> list:
    """The pool less the questions whose best label under ``encoder`` is wrong: the base model gives every
    pseudo-label (before the first epoch), so the default's right pseudo-labels stay and its wrong ones go."""
    import numpy as np

    from mlret_rag.finetune import target_margins
    from mlret_rag.kb import QueryRecord

    labels, label_id = label_ids(index)
    best, _ = target_margins(encoder.encode_queries([q.text for q in pool]), encoder.encode_documents(
        [r.text for r in index]), [label_id[r.label] for r in index])
    return [QueryRecord(q.text, lang=q.lang) for q, b in zip(pool, np.asarray(best)) if labels[b] == q.label]


def intent_mrr(encoder, bench) -> dict:
    """MRR per intent over the evaluation queries outside the pool languages and English (``evaluate``
    groups by ``lang``, so each query's ``lang`` is set to its intent)."""
    from mlret_rag.evaluate import evaluate
    from mlret_rag.kb import QueryRecord

    queries = [QueryRecord(q.text, label=q.label, lang=q.label) for q in bench.eval_queries
               if q.lang not in POOL_LANGUAGES and q.lang != "en"]
    return {label: m["mrr"] for label, m in evaluate(encoder, bench.index, queries)["per_language"].items()}


def precision_rows(selection: dict, kept: list, truth: dict) -> list:
    rows = []
    for report, pairs in zip(selection.get("pseudo_labels", []), kept):
        true = sum(truth[t] == label for t, label in pairs) / len(pairs) if pairs else None
        rows.append({"epoch": report["epoch"], "used": report["used"], "threshold": report["threshold"],
                     "dev_precision": report["dev_precision"],
                     # the estimate for everything labelled so far, which is what an epoch trains on
                     "estimated_precision": report.get("estimated_precision_all", report["estimated_precision"]),
                     "precision_lower_bound": report.get("precision_lower_bound_all"),
                     "true_precision": None if true is None else round(true, 4),
                     **({"propagated": report["propagated"]} if "propagated" in report else {}),
                     "cleared_per_language": report["cleared_per_language"]})
    return rows


def reused_without(path: Path, seed: int, language_groups: dict) -> dict:
    """The ``default`` run of ``finetune_ha.py`` for ``seed``: the same benchmark data and ``finetune`` call."""
    runs = [r for r in json.loads(path.read_text())["runs"] if r["run"] == "default" and r["seed"] == seed]
    if not runs:
        raise SystemExit(f"{path} has no default run for seed {seed}; run without --reuse-without")
    r, report = runs[0], runs[0]["report"]
    return {"seconds": r["seconds"], "groups": groups(report, language_groups), "pool_mrr": round(pool_mrr(report), 4),
            "chosen_epoch": r["selection"].get("chosen_epoch"),
            "per_language": {lang: m["mrr"] for lang, m in report["per_language"].items()},
            "curve": [p["dev_score"] for p in r["selection"].get("curve", [])], "report": report,
            "load_avg_15min": r.get("load_avg_15min"), "source": "finetune_ha.json (default run)"}


INVOCATION = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()}"  # the runs of one invocation share it


def timed_together(row: dict, arm: str = "with") -> bool | None:
    """Whether a seed's two runs can be compared in time: True when one invocation of this script timed both
    (the machine's speed drifts over a day), None when either was saved before invocations were recorded and
    both ran on one kind of CPU (comparable at best), False otherwise."""
    runs = (row["without"], row[arm])
    if all("invocation" in r for r in runs):
        return runs[0]["invocation"] == runs[1]["invocation"]
    cpus = {r.get("cpu") for r in runs}
    return None if len(cpus) == 1 and None not in cpus else False


def key(kind: str, arm: str) -> str:
    """Where a run's ``kind`` of figures (precision, unlabelled_stats, losers) is saved: bare for the default arm."""
    return kind if arm == "with" else f"{kind}-{arm}"


ARMS = {"without": "without pool",
        "without-reordered": ("without pool, the training rows shuffled inside each intent and language (the same "
                              "anchors and dev split, other batches and negative draws): a placebo for the pool's "
                              "perturbation, how far languages move with no new information"),
        "with": ("with pool, labels by the KB margin alone (pseudo_label_propagation=False; the defaults from "
                 "2026-12-07 to 12-08: the base model labels before the first epoch, the threshold set on the training "
                 "queries of every language, which train from that epoch on; the learning rate decays to zero at the "
                 "last step)"),
        "with-quarter-calibrating": ("with pool, the threshold set on a quarter of the training languages (2 of 8, a "
                                     "seeded choice; calibration_languages=2), the default 2026-12-03 to 12-07"),
        "with-precision-95": ("with pool, every training language calibrating as by default, the threshold aiming at "
                              "95 % correct pseudo-labels instead of 97 % (pseudo_label_precision=0.95): more labels"),
        "with-precision-95-above-4": ("with pool, every training language calibrating for 95 % correct labels, "
                                      "the pseudo-labelled questions training only the layers above the 4th "
                                      "(pseudo_label_precision=0.95, pseudo_labels_frozen_layers=4)"),
        "with-repeats-2": ("with pool, each pseudo-labelled anchor an epoch uses trained on twice, with its own "
                           "positive and negatives each time (measured on ddbd266 with its option "
                           "pseudo_label_repeats=2, seeds 0-2, removed since: the same labels with more weight gained "
                           "the pool languages little and cost Catalan, Hungarian and Greek more)"),
        "with-repeats-2-above-4": ("with pool, each pseudo-labelled anchor trained on twice, training only the layers "
                                   "above the 4th (measured on ddbd266 with pseudo_label_repeats=2, "
                                   "pseudo_labels_frozen_layers=4, seeds 0-2, removed since: the weight did not buy "
                                   "back the gain the cut costs without Hungarian, Greek and Italian losing more)"),
        "with-precision-96-above-3": ("with pool, every training language calibrating for 96 % correct labels "
                                      "(about 100 on most seeds, where 97 % gives 74-100), the pseudo-labelled "
                                      "questions training only the layers above the 3rd (pseudo_label_precision=0.96, "
                                      "pseudo_labels_frozen_layers=3)"),
        "with-propagation": ("with pool, labels also propagated to questions below the threshold from the most "
                             "similar labelled question of their language, at a margin set on the calibration "
                             "queries for 90 % precision (pseudo_label_propagation=True, the default for intent "
                             "KBs since 2026-12-08)"),
        "with-propagation-above-3": ("with pool, labels propagated as in with-propagation, the pseudo-labelled "
                                     "questions training only the layers above the 3rd (pseudo_label_propagation=True, "
                                     "pseudo_labels_frozen_layers=3; seeds 0-1, stopped there: Hungarian, Greek and "
                                     "Catalan lost 1.6-3.9 points on both)"),
        "with-propagation-above-4": ("with pool, labels propagated as in with-propagation, the pseudo-labelled "
                                     "questions training only the layers above the 4th (pseudo_label_propagation=True, "
                                     "pseudo_labels_frozen_layers=4; seeds 0-2, stopped there: against both runs "
                                     "without the pool, Greek, Finnish and Hungarian lost 1.3-1.6 points on the "
                                     "mean while the pool languages gained +0.035)"),
        "with-propagation-half-below-4": ("with pool, labels propagated as in with-propagation, half of a "
                                          "pseudo-labelled question's gradient reaching the 4 lowest layers "
                                          "(seeds 3-9 measured on bd117cb with its option "
                                          "pseudo_labels_lower_gradient=0.5 beside pseudo_label_propagation=True, "
                                          "pseudo_labels_frozen_layers=4; seeds 0-2 on 437515c with a one-off hook "
                                          "giving the same gradient, h * 0.5 + h.detach() * 0.5; removed since: it "
                                          "spared Catalan but gained the pool languages no more than the default "
                                          "while Finnish and Hungarian lost more than a point against the run "
                                          "without the pool, Finnish against both runs too; seed 1 was timed "
                                          "with a one-minute test beside it)"),
        "with-propagation-projection": ("with pool, labels propagated as in with-propagation, the pseudo-labelled "
                                        "questions' gradient losing its part that opposes the labelled queries' in "
                                        "each step (A-GEM; measured on a457151 with its option "
                                        "pseudo_label_gradient_projection=True, seed 0 only, removed since: it "
                                        "almost never binds, the two gradients of a step rarely oppose, so 44 of 49 "
                                        "languages came within 0.0005 of with-propagation and none moved by more "
                                        "than 0.006, while each step holding pseudo-labelled questions ran a second "
                                        "backward pass: 575 s for the run)"),
        "with-agreement": ("with pool, a pseudo-label needing the nearest training queries' agreement "
                           "(pseudo_label_agreement=True)"),
        "with-batched-apart": ("with pool, the pseudo-labelled anchors batched apart so that the labelled anchors "
                               "keep the batches and order they have without the pool (measured on 908353c, seeds "
                               "0-1, and reverted: the same labels, only other batches, moved 8-10 languages by more "
                               "than a point each way)"),
        "with-anchor-only": ("with pool, a pseudo-labelled question's loss term moving only its own embedding, "
                             "never the KB rows' (measured on seed 0 on 2586aec with its option "
                             "pseudo_labels_move_documents=False, removed since: Catalan lost as much)"),
        "with-pool-without-basque": ("with the pool less its 504 Basque questions (a diagnosis: does Catalan's loss "
                                     "come from its Iberian neighbour's labels? The pool figure still averages all "
                                     "six languages)"),
        "with-right-labels-only": ("with the pool less every question the base model labels wrongly, so that the "
                                   "pseudo-labels are the default's right ones and no wrong one (a diagnosis: "
                                   "does Catalan's loss come from wrong labels?)"),
        "with-frozen-4": ("with pool, the 4 lowest of the 12 layers frozen with the word embeddings (frozen_layers=4; "
                          "intent KBs train every layer by default): does the pool's loss come through the lower "
                          "layers?"),
        "without-frozen-4": "without pool, frozen_layers=4 (the control of with-frozen-4)",
        "with-pseudo-above-2": ("with pool, pseudo-labelled questions training only the layers above the 2nd "
                                "(pseudo_labels_frozen_layers=2; seed 0 only)"),
        "with-pseudo-above-3": ("with pool, pseudo-labelled questions training only the layers above the 3rd "
                                "(pseudo_labels_frozen_layers=3)"),
        "with-pseudo-above-4-two-labelling-epochs": ("with pool, pseudo-labelled questions training only the layers "
                                                     "above the 4th, labelled in 2 epochs (pseudo_labels_frozen_layers=4, "
                                                     "labelling_epochs=2; seeds 0-1 only)"),
        "with-pseudo-above-4": ("with pool, pseudo-labelled questions training only the layers above the 4th "
                                "(pseudo_labels_frozen_layers=4), the labelled ones every layer (seed 1 was timed "
                                "with tests running beside it)"),
        "with-pseudo-above-4-every-language": ("with pool, pseudo-labelled questions training only the layers above "
                                               "the 4th (pseudo_labels_frozen_layers=4), every training language "
                                               "calibrating as by default since 2026-12-07 (seeds 0-4, stopped "
                                               "there: the pool languages gained +0.023 against both runs without "
                                               "the pool, Hungarian and Finnish lost more than a point)"),
        "with-calibration-sits-out": "with pool, as the default but the 2 calibration languages sit out the one "
                                     "labelling epoch (the default 2026-12-03 to 12-06), with the schedule ending "
                                     "at the last step",
        "with-stretched-schedule": "with pool, the defaults until 2026-12-06: the learning-rate decay planned for the "
                                   "most pseudo-labels an epoch may add (384) while about 100 were used, so training "
                                   "ended at 31 % of the peak rate",
        "with-calibration-trains-first-epoch": "with pool, the 2 calibration languages training in the first epoch too, "
                                               "with the stretched schedule (measured 2026-12-04 on 62e69cb with "
                                               "PseudoLabeller.sitting_out(epoch) asking labelling(epoch + 1), "
                                               "the rule since 2026-12-06)",
        "with-two-labelling-epochs": "with pool, 2 labelling epochs (labelling_epochs=2; the default until 2026-12-03)",
        "with-dev-threshold": "with pool, threshold set on dev, every epoch labels (calibration_languages=0)",
        "with-relabel": "with pool, every question re-labelled every epoch (precision 0.97; an earlier default)",
        "with-p90": "with pool, re-labelled every epoch, precision 0.9, up to 1x the labelled anchors",
        "augment": "no pool, augment=True (a code-switched or noisy copy of every training query)",
        "without-10-epochs": "without pool, up to 10 epochs (as many steps as augment's 5)",
        "without-warmup-12": "without pool, warmup over 12 % of the steps instead of 10 % (a change that should not "
                             "matter: how much two equivalent runs differ)",
        "with-augment": "with pool (2 labelling epochs) and augment=True (both options)",
        "with-50-per-epoch": "with pool, at most 50 pseudo-labelled anchors an epoch (pseudo_labels_per_epoch=50; "
                             "the default allows 384, about 100 clear the threshold)",
        "with-half-weight": "with pool, each pseudo-labelled anchor's loss term weighing 0.5 (measured on 599e394 with "
                            "its option pseudo_label_weight=0.5, removed since: it cost the pool languages a third "
                            "of their gain)",
        "with-precision-99": "with pool, the threshold aiming at 99 % correct pseudo-labels instead of 97 % "
                             "(pseudo_label_precision=0.99)",
        "with-4-per-label": "with pool, at most 4 pseudo-labels per intent, the widest margins first (measured on "
                            "97f425f with its option pseudo_labels_per_target=4, removed since: by default the base "
                            "model's confident questions crowd onto a few intents, e.g. 17 of seed 0's 101 on "
                            "HassGetCurrentDate, and capping them cost the pool languages 40 % of their gain)"}
POOL = object()  # stands for the unlabelled pool in OPTIONS
POOL_WITHOUT_BASQUE = object()  # the pool less its Basque questions
POOL_RIGHT_ONLY = object()  # the pool less the questions the base model labels wrongly
REORDERED = object()  # the training queries, reordered (a placebo)
QUARTER = {"calibration_languages": 2}  # arms measured before 2026-12-07, when a quarter of the languages calibrated
# every arm with a pool was measured with labels by the KB margin alone unless its options say otherwise: the
# default until 2026-12-08, when propagation became the default for intent KBs
KB_MARGIN_ALONE = {"pseudo_label_propagation": False}
OPTIONS = {"without": {}, "with": {"unlabelled": POOL},  # the arms run here, with their finetune() keywords
           "without-reordered": {"queries": REORDERED},  # "queries": what replaces the training queries
           "with-quarter-calibrating": {"unlabelled": POOL, **QUARTER},
           "with-precision-95": {"unlabelled": POOL, "pseudo_label_precision": 0.95},
           "with-precision-95-above-4": {"unlabelled": POOL, "pseudo_label_precision": 0.95,
                                         "pseudo_labels_frozen_layers": 4},
           "with-precision-96-above-3": {"unlabelled": POOL, "pseudo_label_precision": 0.96,
                                         "pseudo_labels_frozen_layers": 3},
           "with-propagation": {"unlabelled": POOL, "pseudo_label_propagation": True},
           "with-propagation-above-3": {"unlabelled": POOL, "pseudo_label_propagation": True,
                                        "pseudo_labels_frozen_layers": 3},
           "with-propagation-above-4": {"unlabelled": POOL, "pseudo_label_propagation": True,
                                        "pseudo_labels_frozen_layers": 4},
           "with-agreement": {"unlabelled": POOL, "pseudo_label_agreement": True},
           "with-dev-threshold": {"unlabelled": POOL, "calibration_languages": 0},
           "augment": {"augment": True},
           "without-10-epochs": {"epochs": 10},
           "without-warmup-12": {"warmup_ratio": 0.12},
           "with-augment": {"unlabelled": POOL, "augment": True, "labelling_epochs": 2},
           "with-two-labelling-epochs": {"unlabelled": POOL, "labelling_epochs": 2},
           "with-50-per-epoch": {"unlabelled": POOL, **QUARTER, "pseudo_labels_per_epoch": 50},
           "with-precision-99": {"unlabelled": POOL, **QUARTER, "pseudo_label_precision": 0.99},
           "with-pool-without-basque": {"unlabelled": POOL_WITHOUT_BASQUE, **QUARTER},
           "with-right-labels-only": {"unlabelled": POOL_RIGHT_ONLY, **QUARTER},
           "with-frozen-4": {"unlabelled": POOL, **QUARTER, "frozen_layers": 4},
           "without-frozen-4": {"frozen_layers": 4},
           "with-pseudo-above-4": {"unlabelled": POOL, **QUARTER, "pseudo_labels_frozen_layers": 4},
           "with-pseudo-above-4-every-language": {"unlabelled": POOL, "pseudo_labels_frozen_layers": 4},
           "with-pseudo-above-2": {"unlabelled": POOL, **QUARTER, "pseudo_labels_frozen_layers": 2},
           "with-pseudo-above-3": {"unlabelled": POOL, **QUARTER, "pseudo_labels_frozen_layers": 3},
           "with-pseudo-above-4-two-labelling-epochs": {"unlabelled": POOL, "pseudo_labels_frozen_layers": 4,
                                                        "labelling_epochs": 2}}  # the other ARMS: history
NO_POOL = tuple(arm for arm, options in OPTIONS.items() if "unlabelled" not in options)
JUDGED_ARMS = (  # other arms with a pool whose targets are judged too: (arm, name in the JSON, heading in the md)
    ("with-quarter-calibrating", "quarter_calibrating", ("With a quarter of the training languages calibrating "
                                                         "(`calibration_languages=2`, the default until 2026-12-07):")),
    ("with-precision-95", "precision_95", ("With every training language calibrating for 95 % correct labels "
                                           "(`pseudo_label_precision=0.95`):")),
    ("with-precision-95-above-4", "precision_95_above_4", ("With every training language calibrating for 95 % "
                                                           "correct labels, the pseudo-labelled questions training "
                                                           "above the 4th layer only:")),
    ("with-precision-96-above-3", "precision_96_above_3", ("With every training language calibrating for 96 % "
                                                           "correct labels, the pseudo-labelled questions training "
                                                           "above the 3rd layer only (seeds 5-9; its time ratio is no "
                                                           "measurement: the runs without the pool were timed "
                                                           "earlier that day, while the machine's speed drifted):")),
    ("with-propagation", "propagation", ("With labels propagated inside the pool from the most similar labelled "
                                         "question of the same language (`pseudo_label_propagation=True`, the "
                                         "default for intent KBs since 2026-12-08; its time "
                                         "ratio is no measurement: its runs took 279-430 s while the machine slowed, "
                                         "seed 9's 430 s training exactly as the KB margin alone's 231 s, since nothing "
                                         "propagated there; `propagation_cost.py` measures what it adds):")),
    ("with-propagation-above-4", "propagation_above_4", ("With labels propagated and the pseudo-labelled questions "
                                                         "training above the 4th layer only "
                                                         "(`pseudo_label_propagation=True`, "
                                                         "`pseudo_labels_frozen_layers=4`; seeds 0-2, a screen "
                                                         "stopped there):")),
    ("with-propagation-half-below-4", "propagation_half_below_4", (
        "With labels propagated and half of a pseudo-labelled question's gradient reaching the 4 lowest layers "
        "(measured on bd117cb with `pseudo_labels_lower_gradient=0.5`, an option removed since):")),
    ("with-repeats-2", "repeats_2", ("With each pseudo-labelled anchor trained on twice (measured on ddbd266 with "
                                     "`pseudo_label_repeats=2`, an option removed since):")),
    ("with-repeats-2-above-4", "repeats_2_above_4", ("With each pseudo-labelled anchor trained on twice, above the "
                                                     "4th layer only (measured on ddbd266, removed since):")),
    ("with-dev-threshold", "dev_threshold", "With the threshold set on dev instead (`calibration_languages=0`):"),
    ("with-agreement", "agreement", "With the training queries' agreement (`pseudo_label_agreement=True`):"),
    ("with-pseudo-above-4", "pseudo_above_4", ("With pseudo-labelled questions training only the layers above the "
                                               "4th (`pseudo_labels_frozen_layers=4`):")),
    ("with-pseudo-above-4-every-language", "pseudo_above_4_every_language", (
        "With pseudo-labelled questions training only the layers above the 4th, every training language "
        "calibrating (`pseudo_labels_frozen_layers=4` with the calibration of 2026-12-07 and the KB margin alone; "
        "seeds 0-4, stopped there):")),
)


def summarise(payload: dict) -> None:
    rows = [r for r in payload["runs"] if "with" in r]  # the KB margin alone, every language calibrating
    m, payload["verdicts"] = arm_targets(rows, "with")
    for arm, name, _ in JUDGED_ARMS:
        measured = [r for r in payload["runs"] if arm in r]
        if measured:
            m[name], payload[f"verdicts_{name}"] = arm_targets(measured, arm)
    aug = [r for r in rows if "augment" in r]
    if aug:
        for group in ("unseen", "train", "en"):
            m[f"augment_{group}_delta"] = statistics.mean(
                r["augment"]["groups"][group] - r["without"]["groups"][group] for r in aug)
        m["augment_pool_delta"] = statistics.mean(r["augment"]["pool_mrr"] - r["without"]["pool_mrr"] for r in aug)
        m["augment_seeds"] = len(aug)
    controlled = [r for r in aug if "without-10-epochs" in r]  # augment against as many steps without it
    if controlled:
        for group in ("overall", "unseen", "train", "en"):
            m[f"augment_vs_10_epochs_{group}_delta"] = statistics.mean(
                r["augment"]["groups"][group] - r["without-10-epochs"]["groups"][group] for r in controlled)
        m["augment_vs_10_epochs_pool_delta"] = statistics.mean(
            r["augment"]["pool_mrr"] - r["without-10-epochs"]["pool_mrr"] for r in controlled)
    payload["means"] = m


def arm_targets(rows: list, arm: str) -> tuple[dict, list]:
    """Issue 11's targets for the runs ``arm`` (with a pool) against the runs without it, on the same seeds."""
    d = lambda key: [r[arm]["groups"][key] - r["without"]["groups"][key] for r in rows]
    pool_gain = [r[arm]["pool_mrr"] - r["without"]["pool_mrr"] for r in rows]
    precision = [p for r in rows for p in r[key("precision", arm)]]
    errors = [abs(p["estimated_precision"] - p["true_precision"]) for p in precision
              if p["estimated_precision"] is not None and p["true_precision"] is not None]
    bound_errors = [abs(p["precision_lower_bound"] - p["true_precision"]) for p in precision
                    if p.get("precision_lower_bound") is not None and p["true_precision"] is not None]
    dev_errors = [abs(p["dev_precision"] - p["true_precision"]) for p in precision
                  if p["dev_precision"] is not None and p["true_precision"] is not None]
    together = [r for r in rows if timed_together(r, arm)]
    timed = together or [r for r in rows if timed_together(r, arm) is None]
    ratios = [r[arm]["seconds"] / r["without"]["seconds"] for r in timed]
    loads = ", ".join(f"{r['without']['load_avg_15min']}/{r[arm]['load_avg_15min']}" for r in timed)
    lost = [losers(r["without"]["report"], r[arm]["report"], points=0.01) for r in rows]
    worst = min((x["delta"] for lose in lost for x in lose), default=0.0)
    mean_lost = mean_losers(rows, arm)
    ok = lambda flag: "**met**" if flag else "**missed**"
    m = {"seeds": len(rows), "pool_gain": statistics.mean(pool_gain), "pool_gain_per_seed": pool_gain,
         "train_delta": statistics.mean(d("train")), "en_delta": statistics.mean(d("en")),
         "unseen_delta": statistics.mean(d("unseen")), "overall_delta": statistics.mean(d("overall")),
         "max_precision_error": max(errors, default=None), "max_dev_precision_error": max(dev_errors, default=None),
         "max_lower_bound_error": max(bound_errors, default=None),
         "time_ratio_median": statistics.median(ratios) if ratios else None, "time_ratio_runs": len(ratios),
         "time_ratio_in_one_invocation": bool(together)}
    verdicts = [
        f"* pool languages gain >= 0.04 MRR over the same fine-tune without the pool: {ok(m['pool_gain'] >= 0.04)} "
        f"({m['pool_gain']:+.4f}; per seed " + ", ".join(f"{g:+.4f}" for g in pool_gain) + ")",
        (f"* no language (>= {MIN_QUERIES} queries) loses more than 1 point: {ok(worst >= -0.01)} on every seed "
         f"(worst {worst:+.4f}); {ok(not mean_lost)} on the mean of the {len(rows)} seeds ("
         + (", ".join(f"{lang} {d:+.4f}" for lang, d in mean_lost) or "none") + ")"),
        (f"* trained languages and English do not drop: {ok(m['train_delta'] >= 0 and m['en_delta'] >= 0)} "
        f"(trained {m['train_delta']:+.4f}, English {m['en_delta']:+.4f})"),
        (f"* dev-estimated precision within 5 points of the true one, every epoch: "
         f"{ok(m['max_precision_error'] is not None and m['max_precision_error'] <= 0.05)} (largest gap "
         f"{m['max_precision_error'] if m['max_precision_error'] is None else round(m['max_precision_error'], 4)}; "
         f"plain dev precision above the threshold: {m['max_dev_precision_error'] and round(m['max_dev_precision_error'], 4)})"),
        (f"* its one-sided 95 % lower bound (\"at least\") within 5 points of the true precision, every epoch: "
         f"{ok(m['max_lower_bound_error'] is not None and m['max_lower_bound_error'] <= 0.05)} (largest gap "
         f"{m['max_lower_bound_error'] and round(m['max_lower_bound_error'], 4)})"),
        (f"* time with the pool <= 2x without: {ok(m['time_ratio_median'] <= 2)} (median ratio "
         f"{round(m['time_ratio_median'], 2)} over {len(ratios)} seeds; 15-minute load averages without/with: {loads} "
         "on 2 cores; " + ("each seed's two runs timed in one invocation)" if together else
                           "each seed's two runs timed on one kind of CPU, in invocations not recorded then: "
                           "comparable at best)") if ratios else
         ("* time with the pool <= 2x without: not measured (no seed's two runs were timed in one invocation, "
          "nor on one kind of CPU before invocations were recorded)")),
    ]
    verdicts += two_baseline_verdicts(rows, arm, m)
    return m, verdicts


PLACEBO = "without-reordered"


def two_baseline_verdicts(rows: list, arm: str, m: dict) -> list:
    """The targets that compare languages, against the mean of two runs without the pool (as given, and the
    placebo: the same rows reordered) on the seeds that have both: the run without the pool is one draw of
    the batches' noise too, and every arm compared with it shares that draw."""
    rows = [r for r in rows if PLACEBO in r]
    if len(rows) < 3:
        return []
    per = rows[0]["without"]["report"]["per_language"]
    base = lambda r, get: (get(r["without"]) + get(r[PLACEBO])) / 2
    mean = lambda get: statistics.mean(get(r[arm]) - base(r, get) for r in rows)
    lost = {lang: mean(lambda run, lang=lang: run["per_language"][lang])
            for lang, q in per.items() if q["n_queries"] >= MIN_QUERIES}
    lost = sorted(((lang, d) for lang, d in lost.items() if d < -0.01), key=lambda x: x[1])
    train, en = mean(lambda run: run["groups"]["train"]), mean(lambda run: run["groups"]["en"])
    pool = mean(lambda run: run["pool_mrr"])
    ok = lambda flag: "**met**" if flag else "**missed**"
    m.update(two_baseline_seeds=len(rows), two_baseline_pool_gain=pool, two_baseline_train_delta=train,
             two_baseline_en_delta=en, two_baseline_losers=[[lang, round(d, 4)] for lang, d in lost])
    return [f"* against the mean of two runs without the pool (as given and `{PLACEBO}`, the placebo), on the "
            f"{len(rows)} seeds that have both: pool languages {pool:+.4f}; no language loses more than 1 point on "
            f"the mean: {ok(not lost)} (" + (", ".join(f"{lang} {d:+.4f}" for lang, d in lost) or "none")
            + f"); trained languages and English do not drop: {ok(train >= 0 and en >= 0)} (trained {train:+.4f}, "
            f"English {en:+.4f})"]


def mean_losers(rows: list, arm: str, against: str = "without", points: float = 0.01) -> list[tuple[str, float]]:
    """Languages (>= MIN_QUERIES queries) whose MRR under ``arm`` is, on the mean of the seeds, more than
    ``points`` below ``against``: a per-seed difference of one language also holds run-to-run noise."""
    return sorted(((lang, round(d, 4)) for lang, (d, _, _) in language_spread(rows, arm, against).items()
                   if d < -points), key=lambda x: x[1])


def augment_lines(payload: dict) -> list:
    """``augment=True`` (no pool) against its control with as many steps, per seed, per pool language, and
    the languages it costs more than a point."""
    rows = [r for r in payload["runs"] if "augment" in r and "without-10-epochs" in r]
    if not rows:
        return []
    names = ("overall", "en", "train", "unseen")
    delta = lambda r, g: r["augment"]["groups"][g] - r["without-10-epochs"]["groups"][g]
    pool = lambda r: r["augment"]["pool_mrr"] - r["without-10-epochs"]["pool_mrr"]
    lines = ["", "## Augmentation (`augment=True`, no pool) against as many steps without it", "",
             ("Each training query plus one synthetic copy (half code-switched with a same-intent English KB "
              "row, half with character noise) doubles the steps per epoch; the control runs up to 10 epochs "
              "instead of 5. Differences augment − control:"), "",
             "| seed | overall | en | train langs | unseen langs | pool langs | chosen epochs | s (augment / control) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['seed']} | " + " | ".join(f"{delta(r, g):+.4f}" for g in names)
                     + f" | {pool(r):+.4f} | {r['augment']['chosen_epoch']} / {r['without-10-epochs']['chosen_epoch']} "
                     f"| {r['augment']['seconds']:.0f} / {r['without-10-epochs']['seconds']:.0f} |")
    m = payload["means"]  # summarise's means over these seeds
    lines.append("| mean | " + " | ".join(f"{m[f'augment_vs_10_epochs_{g}_delta']:+.4f}" for g in names)
                 + f" | {m['augment_vs_10_epochs_pool_delta']:+.4f} | | |")
    lines += ["", "| pool language | " + " | ".join(f"seed {r['seed']}" for r in rows) + " | mean |",
              "|---|" + "---:|" * (len(rows) + 1)]
    for lang in POOL_LANGUAGES:
        d = [r["augment"]["per_language"][lang] - r["without-10-epochs"]["per_language"][lang] for r in rows]
        lines.append(f"| {lang} | " + " | ".join(f"{x:+.4f}" for x in d) + f" | {statistics.mean(d):+.4f} |")
    lines += ["", f"Languages (>= {MIN_QUERIES} queries) losing more than 1 point with augmentation against its control:", ""]
    lines += [loser_line(r["seed"], losers(r["without-10-epochs"]["report"], r["augment"]["report"], points=0.01))
              for r in rows]
    return lines


def difference_lines(payload: dict, arm: str, against: str, title: str, what: str) -> list:
    """``arm`` against ``against`` per seed (both measured on it): group and pool differences, losers."""
    rows = [r for r in payload["runs"] if arm in r and against in r]
    if not rows:
        return []
    names = ("overall", "en", "train", "unseen")
    delta = lambda r, g: r[arm]["groups"][g] - r[against]["groups"][g]
    pool = [r[arm]["pool_mrr"] - r[against]["pool_mrr"] for r in rows]
    lines = ["", f"## {title}", "", f"Differences {what}, same seeds:", "",
             "| seed | overall | en | train langs | unseen langs | pool langs | chosen epochs | s (arm / control) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r, gain in zip(rows, pool):
        lines.append(f"| {r['seed']} | " + " | ".join(f"{delta(r, g):+.4f}" for g in names)
                     + f" | {gain:+.4f} | {r[arm]['chosen_epoch']} / {r[against]['chosen_epoch']} "
                     f"| {r[arm]['seconds']:.0f} / {r[against]['seconds']:.0f} |")
    lines.append("| mean | " + " | ".join(f"{statistics.mean(delta(r, g) for r in rows):+.4f}" for g in names)
                 + f" | {statistics.mean(pool):+.4f} | | |")
    lines += ["", f"Languages (>= {MIN_QUERIES} queries) losing more than 1 point, {what}:", ""]
    lines += [loser_line(r["seed"], losers(r[against]["report"], r[arm]["report"], points=0.01)) for r in rows]
    lines.append(f"* mean of the {len(rows)} seeds: " + (", ".join(f"{lang} {d:+.3f}" for lang, d in
                                                              mean_losers(rows, arm, against)) or "none"))
    return lines


def consistency_lines(payload: dict, arm: str = "with", shown: int = 6) -> list:
    """The languages (>= MIN_QUERIES queries) losing most under ``arm`` on the mean of the seeds, with their
    per-seed differences and a one-sample t: a loss on every seed is the arm's, one that goes both ways may
    be the noise of other batches (the placebo ``without-reordered`` shows how large that is)."""
    rows = [r for r in payload["runs"] if arm in r and "without" in r]
    if len(rows) < 3:
        return []
    spread = language_spread(rows, arm)
    below = sorted(lang for lang, (mean, _, _) in spread.items() if mean < -0.01)
    title = ("Is a language's loss the pool's? Differences with − without" if arm == "with" else
             f"A placebo with other batches: {arm} − without, no new information")
    lines = ["", f"## {title}, per seed ({len(rows)} seeds)", "",
             "| language | per seed | mean | sd | t |", "|---|---|---:|---:|---:|"]
    for lang, (mean, sd, d) in sorted(spread.items(), key=lambda x: x[1][0])[:shown]:
        t = mean / (sd / len(d) ** 0.5) if sd else float("nan")
        lines.append(f"| {lang} | {', '.join(f'{x:+.3f}' for x in d)} | {mean:+.4f} | {sd:.4f} | {t:+.1f} |")
    median_sd = statistics.median(s for _, s, _ in spread.values())
    lines += ["", (f"Median sd over the {len(spread)} languages: {median_sd:.4f}. "
                   f"Below −0.01 on the mean: {len(below)} ({', '.join(below) or 'none'}).")]
    if arm != "with":
        return lines
    for placebo, what in (("without-warmup-12", "warmup 12 % − 10 %, same batches"),
                          (PLACEBO, "the training rows reordered, other batches")):
        measured = [r for r in rows if placebo in r]
        if len(measured) >= 3:
            sds = [sd for _, sd, _ in language_spread(measured, placebo).values()]
            lines[-1] += f" The placebo's ({what}, {len(measured)} seeds): {statistics.median(sds):.4f}."
    return lines


def language_spread(rows: list, arm: str, against: str = "without") -> dict[str, tuple[float, float, list[float]]]:
    """Per language (>= MIN_QUERIES queries): mean and sd (0 for one row) over ``rows`` of ``arm`` − ``against``,
    and the differences."""
    per = rows[0][against]["report"]["per_language"]
    spread = {}
    for lang in (lang for lang, m in per.items() if m["n_queries"] >= MIN_QUERIES):
        d = [r[arm]["per_language"][lang] - r[against]["per_language"][lang] for r in rows]
        spread[lang] = (statistics.mean(d), statistics.stdev(d) if len(d) > 1 else 0.0, d)
    return spread


def intent_lines(payload: dict, shown: int = 8) -> list:
    """Per seed measured with per-intent figures: the intents (outside the pool languages and English) that
    lose most with the pool, and how each pool arm measured there moves them."""
    lines = []
    for r in (r for r in payload["runs"] if "per_intent" in r.get("without", {})):
        arms = [arm for arm in ARMS if arm not in NO_POOL and "per_intent" in r.get(arm, {})]
        if "with" not in arms:
            continue
        base = r["without"]["per_intent"]
        delta = {arm: {i: r[arm]["per_intent"][i] - base[i] for i in base} for arm in arms}
        lines += ["", (f"## Intents losing most with the pool, seed {r['seed']}: MRR outside the pool languages "
                       "and English"), "", "| intent | without | " + " | ".join(f"{arm} − without" for arm in arms) + " |",
                  "|---|---:|" + "---:|" * len(arms)]
        for intent in sorted(base, key=lambda i: delta["with"][i])[:shown]:
            lines.append(f"| {intent} | {base[intent]:.4f} | "
                         + " | ".join(f"{delta[arm][intent]:+.4f}" for arm in arms) + " |")
    return lines


def loser_line(seed: int, lost: list) -> str:
    """One seed's languages losing more than a point, for the md."""
    return f"* seed {seed}: " + (", ".join(f"{x['lang']} {x['delta']:+.3f} (n={x['n']})" for x in lost) or "none")


THEN = "with-quarter-calibrating"  # the default the arms below were measured against, before 2026-12-07
COMPARISONS = (  # (arm, against, title, what the differences are), each on the seeds both were measured on
    ("with", THEN, "Every training language calibrating (the default since 2026-12-07) against a quarter of them",
     "(every language) − (a quarter)"),
    ("with-propagation", "with", ("Labels propagated inside the pool (the default since 2026-12-08) against the KB "
     "margin's alone (the default before)"), "(propagation) − (KB margin alone)"),
    ("with-precision-95", "with", "The threshold aiming at 95 % correct pseudo-labels against 97 % (the default)",
     "(95 %) − (97 %)"),
    ("with-precision-95-above-4", "with-precision-95", ("At 95 %, pseudo-labelled questions training above the "
     "4th layer only against every layer"), "(above the 4th) − (every layer)"),
    ("with-agreement", THEN, ("Pseudo-labels needing the training queries' agreement against the KB margin "
     "alone (the default until 2026-12-08)"), "(agreement) − (KB margin alone)"),
    ("with-50-per-epoch", THEN, "Half the pseudo-labels: at most 50 an epoch against the default",
     "(at most 50) − (default)"),
    ("with-half-weight", THEN, "Pseudo-labelled anchors weighing 0.5 in the loss against 1 (the default)",
     "(weight 0.5) − (weight 1)"),
    ("with-precision-99", THEN, "The threshold aiming at 99 % correct pseudo-labels against 97 % (the default)",
     "(99 %) − (97 %)"),
    ("with-4-per-label", THEN, "At most 4 pseudo-labels per intent against no cap (the default)",
     "(at most 4 per intent) − (no cap)"),
    ("with-anchor-only", THEN, ("Pseudo-labelled questions moving only their own embedding against moving the "
     "KB rows too (the default)"), "(anchor only) − (default)"),
    ("with-pool-without-basque", THEN, "The pool less its Basque questions against the whole pool (the default)",
     "(no Basque) − (whole pool)"),
    ("with-right-labels-only", "without", ("Every pseudo-label right (the pool less the questions the base model "
     "labels wrongly) against no pool"), "(right labels only) − (no pool)"),
    ("with-right-labels-only", THEN, ("Every pseudo-label right against the default's (the same right ones and "
     "about 10 wrong ones)"), "(right labels only) − (default)"),
    ("with-frozen-4", "without-frozen-4", ("The pool with the 4 lowest layers frozen against the same freeze "
     "without it"), "(pool) − (no pool), both with frozen_layers=4"),
    ("with-pseudo-above-4", THEN, ("Pseudo-labelled questions training only the layers above the 4th against "
     "every layer (the default)"), "(above the 4th) − (every layer)"),
    ("with-pseudo-above-2", THEN, ("Pseudo-labelled questions training only the layers above the 2nd against "
     "every layer (the default)"), "(above the 2nd) − (every layer)"),
    ("without-frozen-4", "without", "The 4 lowest layers frozen against every layer training (the default), no pool",
     "(frozen_layers=4) − (every layer trains)"),
    ("with-batched-apart", THEN, ("The same pseudo-labels batched apart against mixed into the labelled batches "
     "(the default): only the batches differ, so this is how far a reshuffle alone moves a language"),
     "(batched apart) − (mixed in)"),
    ("with-augment", "augment", "The pool on top of augmentation (`augment=True` and `unlabelled=pool`)",
     "(pool and augment) − (augment alone)"),
    (THEN, "with-calibration-sits-out", ("The calibration languages training in the only labelling epoch (the "
     "default since 2026-12-06) against sitting it out"), "(they train in epoch 1) − (they sit it out)"),
    ("with-calibration-sits-out", "with-stretched-schedule", ("The learning rate decaying to zero at the last step "
     "(since 2026-12-06) against the stretched schedule, the calibration languages sitting out epoch 1 in both"),
     "(decay ends at the last step) − (decay planned for 384 pseudo-labels an epoch)"),
    ("without-warmup-12", "without", ("A placebo: the fine-tune without the pool, its warmup 12 % of the steps "
     "instead of 10 %, against the default; how much two equivalent runs differ"), "(warmup 12 %) − (warmup 10 %)"),
    ("without-10-epochs", "without", "A pool-free fine-tune with a longer schedule against the default one",
     "(up to 10 epochs) − (the default 5)"),
    # measured before the schedule ended at the last step: against the default of then
    ("with-stretched-schedule", "with-two-labelling-epochs", ("One labelling epoch (the default) against two, both "
     "with the stretched schedule"), "(labels from the base model only) − (2 labelling epochs)"),
    ("with-calibration-trains-first-epoch", "with-stretched-schedule", ("The calibration languages training in the "
     "only labelling epoch too, both with the stretched schedule"), "(they train in epoch 1) − (they sit it out)"),
)


def render(payload: dict, out: Path) -> None:
    from mlret_rag.evaluate import plot_per_language

    lines = ["# Self-training from unlabelled questions (Home Assistant intents)", "",
             (f"The `finetune_ha.py` benchmark plus an unlabelled pool of {payload['data']['pool']} utterances in "
              f"{', '.join(POOL_LANGUAGES)} (disjoint from the evaluation queries). Same seeds, library defaults "
              "otherwise; 2-core CPU."), "",
             "| seed | run | overall | en | train langs | unseen langs | pool langs | chosen epoch | train s |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in payload["runs"]:
        for name in (n for n in ARMS if n in r):
            x = r[name]
            g = x["groups"]
            lines.append(f"| {r['seed']} | {ARMS[name]} | {g['overall']:.4f} | {g['en']:.4f} | {g['train']:.4f} | "
                         f"{g['unseen']:.4f} | {x['pool_mrr']:.4f} | {x['chosen_epoch']} | {x['seconds']:.0f} |")
    lines += ["", "## Targets (issue 11)", "", ("Labels by the KB margin alone (`with`, the default until 2026-12-08; "
                                                 "since then intent KBs propagate labels too, judged further down):"),
              "", *payload["verdicts"], "",
              *[line for _, name, heading in JUDGED_ARMS if payload.get(f"verdicts_{name}")
                for line in (heading, "", *payload[f"verdicts_{name}"], "")],
              "## Pool languages, MRR without / with the pool (mean over seeds)", "",
              "| language | queries | base | without | with | gain |", "|---|---:|---:|---:|---:|---:|"]
    for lang in POOL_LANGUAGES:
        current = [r for r in payload["runs"] if "with" in r]
        wo = statistics.mean(r["without"]["per_language"][lang] for r in current)
        wi = statistics.mean(r["with"]["per_language"][lang] for r in current)
        base = payload["base"]["per_language"][lang]
        lines.append(f"| {lang} | {base['n_queries']} | {base['mrr']:.4f} | {wo:.4f} | {wi:.4f} | {wi - wo:+.4f} |")
    lines += ["", "## Pseudo-labels per epoch: true precision against the estimates", "",
              "| seed | epoch | used | threshold | dev precision | estimated | true |", "|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v: "–" if v is None else f"{v:.3f}"
    for r in payload["runs"]:
        extra = [dict(q, epoch=f"{q['epoch']} ({arm})") for arm in ARMS if arm.startswith("with-")
                 for q in r.get(key("precision", arm), [])]
        for p in r.get("precision", []) + extra:
            lines.append(f"| {r['seed']} | {p['epoch']} | {p['used']} | {fmt(p['threshold'])} | {fmt(p['dev_precision'])} "
                         f"| {fmt(p['estimated_precision'])} | {fmt(p['true_precision'])} |")
    lines += ["", "## Languages (>= 100 queries) losing more than 1 point with the pool", ""]
    lines += [loser_line(r["seed"], r["losers"]) for r in payload["runs"] if "losers" in r]
    lines += consistency_lines(payload)
    lines += consistency_lines(payload, PLACEBO)
    lines += intent_lines(payload)
    lines += augment_lines(payload)
    for arm, against, title, what in COMPARISONS:
        lines += difference_lines(payload, arm, against, title, what)
    (out / "selftrain_ha.md").write_text("\n".join(lines) + "\n")
    first = next(r for r in payload["runs"] if "with" in r)
    plot_per_language({"base": payload["base"], "without pool": first["without"]["report"],
                       "with pool": first["with"]["report"]}, out / "selftrain_ha.png",
                      title="Home Assistant intents: MRR per language, fine-tune with / without an unlabelled pool")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--append", action="store_true", help="add these seeds to the saved results")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--arms", default="without,with,with-propagation",
                        help=f"runs to measure per seed, of: {', '.join(OPTIONS)} (described in ARMS); with --append "
                             "a seed's other saved runs are kept")
    parser.add_argument("--reuse-without", action="store_true",
                        help="take the run without the pool from finetune_ha.json's default run of the same seed "
                             "(the same data and call)")
    args = parser.parse_args()
    arms = args.arms.split(",")
    if unknown := set(arms) - set(OPTIONS):
        raise SystemExit(f"--arms: unknown {', '.join(sorted(unknown))}")
    if "without" not in arms and not (args.append or args.reuse_without):
        raise SystemExit("--arms: every arm is compared with the run without the pool; add 'without', "
                         "--append (the saved one) or --reuse-without")
    saved = args.out / "selftrain_ha.json"
    if args.render_only:
        payload = json.loads(saved.read_text())
        summarise(payload)
        render(payload, args.out)
        return

    from mlret_rag import MultilingualEncoder
    from mlret_rag.evaluate import evaluate
    from mlret_rag.finetune import finetune

    bench, pool, unlabelled = pool_benchmark()
    truth = {q.text: q.label for q in pool}
    base_model = MultilingualEncoder()  # evaluated here, and labels the right-labels-only pool
    base = evaluate(base_model, bench.index, bench.eval_queries, name="base")
    payload = {"benchmark": "home-assistant-intents, English KB, unlabelled pool",
               "data": {"index": len(bench.index), "train_queries": len(bench.train_queries),
                        "eval_queries": len(bench.eval_queries), "pool": len(pool),
                        "pool_per_language": {lang: sum(q.lang == lang for q in pool) for lang in POOL_LANGUAGES}},
               "base": base, "runs": []}
    earlier: dict = {}
    if args.append and saved.exists():  # keep what other seeds, and other runs of these seeds, measured
        earlier = {r["seed"]: r for r in json.loads(saved.read_text())["runs"]}
        payload["runs"] = list(earlier.values())  # a seed's row is replaced when its runs are done, so a
        # run stopped half-way loses none of what was saved
    args.out.mkdir(parents=True, exist_ok=True)
    pools = {POOL: unlabelled, POOL_WITHOUT_BASQUE: [q for q in unlabelled if q.lang != "eu"]}
    if any(OPTIONS[name].get("unlabelled") is POOL_RIGHT_ONLY for name in arms):
        pools[POOL_RIGHT_ONLY] = right_only(base_model, bench.index, pool)
    for seed in (int(s) for s in args.seeds.split(",")):
        row = dict(earlier.get(seed, {}), seed=seed)
        for name in arms:  # measured again
            for saved_key in (name, *(key(kind, name) for kind in ("precision", "unlabelled_stats", "losers"))):
                row.pop(saved_key, None)
        if args.reuse_without:
            row["without"] = reused_without(args.out / "finetune_ha.json", seed, bench.language_groups)
        for name in arms:
            if name in row:
                continue
            extra = {**({} if name in NO_POOL else KB_MARGIN_ALONE),
                     **{k: pools.get(v, v) for k, v in OPTIONS[name].items() if k != "queries"}}
            queries = reordered(bench.train_queries, seed) if "queries" in OPTIONS[name] else bench.train_queries
            with tempfile.TemporaryDirectory(prefix="mlret-selftrain-") as tmp:
                t = time.perf_counter()
                result = finetune(bench.index, queries, out=Path(tmp) / "m",
                                  seed=seed, show_progress_bar=False, **extra)
                seconds = time.perf_counter() - t
                trained = MultilingualEncoder(str(result.out))
                report = evaluate(trained, bench.index, bench.eval_queries, name=name)
                per_intent = intent_mrr(trained, bench)
            row[name] = {"seconds": round(seconds, 1), "groups": groups(report, bench.language_groups),
                         "pool_mrr": round(pool_mrr(report), 4), "chosen_epoch": result.selection.get("chosen_epoch"),
                         "per_language": {lang: m["mrr"] for lang, m in report["per_language"].items()},
                         "curve": [p["dev_score"] for p in result.selection.get("curve", [])], "report": report,
                         "per_intent": per_intent, "load_avg_15min": round(os.getloadavg()[2], 2), "cpu": cpu_description(),
                         "invocation": INVOCATION, "source": "this script"}
            if name not in NO_POOL:
                row[key("precision", name)] = precision_rows(result.selection, result.pseudo_labels, truth)
                row[key("unlabelled_stats", name)] = result.stats.get("unlabelled")
            print(seed, name, row[name]["groups"], "pool", row[name]["pool_mrr"], f"{seconds:.0f}s", flush=True)
        for name in (n for n in ARMS if n not in NO_POOL and n in row):  # what each lost to the pool
            row[key("losers", name)] = losers(row["without"]["report"], row[name]["report"], points=0.01)
        payload["runs"] = sorted([r for r in payload["runs"] if r["seed"] != seed] + [row], key=lambda r: r["seed"])
        summarise(payload)
        saved.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        render(payload, args.out)
    print("\n".join(payload["verdicts"]))


if __name__ == "__main__":
    main()
