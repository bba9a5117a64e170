"""What ``pseudo_label_propagation`` adds to a fine-tune's time: one labelling round with and without it.

A fine-tune with the pool gives labels once (one labelling epoch, by default) and trains as long either
way, so the round is the only place propagation costs time. Home Assistant's pool of 2,000 questions and
the calibration queries of ``selftrain_ha.py``'s seed, the base model; the two kinds of round alternate,
``--repeats`` times each, in one process, and the medians are compared. Writes
``benchmarks/results/propagation_cost.json``.

    python benchmarks/propagation_cost.py [--seed 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _machine import cpu_description
from selftrain_ha import RESULTS, held_out_for_dev, label_ids, pool_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="the dev split's seed (1: propagation calibrates)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from mlret_rag import MultilingualEncoder
    from mlret_rag.finetune import PseudoLabeller

    bench, _, pool = pool_benchmark()
    held = held_out_for_dev(bench.train_queries, args.seed)
    calibration = [q for i, q in enumerate(bench.train_queries) if i not in held]  # every language calibrates
    _, ids = label_ids(bench.index)
    index_ids = [ids[r.label] for r in bench.index]
    encoder = MultilingualEncoder()

    def round_seconds(propagation: bool) -> tuple[float, dict]:
        labeller = PseudoLabeller(list(pool), [q.text for q in calibration], [(ids[q.label],) for q in calibration],
                                  [r.text for r in bench.index], index_ids, index_ids, False,
                                  propagation=propagation, dev_langs=[q.lang for q in calibration])
        start = time.perf_counter()
        _, report = labeller.round(encoder, 0)
        return time.perf_counter() - start, report

    round_seconds(False)  # warm-up: the first encode pays for loading
    seconds = {False: [], True: []}
    reports = {}
    for _ in range(args.repeats):
        for propagation in (False, True):
            took, reports[propagation] = round_seconds(propagation)
            seconds[propagation].append(round(took, 3))
    without, with_ = statistics.median(seconds[False]), statistics.median(seconds[True])
    result = {"seed": args.seed, "pool": len(pool), "calibration_queries": len(calibration), "cpu": cpu_description(),
              "round_seconds_without": seconds[False], "round_seconds_with": seconds[True],
              "median_without": without, "median_with": with_, "median_extra_seconds": round(with_ - without, 3),
              "labels_without": reports[False]["cleared"], "labels_with": reports[True]["cleared"],
              "propagated": reports[True]["propagated"]}
    print(json.dumps(result, indent=1))
    (RESULTS / "propagation_cost.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
