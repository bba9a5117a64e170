"""Frozen lower layers: the cached prefix gives the loss and gradients of the full forward, running only the
layers that learn, and a fine-tune with ``frozen_layers`` leaves those layers untouched."""

from __future__ import annotations

import pytest
import torch
from support import columns_and_labels, largest_difference, loss_and_grads

from mlret_rag import MultilingualEncoder
from mlret_rag.finetune import FinetuneConfig, LabelMaskedMNRLoss, finetune
from mlret_rag.finetune.frozen_prefix import FrozenPrefixCache, freeze_prefix


@pytest.fixture
def frozen_st():
    """A fresh bundled encoder (freezing changes it) with its embeddings and 8 lowest layers frozen."""
    st = MultilingualEncoder(backend="torch").sentence_transformer
    freeze_prefix(st, 8)
    return st


def _layer_calls(st) -> tuple[list[int], list]:
    calls = [0] * 12
    handles = [layer.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, layer in enumerate(st[0].model.encoder.layer)]
    return calls, handles


def test_the_cached_prefix_gives_the_full_forwards_loss_and_gradients(frozen_st):
    st = frozen_st
    st.train()  # dropout on in the upper layers; the same seed draws the same masks in both passes
    columns, labels = columns_and_labels(st)

    def seeded(loss: LabelMaskedMNRLoss):
        torch.manual_seed(3)
        return loss.forward(columns(), labels)

    cache = FrozenPrefixCache(st, 8)
    full, full_grads = loss_and_grads(st, lambda: seeded(LabelMaskedMNRLoss(st)))
    first, first_grads = loss_and_grads(st, lambda: seeded(LabelMaskedMNRLoss(st, encode=cache)))
    calls, handles = _layer_calls(st)
    try:
        again, again_grads = loss_and_grads(st, lambda: seeded(LabelMaskedMNRLoss(st, encode=cache)))
    finally:
        for handle in handles:
            handle.remove()
    assert calls[:8] == [0] * 8 and min(calls[8:]) >= 1  # every text cached: only the upper layers ran
    scale = max(g.abs().max().item() for g in full_grads)
    assert scale > 1e-4
    for loss, grads in ((first, first_grads), (again, again_grads)):
        assert loss == pytest.approx(full, rel=1e-5)
        assert largest_difference(grads, full_grads) < 1e-4 * scale
    trainable = [p.requires_grad for p in st.parameters()]
    assert all(g.abs().max() == 0 for g, t in zip(full_grads, trainable) if not t)  # nothing reaches the prefix
    assert cache.bytes > 0 and len(cache) == 2 + 3  # two anchors, three distinct documents


def test_a_full_cache_stores_nothing_more_and_stays_exact(frozen_st):
    st = frozen_st
    st.eval()
    columns, labels = columns_and_labels(st)
    unbounded = LabelMaskedMNRLoss(st, encode=FrozenPrefixCache(st, 8)).forward(columns(), labels).item()
    cache = FrozenPrefixCache(st, 8, max_bytes=0)
    assert LabelMaskedMNRLoss(st, encode=cache).forward(columns(), labels).item() == pytest.approx(unbounded, rel=1e-5)
    assert cache.bytes == 0 and len(cache) == 0


def test_freezing_every_layer_or_a_negative_count_is_refused():
    st = MultilingualEncoder(backend="torch").sentence_transformer
    with pytest.raises(ValueError, match="frozen_layers=12 leaves nothing to train: the model has 12 layers"):
        freeze_prefix(st, 12)
    with pytest.raises(ValueError, match="frozen_layers must be an integer >= 0"):
        FinetuneConfig(frozen_layers=-1)


@pytest.mark.slow
def test_a_passage_fine_tune_freezes_two_thirds_of_the_layers_and_propagates_no_label_by_default(tmp_path):
    from mlret_rag.datasets import build_passage_benchmark
    from mlret_rag.finetune import read_card

    bench = build_passage_benchmark(n_passages=20, train_languages=("es",), test_languages=("en",))
    base = dict(MultilingualEncoder(backend="torch").sentence_transformer.named_parameters())
    result = finetune(bench.kb, bench.train_queries, out=tmp_path / "m", max_steps=2, dev_share=0,
                      show_progress_bar=False)
    tuned = dict(MultilingualEncoder(tmp_path / "m", backend="torch").sentence_transformer.named_parameters())
    changed = {name for name, p in tuned.items() if not torch.equal(p, base[name])}
    upper = tuple(f".layer.{i}." for i in range(8, 12))
    assert changed and all(any(layer in name for layer in upper) for name in changed)
    assert result.config.frozen_layers == 8
    assert read_card(tmp_path / "m")["configuration"]["schedule"]["frozen_layers"] == 8
    assert result.config.pseudo_label_propagation is False  # measured on intent KBs only


def test_the_memory_estimate_keeps_activations_of_the_upper_layers_only_and_adds_the_cache():
    from mlret_rag.finetune.memory import estimate_peak_gb

    shape = (118_000_000, 21_000_000, 384, 12, 12, [32, 256, 256], 8)  # e5-small, a passage batch
    every_layer = estimate_peak_gb(*shape, loaded=True)
    upper_four = estimate_peak_gb(*shape, loaded=True, frozen_layers=8)
    optimiser = 4.0 * 3 * 21_000_000 / 1e9
    assert upper_four - optimiser == pytest.approx((every_layer - optimiser) * 4 / 12, rel=1e-6)
    assert estimate_peak_gb(*shape, loaded=True, frozen_layers=8, cache_bytes=1e9) == pytest.approx(upper_four + 1)
