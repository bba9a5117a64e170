"""Encoding speed of MultilingualEncoder against plain SentenceTransformer on the same folder.

Measures, on this machine: sentences/s for short queries and ~100-token passages (same batch size and
texts, runs interleaved, medians and the per-run ratio), peak RSS, first-use conversion time of the bundled
model and cold load time of the cached model. Prints a table and saves ``results/encode_speed.json``.

Backends (``--part backends``): for torch, onnx and onnx-int8, each in its own process, cold load,
single-query latency p50/p95, batch throughput on short texts and ~100-token passages and peak RSS; then
MRR per language group on the Home Assistant intent benchmark (20 held-out queries per language and
intent, ~22k queries) for each backend and for int8 query vectors searched against fp32 document vectors
(a collection built with ``onnx`` queried with ``onnx-int8``); then the same MRR table for a model
fine-tuned on the benchmark's training anchors. Saves ``results/encode_backends.json``.

    .venv/bin/python benchmarks/encode_speed.py [--part all|wrapper|backends] [--runs 5] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlret_rag import BACKENDS  # lazy package: loads nothing, reads MLRET_HOME only when used

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PROBE = REPO / "tests" / "data" / "crosslingual_probe.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLRET_HOME", str(REPO / ".mlret-cache"))


def texts() -> tuple[list[str], list[str]]:
    """Short multilingual queries, and ~100-token passages made of twelve sentences of one language."""
    probe = json.loads(PROBE.read_text())
    short = [s for sentences in probe.values() for s in sentences]
    passages = [" ".join(s[i : i + 12]) for s in probe.values() for i in range(0, len(s) - 11, 3)]
    return short, passages


def _child(code: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line as its last output."""
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


_LOAD = """
import json, resource, time
t = time.perf_counter()
from mlret_rag import MultilingualEncoder
e = MultilingualEncoder(backend={backend!r})
loaded = time.perf_counter() - t
e.encode_queries(["warm-up"])
print(json.dumps({"load_s": loaded}))
"""

_RSS = """
import json, resource, sys
sys.path.insert(0, {bench!r})
from encode_speed import texts
from mlret_rag import MultilingualEncoder
short, passages = texts()
e = MultilingualEncoder(batch_size={bs}, backend="torch")
e.encode_documents(passages); e.encode_queries(short)
print(json.dumps({{"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

_DEFAULT_BACKEND = """
import json
from mlret_rag.encoder import default_backend
print(json.dumps({"backend": default_backend()}))
"""

_CONVERT = """
import json, time
t = time.perf_counter()
from mlret_rag.bundled import ensure_bundled_model
ensure_bundled_model()
print(json.dumps({"convert_s": time.perf_counter() - t}))
"""


def throughput(runs: int, batch_size: int) -> dict:
    """Interleaved runs of wrapper and plain model on identical inputs; medians and per-run ratios."""
    from sentence_transformers import SentenceTransformer

    from mlret_rag import MultilingualEncoder

    # The wrapper's own cost is measured on the same engine as the plain model: PyTorch.
    encoder = MultilingualEncoder(batch_size=batch_size, backend="torch")
    plain = SentenceTransformer(str(encoder.model_path), device="cpu")
    short, passages = texts()
    result = {}
    for name, data, ours, theirs in (
        ("short_queries", short, encoder.encode_queries,
         lambda x: plain.encode_query(x, batch_size=batch_size, normalize_embeddings=True)),
        ("passages_100tok", passages, encoder.encode_documents,
         lambda x: plain.encode_document(x, batch_size=batch_size, normalize_embeddings=True)),
    ):
        ours(data[:batch_size]), theirs(data[:batch_size])  # warm-up
        wrapper_rates, plain_rates = [], []
        for _ in range(runs):
            for fn, rates in ((ours, wrapper_rates), (theirs, plain_rates)):
                t = time.perf_counter()
                fn(data)
                rates.append(len(data) / (time.perf_counter() - t))
        ratios = [w / p for w, p in zip(wrapper_rates, plain_rates)]
        tokens = plain.preprocess(data[:50])["attention_mask"].sum(dim=1).float().mean().item()
        result[name] = {
            "n_texts": len(data),
            "mean_tokens": round(tokens, 1),
            "wrapper_sent_per_s": round(statistics.median(wrapper_rates), 1),
            "plain_sent_per_s": round(statistics.median(plain_rates), 1),
            "ratio_median": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
        }
    return result


_BACKEND = """
import json, resource, statistics, sys, time
import numpy as np
sys.path.insert(0, {bench!r})
t = time.perf_counter()
from mlret_rag import MultilingualEncoder
e = MultilingualEncoder(batch_size={bs}, backend={backend!r})
out = {{"load_s": time.perf_counter() - t}}
from encode_speed import texts
short, passages = texts()
e.encode_queries(short[:{bs}])  # warm-up
lat = []
for i in range(200):
    q = [short[i % len(short)]]
    t = time.perf_counter(); e.encode_queries(q); lat.append(time.perf_counter() - t)
