"""Self-training's calibration queries, seed by seed: every training language against a quarter of them.

The base model gives every pseudo-label (before the first epoch trains), so a seed's labels follow from
its margins alone: the library's threshold rule (``choose_threshold``) on the calibration queries that the
seed's dev split leaves, then the pool questions that clear it. This reproduces, without training, the
threshold, labels and lower bound of every ``selftrain_ha.py`` run, and scores the labels against the pool's
true ones. Each row at the library's precision target is checked against the run of its seed and arm saved in
``selftrain_ha.json``, and the script fails when one differs (then it no longer follows the library). Other
targets (``--precision 0.97,0.95``) screen what a run would label, without training.
Writes ``benchmarks/results/calibration_draws.{json,md}``.

    python benchmarks/calibration_draws.py [--seeds 0-9] [--precision 0.97,0.95,0.93]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results"
ARMS = {"every language": "with", "a quarter": "with-quarter-calibrating"}  # selftrain_ha.py's run of each rule


def saved_run(runs: list, seed: int, calibration: str) -> dict | None:
    """The first epoch's pseudo-labels of the ``selftrain_ha.py`` run for ``seed`` under ``calibration``, if any."""
    from selftrain_ha import key

    for run in runs:
        rounds = run.get(key("precision", ARMS[calibration]))
        if run["seed"] == seed and rounds:
            return rounds[0]
    return None


def reproduces(row: dict, run: dict) -> bool:
    """Whether ``row`` gives the run's threshold, labels and lower bound (the run saved them rounded)."""
    if row["threshold"] is None or run["threshold"] is None:
        return row["threshold"] is None and run["threshold"] is None
    return (abs(row["threshold"] - run["threshold"]) < 1e-5 and row["labels"] == run["used"]
            and abs(row["lower_bound"] - run["precision_lower_bound"]) < 1e-3)


def main() -> None:
    import numpy as np
    from selftrain_ha import held_out_for_dev, label_ids, pool_benchmark

    from mlret_rag import MultilingualEncoder
    from mlret_rag.finetune.examples import Anchor
    from mlret_rag.finetune.pseudo_labels import (
        DEFAULT_PRECISION,
        calibration_languages,
        choose_threshold,
        precision_lower_bound,
        target_margins,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="first-last")
    parser.add_argument("--precision", default=str(DEFAULT_PRECISION),
                        help="comma-separated precision targets; the library's default is checked against the runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    first, last = (int(x) for x in args.seeds.split("-"))
    targets_tried = [float(x) for x in args.precision.split(",")]

    bench, pool, _ = pool_benchmark()
    encoder = MultilingualEncoder()
    _, label_id = label_ids(bench.index)
    index = encoder.encode_documents([r.text for r in bench.index])
    targets = [label_id[r.label] for r in bench.index]

    def margins(records):
        best, margin = target_margins(encoder.encode_queries([q.text for q in records]), index, targets)
        return margin, np.array([b == label_id[q.label] for b, q in zip(best.tolist(), records)])

    query_margin, query_right = margins(bench.train_queries)
    pool_margin, pool_right = margins(pool)
    langs = np.array([q.lang for q in bench.train_queries])
    runs = json.loads((RESULTS / "selftrain_ha.json").read_text())["runs"]
    rows = []
    for precision in targets_tried:
        for seed in range(first, last + 1):
            held = held_out_for_dev(bench.train_queries, seed)
            training = np.array([i not in held for i in range(len(langs))])
            anchors = [Anchor(q.text, 0, q.lang) for q, kept in zip(bench.train_queries, training) if kept]
            for name, labels_once in (("every language", True), ("a quarter", False)):  # the default's rule, the old one
                chosen = calibration_languages(anchors, None, seed, labels_once=labels_once)
                calibrating = training & np.isin(langs, chosen)
                threshold = choose_threshold(query_margin[calibrating], query_right[calibrating], precision=precision)
                row = {"precision_target": precision, "seed": seed, "calibration": name, "languages": list(chosen),
                       "queries": int(calibrating.sum()), "threshold": threshold, "labels": 0, "above_threshold": 0,
                       "lower_bound": None, "true_precision": None, "reproduces_run": None}
                if threshold is not None:
                    above = query_right[calibrating][query_margin[calibrating] >= threshold]
                    kept = pool_margin >= threshold
                    row.update(labels=int(kept.sum()), above_threshold=len(above),
                               lower_bound=round(precision_lower_bound(above), 4),
                               true_precision=round(float(pool_right[kept].mean()), 4))
                if precision == DEFAULT_PRECISION and (run := saved_run(runs, seed, name)) is not None:
                    row["reproduces_run"] = reproduces(row, run)
                rows.append(row)
                print(row, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration_draws.json").write_text(json.dumps({"rows": rows}, indent=2, ensure_ascii=False) + "\n")
    fmt = lambda v, spec: "–" if v is None else format(v, spec)
    lines = ["# Calibration queries per seed: every training language against a quarter of them", "",
             ("Home Assistant pool (2,000 questions), labels from the base model; `at least` is the one-sided 95 % "
              "Clopper-Pearson bound the library reports."), "",
             ("`its run`: whether the saved `selftrain_ha.py` run of that seed and calibration gave the same threshold, "
              "labels and bound (only the library's default target was run). Other targets are a screen."), "",
             ("| target | seed | calibrating | queries | threshold | above it | labels | at least | true precision | gap "
              "| its run |"),
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    said = {None: "not run", True: "same", False: "**differs**"}
    for r in rows:
        gap = None if r["lower_bound"] is None else r["lower_bound"] - r["true_precision"]
        who = r["calibration"] if r["calibration"] == "every language" else f"a quarter ({', '.join(r['languages'])})"
        lines.append(f"| {r['precision_target']} | {r['seed']} | {who} | {r['queries']} | {fmt(r['threshold'], '.4f')} "
                     f"| {r['above_threshold']} | {r['labels']} | {fmt(r['lower_bound'], '.3f')} "
                     f"| {fmt(r['true_precision'], '.3f')} | {fmt(gap, '+.3f')} | {said[r['reproduces_run']]} |")
    (args.out / "calibration_draws.md").write_text("\n".join(lines) + "\n")
    differing = [(r["seed"], r["calibration"]) for r in rows if r["reproduces_run"] is False]
    if differing:
        raise SystemExit(f"these rows no longer give their saved selftrain_ha.py run's labels: {differing}; the "
                         "library's labelling changed since those runs, so rerun them or this script's rule")


if __name__ == "__main__":
    main()
