"""Can the pseudo-labels' precision be estimated honestly? Label-free estimators against the true precision.

The data and the ``finetune(kb, queries, unlabelled=pool, labelling_epochs=2, pseudo_label_propagation=False)``
call of ``selftrain_ha.py`` (two labelling epochs, the default until 2026-12-03; the KB margin alone, the default
until 2026-12-08). During each labelling epoch the run's calibration queries, unlabelled questions and index are
captured as the library encodes them; the run stops after the last labelling epoch. For the questions newly labelled in each epoch, the precision measured on the pool's
true labels is set against:

* ``isotonic`` -- the library's estimate (:func:`mlret_rag.finetune.estimated_precision`): the calibration
  queries' accuracy per margin, averaged over the new labels' margins;
* ``lower_bound_95`` -- what the library reports as "at least" (:func:`mlret_rag.finetune.precision_lower_bound`):
  the one-sided 95 % Clopper-Pearson lower bound on the calibration queries' precision above the threshold;
* ``atc_margin`` -- Average Thresholded Confidence (Garg et al., ICLR 2022): the margin above which as large
  a share of the calibration queries lies as is correct among those clearing the threshold; the estimate
  is the share of new labels above it;
* ``platt_margin`` -- a logistic fit of correctness on the margin, averaged over the new labels;
* ``logistic_margin_top1`` -- the same with the best target's score as a second feature (a weak language's
  questions score lower in absolute terms);
* ``prior_shift_em`` -- Saerens et al. (2002): the Platt posteriors re-weighted for the pool's own share of
  correct answers, found by EM on the unlabelled pool (assumes only that share differs).

Writes ``benchmarks/results/precision_estimators.{json,md}``.

    python benchmarks/precision_estimators.py [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results"
ESTIMATORS = ("isotonic", "lower_bound_95", "atc_margin", "platt_margin", "logistic_margin_top1", "prior_shift_em")


class _LabellingOver(Exception):
    """Raised to end a run once its labelling epochs are captured."""


def features(call: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Best target per query (as the library chose it) and (its margin, its score) per query."""
    query_vecs, index_vecs, index_targets, best, margin = call
    scores = query_vecs.astype(np.float64) @ index_vecs.astype(np.float64).T
    top = scores[:, np.asarray(index_targets) >= 0].max(axis=1)  # the best target scores as its best record
    return best, np.c_[margin, top]


def estimates(dev_x: np.ndarray, dev_ok: np.ndarray, pool_x: np.ndarray, threshold: float) -> dict:
    """Each estimator's precision for the pool questions clearing ``threshold`` (column 0 of ``*_x``: margin)."""
    from sklearn.linear_model import LogisticRegression

    from mlret_rag.finetune import estimated_precision, precision_lower_bound

    kept, dev_kept = pool_x[:, 0] >= threshold, dev_x[:, 0] >= threshold
    out = {"isotonic": estimated_precision(dev_x[:, 0], dev_ok, pool_x[kept, 0]),
           "lower_bound_95": precision_lower_bound(dev_ok[dev_kept])}
    tau = np.quantile(dev_x[dev_kept, 0], 1 - dev_ok[dev_kept].mean())
    out["atc_margin"] = float((pool_x[kept, 0] >= tau).mean())
    platt = LogisticRegression(C=100.0, max_iter=2000).fit(dev_x[:, :1], dev_ok)
    out["platt_margin"] = float(platt.predict_proba(pool_x[kept, :1])[:, 1].mean())
    both = LogisticRegression(C=100.0, max_iter=2000).fit(dev_x, dev_ok)
    out["logistic_margin_top1"] = float(both.predict_proba(pool_x[kept])[:, 1].mean())
    posterior, prior = platt.predict_proba(pool_x[:, :1])[:, 1], dev_ok.mean()
    share = prior
    for _ in range(200):  # EM for the pool's share of correct answers
        right, wrong = share / prior * posterior, (1 - share) / (1 - prior) * (1 - posterior)
        adjusted = right / (right + wrong)
        share = adjusted.mean()
    out["prior_shift_em"] = float(adjusted[kept].mean())
    return {k: round(v, 4) for k, v in out.items()}