out["single_query_ms_p50"] = 1000 * float(np.percentile(lat, 50))
out["single_query_ms_p95"] = 1000 * float(np.percentile(lat, 95))
for name, data, fn in (("short_queries", short, e.encode_queries), ("passages_100tok", passages, e.encode_documents)):
    rates = []
    for _ in range({runs}):
        t = time.perf_counter(); fn(data); rates.append(len(data) / (time.perf_counter() - t))
    out[name + "_sent_per_s"] = statistics.median(rates)
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from mlret_rag.datasets import build_intent_benchmark
bench = build_intent_benchmark(seed=0, eval_per_intent={epi})
np.savez({vectors!r}, docs=e.encode_documents([r.text for r in bench.index]),
         queries=e.encode_queries([q.text for q in bench.eval_queries]))
print(json.dumps(out))
"""


def backends(runs: int, batch_size: int, eval_per_intent: int, finetune_steps: int) -> dict:
    """Speed, memory and intent-benchmark MRR per backend (each in a fresh process), then MRR per backend
    of a model fine-tuned on the benchmark's training split."""
    import numpy as np

    from mlret_rag.datasets import build_intent_benchmark

    _child(_CONVERT)
    for backend in BACKENDS[1:]:  # export once, outside the timed loads
        _child(_LOAD.replace("{backend!r}", repr(backend)))
    bench = build_intent_benchmark(seed=0, eval_per_intent=eval_per_intent)
    speed, vectors = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in BACKENDS:
            path = os.path.join(tmp, f"{backend}.npz")
            code = _BACKEND.format(bench=str(HERE), bs=batch_size, backend=backend, runs=runs, vectors=path,
                                   epi=eval_per_intent)
            speed[backend] = {k: round(v, 2) for k, v in _child(code).items()}
            with np.load(path) as data:
                vectors[backend] = (data["docs"], data["queries"])
        bundled = mrr_by_backend(bench, vectors)
        tuned = finetuned_mrr_by_backend(bench, Path(tmp) / "tuned", finetune_steps)
    return {
        "speed": speed,
        "speedup_vs_torch": {
            b: {k: round(speed[b][k] / speed["torch"][k], 2) for k in ("short_queries_sent_per_s",
                                                                        "passages_100tok_sent_per_s")}
            for b in BACKENDS[1:]
        },
        **bundled,
        "finetuned": tuned,
        "onnx_export": _export_record(),
    }


def finetuned_mrr_by_backend(bench, out: Path, max_steps: int) -> dict:
    """Fine-tune the bundled model on the benchmark's anchors (weighted negatives), then MRR per backend."""
    from mlret_rag import MultilingualEncoder, finetune

    started = time.perf_counter()
    # pinned to the schedule the README's backend figures were measured with (before the dev-chosen defaults)
    finetune(bench.index, bench.train_queries, out=out, max_steps=max_steps, seed=0, learning_rate=2e-5,
             dev_share=0, show_progress_bar=False)
    train_s = time.perf_counter() - started
    vectors, export_s = {}, {}
    for backend in BACKENDS:
        started = time.perf_counter()
        encoder = MultilingualEncoder(str(out), backend=backend, show_progress_bar=False)
        export_s[backend] = round(time.perf_counter() - started, 1)  # first use exports the ONNX files
        vectors[backend] = (encoder.encode_documents([r.text for r in bench.index]),
                            encoder.encode_queries([q.text for q in bench.eval_queries]))
    return {"max_steps": max_steps, "train_s": round(train_s, 1), "load_incl_export_s": export_s,
            **mrr_by_backend(bench, vectors)}


