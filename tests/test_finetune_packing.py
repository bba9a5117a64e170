"""Packed training forwards (distinct texts once, length-sorted chunks) give the padded forward's embeddings
and gradients on the bundled model, with columns preprocessed as the trainer does (prompts included)."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers.base.losses.merged_forward import embed_columns

from mlret_rag.finetune.packing import embed_columns_packed

ANCHORS = ["turn on the kitchen lights", "wie wird das Wetter morgen in Berlin", "turn on the kitchen lights",
           "hi"]
DOCUMENTS = [["lights on", "what is the weather tomorrow", "lights on", "set a timer for ten minutes"],
             ["hello", "lights on", "a much longer passage about the weather, the lights and the timers " * 6,
              "what is the weather tomorrow"]]


@pytest.fixture()
def model(encoder):
    st = encoder.sentence_transformer
    st.eval()  # no dropout, so both paths are deterministic
    yield st
    st.zero_grad(set_to_none=True)


def _columns(st) -> list[dict]:
    prompts = st.prompts
    query, document = prompts.get("query", ""), prompts.get("document", prompts.get("passage", ""))
    columns = [st.preprocess(ANCHORS, prompt=query)] + [st.preprocess(texts, prompt=document) for texts in DOCUMENTS]
    assert "prompt_length" in columns[0] and columns[0]["prompt_length"] != columns[1]["prompt_length"]
    return columns


def _loss_and_grads(st, embed) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    st.zero_grad(set_to_none=True)
    generator = torch.Generator().manual_seed(0)
    directions = [torch.randn(st.get_embedding_dimension(), generator=generator) for _ in range(3)]
    embeddings = embed(st, [dict(c) for c in _columns(st)])
    sum((e @ d).pow(3).sum() for e, d in zip(embeddings, directions)).backward()
    return [e.detach() for e in embeddings], [p.grad.clone() for p in st.parameters() if p.grad is not None]


def test_packed_columns_match_the_padded_forward_in_embeddings_and_gradients(model):
    padded, padded_grads = _loss_and_grads(model, embed_columns)
    packed, packed_grads = _loss_and_grads(model, embed_columns_packed)
    assert [e.shape for e in packed] == [e.shape for e in padded] == [(4, 384)] * 3
    for a, b in zip(padded, packed):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    assert len(packed_grads) == len(padded_grads) > 100
    scale = max(g.abs().max().item() for g in padded_grads)
    assert scale > 1e-3  # the test loss really reaches the weights
    assert max((a - b).abs().max().item() for a, b in zip(padded_grads, packed_grads)) < 1e-4 * scale


def test_a_repeated_text_is_embedded_once_and_returned_in_every_place(model):
    calls: list[int] = []
    handle = model[0].register_forward_hook(lambda module, args, output: calls.append(args[0]["input_ids"].shape[0]))
    try:
        with torch.no_grad():
            embeddings = embed_columns_packed(model, [dict(c) for c in _columns(model)])
    finally:
        handle.remove()
    distinct_rows = len(set(ANCHORS)) + len({t for texts in DOCUMENTS for t in texts})
    assert sum(calls) == distinct_rows < len(ANCHORS) + sum(map(len, DOCUMENTS))
    torch.testing.assert_close(embeddings[0][0], embeddings[0][2])
    torch.testing.assert_close(embeddings[1][0], embeddings[2][1])  # "lights on" in two candidate columns
    assert len(calls) > 2  # the long passage got a chunk of its own
