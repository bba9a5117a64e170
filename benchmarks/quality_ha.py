"""Quality benchmark on Home Assistant intents: base vs fine-tuned (standard / weighted / hard negatives).

English KB (index part searched), training anchors in the training languages, held-out evaluation
queries in English, the training languages and zero-shot languages left out of training. CPU, about
15 minutes with the defaults. Writes ``benchmarks/results/quality_ha.{json,md,png}``.

    python benchmarks/quality_ha.py [--train-per-intent 8] [--eval-per-intent 3] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results"


def targets(reports: dict, train_languages: tuple, zero_shot: tuple) -> dict:
    """The issue's targets, computed from per-language MRR."""
    base = reports["base"]["per_language"]

    def gap(rep: dict) -> float:
        other = [m["mrr"] for lang, m in rep.items() if lang != "en"]
        return rep["en"]["mrr"] - sum(other) / len(other)

    out = {"base_gap_en_vs_non_en": round(gap(base), 4)}
    for name, rep in reports.items():
        if name == "base":
            continue
        per = rep["per_language"]
        deltas = {lang: per[lang]["mrr"] - base[lang]["mrr"] for lang in base}
        zs = [deltas[lang] for lang in zero_shot if lang in deltas]
        worst = min(deltas, key=deltas.get)
        out[name] = {
            "overall_mrr": round(rep["overall"]["mrr"], 4),
            "gap_en_vs_non_en": round(gap(per), 4),
            "gap_closed_fraction": round(1 - gap(per) / gap(base), 4),
            "mean_delta_train_languages": round(sum(deltas[lang] for lang in train_languages) / len(train_languages), 4),
            "mean_delta_zero_shot": round(sum(zs) / max(1, len(zs)), 4),
            "zero_shot_languages_gaining": sum(d > 0 for d in zs), "zero_shot_languages": len(zs),
            "delta_en": round(deltas["en"], 4),
            "worst_language": worst, "worst_delta": round(deltas[worst], 4),
            "languages_losing_more_than_2_points": sorted(lang for lang, d in deltas.items() if d < -0.02),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-intent", type=int, default=8)
    parser.add_argument("--eval-per-intent", type=int, default=3)
    parser.add_argument("--kb-per-intent", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--strategies", default="standard,weighted,hard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from mlret_rag import MultilingualEncoder
    from mlret_rag.datasets.home_assistant import build_intent_benchmark
    from mlret_rag.evaluate import evaluate, plot_per_language, report_markdown
    from mlret_rag.finetune import finetune

    started = time.perf_counter()
    bench = build_intent_benchmark(kb_per_intent=args.kb_per_intent, train_per_intent=args.train_per_intent,
                                   eval_per_intent=args.eval_per_intent, seed=args.seed)
    print(f"index {len(bench.index)}, train queries {len(bench.train_queries)}, eval queries "
          f"{len(bench.eval_queries)}, {len(bench.labels)} intents, train {bench.train_languages}, "
          f"{len(bench.zero_shot_languages)} zero-shot languages", flush=True)
    reports: dict = {}
    timings: dict = {}
    t = time.perf_counter()
    reports["base"] = evaluate(MultilingualEncoder(), bench.index, bench.eval_queries, name="base")
    timings["base_eval_s"] = round(time.perf_counter() - t, 1)
    print(f"base MRR {reports['base']['overall']['mrr']:.4f} ({timings['base_eval_s']} s)", flush=True)
    cards = {}
    with tempfile.TemporaryDirectory(prefix="mlret-bench-") as tmp:
        for strategy in args.strategies.split(","):
            t = time.perf_counter()
            result = finetune(bench.index, bench.train_queries, out=Path(tmp) / strategy, negatives=strategy,
                              temperature=args.temperature, epochs=args.epochs, batch_size=args.batch_size,
                              seed=args.seed, show_progress_bar=False)
            timings[f"{strategy}_train_s"] = round(time.perf_counter() - t, 1)
            reports[strategy] = evaluate(str(result.out), bench.index, bench.eval_queries, name=strategy)
            cards[strategy] = {"train_loss": result.train_loss, "stats": result.stats, "config": result.config}
            print(f"{strategy}: MRR {reports[strategy]['overall']['mrr']:.4f} (train {timings[f'{strategy}_train_s']} s, "
                  f"loss {result.train_loss:.3f})", flush=True)
    summary = targets(reports, bench.train_languages, bench.zero_shot_languages)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "home-assistant-intents (English KB index; anchors in training languages)",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": {"index": len(bench.index), "train_queries": len(bench.train_queries),
                 "eval_queries": len(bench.eval_queries), "intents": len(bench.labels),
                 "train_languages": list(bench.train_languages), "zero_shot_languages": list(bench.zero_shot_languages)},
        "targets": summary, "timings": timings, "finetune": cards, "reports": reports,
    }
    (args.out / "quality_ha.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    md = [f"# Home Assistant intents: base vs fine-tuned (seed {args.seed}, {args.epochs} epoch(s))", "",
          (f"{payload['data']['index']} English index entries, {payload['data']['intents']} intents; "
          f"{payload['data']['train_queries']} training anchors in {', '.join(bench.train_languages)}; "
          f"{payload['data']['eval_queries']} held-out queries in English, the training languages and "
          f"{len(bench.zero_shot_languages)} zero-shot languages. Total time {timings['total_s']} s (CPU)."), "",
          report_markdown(reports), "", "## Targets", "", "```json", json.dumps(summary, indent=2), "```", ""]
    (args.out / "quality_ha.md").write_text("\n".join(md))
    plot_per_language(reports, args.out / "quality_ha.png")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