def mrr_by_backend(bench, vectors: dict) -> dict:
    """MRR per language group for each backend's (docs, queries) vectors, ratios to onnx fp32 with paired
    bootstrap 95 % intervals, the worst single language, and int8 queries searched against fp32 docs."""
    import numpy as np

    from mlret_rag.evaluate import rank, relevance_matrix, score_rankings

    relevance = relevance_matrix(bench.index, bench.eval_queries)
    groups = bench.language_groups
    query_groups = np.array([groups[q.lang] for q in bench.eval_queries])
    langs = np.array([q.lang for q in bench.eval_queries])
    combos = {b: vectors[b] for b in BACKENDS}
    combos["onnx-int8 queries vs onnx docs"] = (vectors["onnx"][0], vectors["onnx-int8"][1])
    mrr: dict[str, dict] = {}
    reciprocal_ranks = {}
    for name, (docs, queries) in combos.items():
        rr = reciprocal_ranks[name] = score_rankings(rank(queries, docs), relevance)["mrr"]
        by_group = {g: round(float(rr[query_groups == g].mean()), 4) for g in sorted(set(query_groups))}
        mrr[name] = {"overall": round(float(rr.mean()), 4), **by_group,
                     "per_language": {lang: float(rr[langs == lang].mean()) for lang in sorted(set(langs))}}
    base = mrr["onnx"]
    ratios = {
        name: {g: round(mrr[name][g] / base[g], 4) for g in base if g != "per_language"}
        for name in mrr if name != "onnx"
    }
    worst = {
        name: min((mrr[name]["per_language"][lang] / base["per_language"][lang], lang)
                   for lang in base["per_language"] if base["per_language"][lang] > 0)
        for name in mrr if name != "onnx"
    }
    # Paired bootstrap over queries: how much of a group's ratio is noise of a few hundred queries.
    rng = np.random.default_rng(0)
    ci95 = {}
    for name in ratios:
        ci95[name] = {}
        for g in sorted(set(query_groups)):
            a, b = reciprocal_ranks[name][query_groups == g], reciprocal_ranks["onnx"][query_groups == g]
            draws = rng.integers(0, len(a), size=(1000, len(a)))
            boot = a[draws].mean(axis=1) / np.clip(b[draws].mean(axis=1), 1e-12, None)
            ci95[name][g] = [round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)]
    cos = {name: float((combos[name][1] * vectors["torch"][1]).sum(axis=1).min()) for name in BACKENDS[1:]}
    return {
        "mrr": {name: {k: v for k, v in row.items() if k != "per_language"} for name, row in mrr.items()},
        "mrr_ratio_vs_onnx_fp32": ratios,
        "mrr_ratio_ci95_paired_bootstrap": ci95,
        "worst_language_ratio_vs_onnx_fp32": {n: {"ratio": round(r, 4), "lang": lang} for n, (r, lang) in worst.items()},
        "min_query_cosine_vs_torch": {n: round(c, 5) for n, c in cos.items()},
        "benchmark": {"n_index": len(bench.index), "n_queries": len(bench.eval_queries),
                      "queries_per_group": {g: int((query_groups == g).sum()) for g in sorted(set(query_groups))}},
    }


def _export_record() -> dict:
    from mlret_rag import MultilingualEncoder

    manifest = MultilingualEncoder(backend="onnx-int8").engine_info.manifest  # lists the fp32 file too
    return {name: {"seconds": f.get("seconds"), "size_mb": round(f["size"] / 2**20, 1)}
            for name, f in manifest.get("files", {}).items()}


