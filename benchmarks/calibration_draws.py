"""Self-training's calibration queries, seed by seed: every training language against a quarter of them.

The base model gives every pseudo-label (before the first epoch trains), so a seed's labels follow from
its margins alone: the library's threshold rule (``choose_threshold``) on the calibration queries that the
seed's dev split leaves, then the pool questions that clear it. This reproduces, without training, the
threshold, labels and lower bound of every ``selftrain_ha.py`` run (checked on seeds 0-5), and scores the
labels against the pool's true ones. Writes ``benchmarks/results/calibration_draws.{json,md}``.

    python benchmarks/calibration_draws.py [--seeds 0-9]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    import numpy as np
    from selftrain_ha import pool_benchmark

    from mlret_rag import MultilingualEncoder
    from mlret_rag.finetune.dev import DEFAULT_DEV_SHARE, split_dev
    from mlret_rag.finetune.examples import Anchor
    from mlret_rag.finetune.pseudo_labels import (
        calibration_languages,
        choose_threshold,
        precision_lower_bound,
        target_margins,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="first-last")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    first, last = (int(x) for x in args.seeds.split("-"))

    bench, pool, _ = pool_benchmark()
    encoder = MultilingualEncoder()
    labels = sorted({r.label for r in bench.index})
    label_id = {label: n for n, label in enumerate(labels)}
    index = encoder.encode_documents([r.text for r in bench.index])
    targets = [label_id[r.label] for r in bench.index]

    def margins(records):
        best, margin = target_margins(encoder.encode_queries([q.text for q in records]), index, targets)
        return margin, np.array([b == label_id[q.label] for b, q in zip(best.tolist(), records)])

    query_margin, query_right = margins(bench.train_queries)
    pool_margin, pool_right = margins(pool)
    langs = np.array([q.lang for q in bench.train_queries])
    rows = []
    for seed in range(first, last + 1):
        held = set(split_dev(bench.train_queries, share=DEFAULT_DEV_SHARE, seed=seed).dev_rows)
        training = np.array([i not in held for i in range(len(langs))])
        anchors = [Anchor(q.text, 0, q.lang) for q, kept in zip(bench.train_queries, training) if kept]
        for name, labels_once in (("every language", True), ("a quarter", False)):  # the default's rule, and the old one
            chosen = calibration_languages(anchors, None, seed, labels_once=labels_once)
            calibrating = training & np.isin(langs, chosen)
            threshold = choose_threshold(query_margin[calibrating], query_right[calibrating])
            row = {"seed": seed, "calibration": name, "languages": list(chosen), "queries": int(calibrating.sum()),
                   "threshold": threshold, "labels": 0, "above_threshold": 0, "lower_bound": None, "true_precision": None}
            if threshold is not None:
                above = query_right[calibrating][query_margin[calibrating] >= threshold]
                kept = pool_margin >= threshold
                row.update(labels=int(kept.sum()), above_threshold=len(above),
                           lower_bound=round(precision_lower_bound(above), 4),
                           true_precision=round(float(pool_right[kept].mean()), 4))
            rows.append(row)
            print(row, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration_draws.json").write_text(json.dumps({"rows": rows}, indent=2, ensure_ascii=False) + "\n")
    fmt = lambda v, spec: "–" if v is None else format(v, spec)
    lines = ["# Calibration queries per seed: every training language against a quarter of them", "",
             ("Home Assistant pool (2,000 questions), labels from the base model; `at least` is the one-sided 95 % "
              "Clopper-Pearson bound the library reports."), "",
             "| seed | calibrating | queries | threshold | above it | labels | at least | true precision | gap |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        gap = None if r["lower_bound"] is None else r["lower_bound"] - r["true_precision"]
        who = r["calibration"] if r["calibration"] == "every language" else f"a quarter ({', '.join(r['languages'])})"
        lines.append(f"| {r['seed']} | {who} | {r['queries']} | {fmt(r['threshold'], '.4f')} | {r['above_threshold']} "
                     f"| {r['labels']} | {fmt(r['lower_bound'], '.3f')} | {fmt(r['true_precision'], '.3f')} "
                     f"| {fmt(gap, '+.3f')} |")
    (args.out / "calibration_draws.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
