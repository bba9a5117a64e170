"""The fine-tune schedule on Home Assistant intents: ``finetune`` with no tuning flags, across seeds.

English KB (index part searched), training anchors in 8 languages, held-out queries in English, the
training languages and 40 zero-shot languages (4 per language and intent, so most languages have
>= 100 queries). Each run is ``finetune(kb, queries, out=..., seed=s)`` plus the options of ``RUNS``:
the dev split, epoch selection and early stopping are the library's defaults. Reports MRR per language
group against the base model, the issue-10 targets, the dev curve and the chosen epoch, and the
languages (>= 100 queries) that lose more than 2 points. Writes ``benchmarks/results/finetune_ha.{json,md,png}``.

    python benchmarks/finetune_ha.py [--seeds 0,1,2] [--runs default,standard] [--append]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results"
RUNS: dict[str, tuple[dict, str]] = {
    "default": ({}, "no tuning flags: weighted negatives, lr 5e-5, up to 5 epochs chosen on a 15 % dev split"),
    "standard": ({"negatives": "standard"}, "the same with uniform negatives"),
    "interpolate": ({"interpolate": True}, "the default plus a base/tuned weight mix chosen on dev"),
    "old-default": ({"epochs": 1, "learning_rate": 2e-5, "dev_share": 0}, "the previous default: 1 epoch, lr 2e-5"),
}
MIN_QUERIES = 100


def groups(report: dict, bench_groups: dict) -> dict:
    """Mean MRR per language group (pivot, train, zero-shot incl. variants) and overall."""
    per = report["per_language"]
    out = {"overall": report["overall"]["mrr"], "en": per["en"]["mrr"]}
    for name, members in (("train", ("train",)), ("unseen", ("zero-shot", "zero-shot-variant"))):
        vals = [per[lang]["mrr"] for lang, g in bench_groups.items() if g in members and lang in per]
        out[name] = sum(vals) / len(vals)
    non_en = [m["mrr"] for lang, m in per.items() if lang != "en"]
    out["non_en"] = sum(non_en) / len(non_en)
    return {k: round(v, 4) for k, v in out.items()}


def losers(base: dict, tuned: dict, points: float = 0.02) -> list:
    """Languages (>= MIN_QUERIES queries) whose MRR under ``tuned`` is more than ``points`` below ``base``."""
    rows = []
    for lang, m in tuned["per_language"].items():
        b = base["per_language"][lang]
        if m["n_queries"] >= MIN_QUERIES and m["mrr"] < b["mrr"] - points:
            rows.append({"lang": lang, "n": m["n_queries"], "delta": round(m["mrr"] - b["mrr"], 4)})
    return sorted(rows, key=lambda r: r["delta"])


def render(payload: dict, out: Path) -> None:
    from mlret_rag.evaluate import plot_per_language

    base_g = payload["base_groups"]
    lines = ["# Fine-tune schedule on Home Assistant intents", "",
             (f"{payload['data']['index']} English KB entries, {payload['data']['intents']} intents, "
              f"{payload['data']['train_queries']} training queries in {', '.join(payload['data']['train_languages'])} "
              f"(the library holds 15 % of them out as dev), {payload['data']['eval_queries']} held-out queries in "
              f"{payload['data']['languages']} languages; seeds {payload['seeds']}. 2-core CPU; `load` is the 15-minute "
              "load average when the run ended (about 2 for a run alone; '–': not recorded, an early shared run)."),
             "", "| run | seed | overall | en | train langs | unseen langs | non-en | chosen epoch | dev curve | train s | s/step | load |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
             (f"| base | – | {base_g['overall']:.4f} | {base_g['en']:.4f} | {base_g['train']:.4f} | {base_g['unseen']:.4f} "
             f"| {base_g['non_en']:.4f} | – | – | – |")]
    for r in payload["runs"]:
        g = r["groups"]
        curve = " ".join(f"{p['dev_score']:.3f}" for p in r["selection"].get("curve", []))
        lines.append(f"| {r['run']} | {r['seed']} | {g['overall']:.4f} | {g['en']:.4f} | {g['train']:.4f} | "
                     f"{g['unseen']:.4f} | {g['non_en']:.4f} | {r['selection'].get('chosen_epoch', '–')} | {curve} | "
                     f"{r['seconds']:.0f} | {r['selection'].get('seconds_per_step', '–')} | {r.get('load_avg_15min', '–')} |")
    lines += ["", "## Means over seeds, and the targets (issue 10)", "",
              "| run | seeds | overall | en − base | train − base | unseen − base | median train s |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in payload["means"].items():
        lines.append(f"| {name} | {m['seeds']} | {m['overall']:.4f} ± {m['overall_sd']:.4f} | {m['en_delta']:+.4f} | "
                     f"{m['train_delta']:+.4f} | {m['unseen_delta']:+.4f} | {m['median_seconds']:.0f} |")
    lines += ["", *payload["verdicts"], "", "## Languages (>= 100 queries) losing more than 2 MRR points", ""]
    for r in payload["runs"]:
        lose = ", ".join(f"{x['lang']} {x['delta']:+.3f} (n={x['n']})" for x in r["losers"]) or "none"
        lines.append(f"* {r['run']} seed {r['seed']}: {lose}")
    (out / "finetune_ha.md").write_text("\n".join(lines) + "\n")
    shown = {"base": payload["base"]}
    for r in payload["runs"]:
        if r["seed"] == payload["seeds"][0]:
            shown[r["run"]] = r["report"]
    plot_per_language(shown, out / "finetune_ha.png", title="Home Assistant intents: MRR per language, fine-tune defaults")


def summarise(payload: dict) -> None:
    base = payload["base_groups"]
    means, verdicts = {}, []
    for name in dict.fromkeys(r["run"] for r in payload["runs"]):
        rows = [r for r in payload["runs"] if r["run"] == name]
        def g(key: str, rows: list = rows) -> list:
            return [r["groups"][key] for r in rows]

        means[name] = {
            "seeds": len(rows), "overall": statistics.mean(g("overall")),
            "overall_sd": statistics.stdev(g("overall")) if len(rows) > 1 else 0.0,
            "en_delta": statistics.mean(g("en")) - base["en"], "train_delta": statistics.mean(g("train")) - base["train"],
            "unseen_delta": statistics.mean(g("unseen")) - base["unseen"],
            "median_seconds": statistics.median(r["seconds"] for r in rows),
        }
    if "default" in means:
        m = means["default"]
        ok = lambda flag: "**met**" if flag else "**missed**"
        verdicts += [
            f"* overall MRR >= 0.75: {ok(m['overall'] >= 0.75)} ({m['overall']:.4f}, mean of {m['seeds']} seeds)",
            f"* trained languages >= base + 0.15: {ok(m['train_delta'] >= 0.15)} ({m['train_delta']:+.4f})",
            f"* unseen languages >= base + 0.08: {ok(m['unseen_delta'] >= 0.08)} ({m['unseen_delta']:+.4f})",
            f"* English not below base: {ok(m['en_delta'] >= 0)} ({m['en_delta']:+.4f})",
            f"* <= 10 minutes: {ok(m['median_seconds'] <= 600)} (median {m['median_seconds']:.0f} s on the 2-core CPU; see the load column)",
        ]
        if "standard" in means:
            diffs = [a["groups"]["overall"] - b["groups"]["overall"] for a in payload["runs"] if a["run"] == "default"
                     for b in payload["runs"] if b["run"] == "standard" and b["seed"] == a["seed"]]
            verdicts.append("* weighted (default) - standard, overall MRR per seed: "
                            + ", ".join(f"{d:+.4f}" for d in diffs) + f" (mean {statistics.mean(diffs):+.4f})")
    payload["means"], payload["verdicts"] = means, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", default="default,standard")
    parser.add_argument("--eval-per-intent", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--append", action="store_true", help="add these seeds/runs to the saved results")
    args = parser.parse_args()
    if args.render_only:
        payload = json.loads((args.out / "finetune_ha.json").read_text())
        summarise(payload)
        render(payload, args.out)
        return

    from mlret_rag import MultilingualEncoder
    from mlret_rag.datasets.home_assistant import build_intent_benchmark
    from mlret_rag.evaluate import evaluate
    from mlret_rag.finetune import finetune

    bench = build_intent_benchmark(kb_per_intent=20, train_per_intent=3, eval_per_intent=args.eval_per_intent, seed=0)
    bench_groups = bench.language_groups
    base = evaluate(MultilingualEncoder(), bench.index, bench.eval_queries, name="base")
    payload = {
        "benchmark": "home-assistant-intents, English KB", "seeds": [int(s) for s in args.seeds.split(",")],
        "data": {"index": len(bench.index), "intents": len(bench.labels), "train_queries": len(bench.train_queries),
                 "eval_queries": len(bench.eval_queries), "train_languages": list(bench.train_languages),
                 "languages": len(base["per_language"])},
        "options": {n: RUNS[n][0] for n in args.runs.split(",")}, "what": {n: RUNS[n][1] for n in args.runs.split(",")},
        "base": base, "base_groups": groups(base, bench_groups), "runs": [],
    }
    if args.append and (args.out / "finetune_ha.json").exists():
        saved = json.loads((args.out / "finetune_ha.json").read_text())
        fresh = {(name, seed) for seed in payload["seeds"] for name in args.runs.split(",")}
        payload["runs"] = [r for r in saved["runs"] if (r["run"], r["seed"]) not in fresh]
        payload["seeds"] = sorted({*saved["seeds"], *payload["seeds"]})
        payload["options"] = {**saved["options"], **payload["options"]}
        payload["what"] = {**saved["what"], **payload["what"]}
    todo = [int(s) for s in args.seeds.split(",")]
    print("base", payload["base_groups"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in todo:
        for name in args.runs.split(","):
            with tempfile.TemporaryDirectory(prefix="mlret-ftha-") as tmp:
                t = time.perf_counter()
                result = finetune(bench.index, bench.train_queries, out=Path(tmp) / "m", seed=seed,
                                  show_progress_bar=False, **RUNS[name][0])
                seconds = time.perf_counter() - t
                report = evaluate(MultilingualEncoder(str(result.out)), bench.index, bench.eval_queries, name=name)
            row = {"run": name, "seed": seed, "seconds": round(seconds, 1), "groups": groups(report, bench_groups),
                   "losers": losers(base, report), "selection": result.selection, "report": report,
                   "train_loss": result.train_loss,
                   "load_avg_15min": round(os.getloadavg()[2], 2)}
            payload["runs"].append(row)
            print(name, seed, row["groups"], "epoch", result.selection.get("chosen_epoch"), f"{seconds:.0f}s", flush=True)
            summarise(payload)
            (args.out / "finetune_ha.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
            render(payload, args.out)
    print("\n".join(payload["verdicts"]))


if __name__ == "__main__":
    main()
