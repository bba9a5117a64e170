"""METHOD.md behaviour 6: no code path depends on which languages appear — renaming every language code
(to made-up codes, or to none at all) changes nothing in the training data or the batches."""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from mlret_rag.finetune import (
    NegativeSampler,
    build_examples,
    centroid_similarity,
    language_batch_sampler,
    prepare_training_data,
)
from mlret_rag.kb import KBRecord, QueryRecord

KB = [KBRecord(id=f"k{l}{i}", text=f"entry {l} {i}", label=f"L{l}", lang="en") for l in range(5) for i in range(4)]
LANGS = ["de", "en", "hi-Latn", "sw", None]
QUERIES = [QueryRecord(f"q {n}", label=f"L{n % 5}", lang=LANGS[n % 4 if n % 7 else 4], source_id=f"k{n % 5}0")
           for n in range(40)]


def _run(rename: dict) -> tuple[list, list]:
    queries = [QueryRecord(q.text, q.label, rename[q.lang], q.relevant_ids, q.source_id) for q in QUERIES]
    kb = [KBRecord(r.id, r.text, r.label, rename[r.lang], r.metadata) for r in KB]
    data = prepare_training_data(kb, queries, seed=0)
    sim = centroid_similarity(np.random.default_rng(0).normal(size=(len(data.index), 6)), data.index_label_ids,
                              len(data.labels))
    sampler = NegativeSampler(data.index_label_ids, len(data.labels), strategy="weighted", similarity=sim,
                              temperature=0.1)
    examples, _ = build_examples(data.anchors, data.index, data.index_label_ids, sampler, seed=0)
    ds = Dataset.from_dict({"anchor": [e.anchor for e in examples]})
    batches = list(language_batch_sampler([e.lang for e in examples], one_language_per_batch=True)(
        ds, batch_size=3, drop_last=False, seed=0))
    return [(e.anchor, e.positive, e.negatives) for e in examples], batches


def test_renaming_languages_changes_nothing():
    identity = {lang: lang for lang in LANGS}
    made_up = {"de": "qq", "en": "zz-Zzzz", "hi-Latn": "x1", "sw": None, None: "de"}
    base = _run(identity)
    assert _run(made_up) == base
    no_langs = {lang: None for lang in LANGS}
    examples, batches = _run(no_langs)
    assert examples == base[0]  # the examples never looked at the language; only batch grouping can
    assert sorted(i for b in batches for i in b) == list(range(len(examples)))


def test_no_language_code_is_special_cased_in_the_package():
    import pathlib
    import re

    import mlret_rag.finetune as pkg

    for path in pathlib.Path(pkg.__file__).parent.glob("*.py"):
        source = path.read_text()
        assert not re.search(r"""lang\w*\s*(==|!=|in)\s*['"(\[{]""", source), path.name