def captured_rounds(bench, unlabelled: list, seed: int) -> list:
    """The labelling epochs of one self-training run: what each encoded, and which questions were new."""
    from mlret_rag.finetune import PseudoLabeller, finetune
    from mlret_rag.finetune import pseudo_labels as module

    calls, texts, rounds = [], [], []
    original_margins, original_round = module.target_margins, PseudoLabeller.round

    class RecordingEncoder:
        """The run's encoder, noting which texts each ``encode_queries`` call encodes."""

        def __init__(self, encoder):
            self.encoder = encoder

        def __getattr__(self, name):
            return getattr(self.encoder, name)

        def encode_queries(self, queries, *args, **kwargs):
            texts.append(list(queries))
            return self.encoder.encode_queries(queries, *args, **kwargs)

    def recording_margins(query_vecs, index_vecs, index_targets):
        best, margin = original_margins(query_vecs, index_vecs, index_targets)
        calls.append((np.asarray(query_vecs), np.asarray(index_vecs), list(index_targets), best, margin))
        return best, margin

    def recording_round(labeller, encoder, epoch):
        calls.clear()
        texts.clear()
        anchors, report = original_round(labeller, RecordingEncoder(encoder), epoch)
        if labeller.labelling(epoch):
            dev_call, pool_call = calls  # calibration queries, then the new questions
            rounds.append({"epoch": epoch + 1, "threshold": report["threshold"], "dev_call": dev_call,
                           "dev_targets": labeller.dev_targets, "pool_call": pool_call, "pool_texts": texts[-1],
                           "index_targets": dev_call[2],
                           "index_texts": list(labeller.index_texts)})
        elif rounds:
            raise _LabellingOver
        return anchors, report

    module.target_margins, PseudoLabeller.round = recording_margins, recording_round
    try:
        with tempfile.TemporaryDirectory(prefix="mlret-estimators-") as tmp:
            finetune(bench.index, bench.train_queries, out=Path(tmp) / "m", seed=seed, show_progress_bar=False,
                     unlabelled=unlabelled, labelling_epochs=2, pseudo_label_propagation=False)
    except _LabellingOver:
        pass
    finally:
        module.target_margins, PseudoLabeller.round = original_margins, original_round
    return rounds


def measured(round_: dict, truth: dict, label_names: dict) -> dict:
    """True and estimated precision of one epoch's new labels."""
    dev_best, dev_x = features(round_["dev_call"])
    pool_best, pool_x = features(round_["pool_call"])
    dev_ok = np.array([b in t for b, t in zip(dev_best.tolist(), round_["dev_targets"])])
    pool_ok = np.array([label_names[b] == truth[t] for b, t in zip(pool_best.tolist(), round_["pool_texts"])])
    kept = pool_x[:, 0] >= round_["threshold"]
    return {"epoch": round_["epoch"], "threshold": round_["threshold"], "new_labels": int(kept.sum()),
            "calibration_accuracy": round(float(dev_ok.mean()), 4), "pool_accuracy": round(float(pool_ok.mean()), 4),
            "true_precision": round(float(pool_ok[kept].mean()), 4),
            "estimates": estimates(dev_x, dev_ok, pool_x, round_["threshold"])}


def render(payload: dict, out: Path) -> None:
    rows = [(r["seed"], e) for r in payload["runs"] for e in r["epochs"]]
    gaps = {name: max(abs(e["estimates"][name] - e["true_precision"]) for _, e in rows) for name in ESTIMATORS}
    payload["largest_gap"] = {k: round(v, 4) for k, v in gaps.items()}
    lines = ["# Pseudo-label precision: label-free estimators against the true precision", "",
             ("The Home Assistant pool of `selftrain_ha.py`, self-training with 2 labelling epochs (the default until "
              "2026-12-03); each labelling epoch's new "
              "labels. Calibration queries: the held-out training languages. See the script's docstring for "
              "the estimators."), "",
             "| seed | epoch | new labels | calibration acc. | pool acc. | true precision | "
             + " | ".join(ESTIMATORS) + " |", "|---:|---:|---:|---:|---:|---:|" + "---:|" * len(ESTIMATORS)]
    for seed, e in rows:
        lines.append(f"| {seed} | {e['epoch']} | {e['new_labels']} | {e['calibration_accuracy']:.3f} | "
                     f"{e['pool_accuracy']:.3f} | {e['true_precision']:.3f} | "
                     + " | ".join(f"{e['estimates'][n]:.3f}" for n in ESTIMATORS) + " |")
    lines.append("| largest gap | | | | | | " + " | ".join(f"**{gaps[n]:.3f}**" for n in ESTIMATORS) + " |")
    (out / "precision_estimators.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from selftrain_ha import pool_benchmark

    bench, pool, unlabelled = pool_benchmark()
    truth = {q.text: q.label for q in pool}
    labels = {r.text: r.label for r in bench.index}
    payload = {"benchmark": "home-assistant-intents, English KB, unlabelled pool", "runs": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        rounds = captured_rounds(bench, unlabelled, seed)
        epochs = []
        for round_ in rounds:
            names = {t: labels[text] for text, t in zip(round_["index_texts"], round_["index_targets"])}
            epochs.append(measured(round_, truth, names))
            print(seed, epochs[-1], flush=True)
        payload["runs"].append({"seed": seed, "epochs": epochs})
    args.out.mkdir(parents=True, exist_ok=True)
    render(payload, args.out)
    (args.out / "precision_estimators.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(payload["largest_gap"])


if __name__ == "__main__":
    main()
