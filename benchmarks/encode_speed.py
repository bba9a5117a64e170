"""Encoding speed of MultilingualEncoder against plain SentenceTransformer on the same folder.

Measures, on this machine: sentences/s for short queries and ~100-token passages (same batch size and
texts, runs interleaved, medians and the per-run ratio), peak RSS, first-use conversion time of the bundled
model and cold load time of the cached model. Prints a table and saves ``results/encode_speed.json``.

    .venv/bin/python benchmarks/encode_speed.py [--runs 5] [--batch-size 32]
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PROBE = REPO / "tests" / "data" / "crosslingual_probe.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLRET_HOME", str(REPO / ".mlret-cache"))


def texts() -> tuple[list[str], list[str]]:
    """Short multilingual queries, and ~100-token passages made of six sentences of one language."""
    probe = json.loads(PROBE.read_text())
    short = [s for sentences in probe.values() for s in sentences]
    passages = [" ".join(s[i : i + 6]) for s in probe.values() for i in range(0, len(s), 3)]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "encode_speed.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        convert = _child(_CONVERT, env=dict(os.environ, MLRET_HOME=home))
    _child(_CONVERT)  # make sure the shared cache exists before timing cold loads
    _child(_LOAD.replace("{backend!r}", "None"))  # first load may export ONNX files once
    loads = [_child(_LOAD.replace("{backend!r}", "'torch'"))["load_s"] for _ in range(3)]
    rss = _child(_RSS.format(bench=str(HERE), bs=args.batch_size))
    speed = throughput(args.runs, args.batch_size)

    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "batch_size": args.batch_size,
        "runs": args.runs,
        "first_use_conversion_s": round(convert["convert_s"], 2),
        "cached_cold_load_s_median": round(statistics.median(loads), 2),
        "cached_cold_load_s": [round(x, 2) for x in loads],
        "peak_rss_mb": round(rss["peak_rss_mb"], 1),
        "throughput": speed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"first-use conversion: {report['first_use_conversion_s']} s")
    print(f"cold load (cached, incl. imports): {report['cached_cold_load_s_median']} s  {loads}")
    print(f"peak RSS: {report['peak_rss_mb']} MB")
    print(f"{'texts':<18}{'wrapper/s':>12}{'plain/s':>10}{'ratio':>8}")
    for name, row in speed.items():
        print(f"{name:<18}{row['wrapper_sent_per_s']:>12}{row['plain_sent_per_s']:>10}{row['ratio_median']:>8}")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
