"""METHOD.md behaviour 4: weighted sampling draws labels more often the more similar they are to the anchor's;
temperature -> inf is uniform, -> 0 is hardest-only. Checked on a constructed label-similarity matrix."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mlret_rag.finetune import NegativeSampler, label_probabilities

# label 0 is the anchor; labels 1..4 are ever less similar to it
SIM = np.array([
    [1.0, 0.9, 0.7, 0.5, 0.3],
    [0.9, 1.0, 0.2, 0.2, 0.2],
    [0.7, 0.2, 1.0, 0.2, 0.2],
    [0.5, 0.2, 0.2, 1.0, 0.2],
    [0.3, 0.2, 0.2, 0.2, 1.0],
])
LABELS = [lab for lab in range(5) for _ in range(4)]  # 4 index records per label


BIG = [lab for lab in range(5) for _ in range(200)]  # many records per label: distinct-record retries are rare


def _draw_frequencies(temperature: float, n: int = 6000) -> np.ndarray:
    sampler = NegativeSampler(BIG, 5, strategy="weighted", similarity=SIM, temperature=temperature)
    rng = np.random.default_rng(0)
    counts = Counter()
    for _ in range(n // 3):
        negs = sampler.sample(0, 4, rng)[1:]  # skip the uniform first negative
        counts.update(BIG[i] for i in negs)
    freq = np.array([counts[lab] for lab in range(5)], dtype=float)
    return freq / freq.sum()


def test_draw_frequency_rises_with_label_similarity_and_matches_the_softmax():
    freq = _draw_frequencies(0.2)
    assert freq[0] == 0  # never the anchor's label
    assert freq[1] > freq[2] > freq[3] > freq[4] > 0
    expected = np.exp(SIM[0, 1:] / 0.2) / np.exp(SIM[0, 1:] / 0.2).sum()
    np.testing.assert_allclose(freq[1:], expected, atol=0.02)


def test_temperature_limits_uniform_and_hardest_only():
    available = np.ones(5, bool)
    np.testing.assert_allclose(label_probabilities(SIM[0], 0, available, float("inf")), [0, .25, .25, .25, .25])
    np.testing.assert_allclose(label_probabilities(SIM[0], 0, available, 1e6), [0, .25, .25, .25, .25], atol=1e-5)
    np.testing.assert_allclose(label_probabilities(SIM[0], 0, available, 0.0), [0, 1, 0, 0, 0])
    np.testing.assert_allclose(label_probabilities(SIM[0], 0, available, 1e-3), [0, 1, 0, 0, 0], atol=1e-12)
    hi, lo = _draw_frequencies(50.0), _draw_frequencies(0.01)
    np.testing.assert_allclose(hi[1:], 0.25, atol=0.03)
    assert lo[1] == 1.0


def test_the_first_negative_is_uniform_over_other_label_records():
    sampler = NegativeSampler(LABELS, 5, strategy="weighted", similarity=SIM, temperature=0.01)
    rng = np.random.default_rng(3)
    firsts = Counter(LABELS[sampler.sample(0, 3, rng)[0]] for _ in range(4000))
    assert 0 not in firsts
    np.testing.assert_allclose([firsts[lab] / 4000 for lab in range(1, 5)], 0.25, atol=0.03)


def test_standard_sampling_is_uniform_over_other_label_records():
    sampler = NegativeSampler(LABELS, 5, strategy="standard")
    rng = np.random.default_rng(0)
    counts = Counter(i for _ in range(3000) for i in sampler.sample(2, 3, rng))
    assert all(LABELS[i] != 2 for i in counts)
    freq = np.array([counts[i] for i in range(20) if LABELS[i] != 2]) / sum(counts.values())
    np.testing.assert_allclose(freq, 1 / 16, atol=0.01)


def test_labels_without_index_records_are_never_drawn():
    labels = [0, 0, 1, 1, 3, 3]  # label 2 and 4 have no index record
    sampler = NegativeSampler(labels, 5, strategy="weighted", similarity=SIM, temperature=0.5)
    rng = np.random.default_rng(0)
    drawn = {labels[i] for _ in range(500) for i in sampler.sample(0, 3, rng)}
    assert drawn == {1, 3}


@pytest.mark.parametrize("kwargs, match", [
    ({"strategy": "random"}, "negatives must be one of"),
    ({"strategy": "weighted", "similarity": None}, "label similarity"),
    ({"strategy": "weighted", "similarity": SIM, "temperature": -1}, "temperature"),
])
def test_bad_sampler_options_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NegativeSampler(LABELS, 5, **kwargs)