def print_backends(report: dict) -> None:
    speed = report["speed"]
    print(f"{'backend':<12}{'load s':>8}{'p50 ms':>8}{'p95 ms':>8}{'short/s':>9}{'pass/s':>8}{'RSS MB':>8}")
    for b, row in speed.items():
        print(f"{b:<12}{row['load_s']:>8}{row['single_query_ms_p50']:>8}{row['single_query_ms_p95']:>8}"
              f"{row['short_queries_sent_per_s']:>9}{row['passages_100tok_sent_per_s']:>8}{row['peak_rss_mb']:>8}")
    for title, part in (("bundled", report), ("fine-tuned", report["finetuned"])):
        groups = [g for g in next(iter(part["mrr"].values())) if g != "overall"]
        print(f"{'MRR, ' + title:<32}{'overall':>9}" + "".join(f"{g:>19}" for g in groups))
        for name, row in part["mrr"].items():
            ratio = part["mrr_ratio_vs_onnx_fp32"].get(name, {})
            print(f"{name:<32}{row['overall']:>9}" + "".join(
                f"{row[g]:>11} ({ratio.get(g, 1.0):.3f})" for g in groups))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "encode_speed.json")
    parser.add_argument("--backends-out", type=Path, default=HERE / "results" / "encode_backends.json")
    parser.add_argument("--part", choices=("all", "wrapper", "backends"), default="all")
    parser.add_argument("--eval-per-intent", type=int, default=20,
                        help="held-out benchmark queries per (language, intent) for the backend MRR")
    parser.add_argument("--finetune-steps", type=int, default=60, help="training steps of the fine-tuned model")
    args = parser.parse_args()
    if args.part in ("all", "backends"):
        report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                  "batch_size": args.batch_size, "runs": args.runs,
                  **backends(args.runs, args.batch_size, args.eval_per_intent, args.finetune_steps)}
        args.backends_out.parent.mkdir(parents=True, exist_ok=True)
        args.backends_out.write_text(json.dumps(report, indent=2) + "\n")
        print_backends(report)
        print(f"saved {args.backends_out}")
    if args.part == "backends":
        return

    with tempfile.TemporaryDirectory() as home:
        convert = _child(_CONVERT, env=dict(os.environ, MLRET_HOME=home))
    _child(_CONVERT)  # make sure the shared cache exists before timing cold loads
    _child(_LOAD.replace("{backend!r}", "None"))  # first load may export ONNX files once
    loads = [_child(_LOAD.replace("{backend!r}", "'torch'"))["load_s"] for _ in range(3)]
    default_loads = [_child(_LOAD.replace("{backend!r}", "None"))["load_s"] for _ in range(3)]
    rss = _child(_RSS.format(bench=str(HERE), bs=args.batch_size))
    speed = throughput(args.runs, args.batch_size)

    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "batch_size": args.batch_size,
        "runs": args.runs,
        "first_use_conversion_s": round(convert["convert_s"], 2),
        "cached_cold_load_s_median": round(statistics.median(loads), 2),
        "cached_cold_load_s": [round(x, 2) for x in loads],
        "cached_cold_load_default_backend_s_median": round(statistics.median(default_loads), 2),
        "default_backend": _child(_DEFAULT_BACKEND)["backend"],
        "peak_rss_mb": round(rss["peak_rss_mb"], 1),
        "throughput": speed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"first-use conversion: {report['first_use_conversion_s']} s")
    print(f"cold load (cached, incl. imports), torch: {report['cached_cold_load_s_median']} s  {loads}")
    print(f"cold load (cached, incl. imports), default backend {report['default_backend']}: "
          f"{report['cached_cold_load_default_backend_s_median']} s  {default_loads}")
    print(f"peak RSS: {report['peak_rss_mb']} MB")
    print(f"{'texts':<18}{'wrapper/s':>12}{'plain/s':>10}{'ratio':>8}")
    for name, row in speed.items():
        print(f"{name:<18}{row['wrapper_sent_per_s']:>12}{row['plain_sent_per_s']:>10}{row['ratio_median']:>8}")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
