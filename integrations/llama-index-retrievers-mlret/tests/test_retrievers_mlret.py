"""MLRetRetriever: NodeWithScore with KB ids and the core's cosine, filters, async, RetrieverEvaluator."""

from __future__ import annotations

import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.evaluation import RetrieverEvaluator
from llama_index.core.schema import NodeWithScore
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters
from llama_index.retrievers.mlret import MLRetRetriever


def test_nodes_carry_kb_id_label_and_core_cosine(core_retriever):
    retriever = MLRetRetriever(core_retriever, similarity_top_k=3)
    assert isinstance(retriever, BaseRetriever)
    query = "¿Cuándo recibo el reembolso?"
    nodes = retriever.retrieve(query)
    hits = core_retriever.retrieve(query, k=3)
    assert all(isinstance(n, NodeWithScore) for n in nodes)
    assert [n.node.node_id for n in nodes] == [h.id for h in hits]
    assert [n.score for n in nodes] == [h.score for h in hits]
    assert nodes[0].node.node_id == "refund-1"
    assert nodes[0].node.metadata["label"] == "refund" and nodes[0].node.metadata["dept"] == "billing"
    assert nodes[0].node.get_content() == hits[0].text


def test_metadata_filters(core_retriever):
    query = "Wie setze ich mein Passwort zurück?"
    only_billing = MetadataFilters(filters=[MetadataFilter(key="dept", value="billing")])
    nodes = MLRetRetriever(core_retriever, similarity_top_k=5, filters=only_billing).retrieve(query)
    assert {n.node.node_id for n in nodes} == {"refund-1", "refund-2"}
    two_labels = MetadataFilters(
        filters=[MetadataFilter(key="label", value=["track_order", "refund"], operator=FilterOperator.IN)]
    )
    nodes = MLRetRetriever(core_retriever, similarity_top_k=10, filters=two_labels).retrieve(query)
    assert len(nodes) == 4 and {n.node.metadata["label"] for n in nodes} == {"track_order", "refund"}


async def test_async_equals_sync(core_retriever):
    retriever = MLRetRetriever(core_retriever, similarity_top_k=2)
    sync = retriever.retrieve("Où est ma commande ?")
    asynced = await retriever.aretrieve("Où est ma commande ?")
    assert [(n.node.node_id, n.score) for n in asynced] == [(n.node.node_id, n.score) for n in sync]


def test_accepts_a_store_and_names_bad_arguments(core_retriever):
    assert len(MLRetRetriever(core_retriever.store, similarity_top_k=2).retrieve("refund")) == 2
    with pytest.raises(TypeError, match="MultilingualRetriever or a ChromaStore"):
        MLRetRetriever("not a retriever")
    with pytest.raises(ValueError, match="similarity_top_k"):
        MLRetRetriever(core_retriever, similarity_top_k=0)
    bad = MetadataFilters(filters=[MetadataFilter(key="x", value="y", operator=FilterOperator.CONTAINS)])
    with pytest.raises(ValueError, match="'contains'"):
        MLRetRetriever(core_retriever, filters=bad)


def test_retriever_evaluator_runs(core_retriever, questions):
    retriever = MLRetRetriever(core_retriever, similarity_top_k=3)
    evaluator = RetrieverEvaluator.from_metric_names(["hit_rate", "mrr"], retriever=retriever)
    results = [evaluator.evaluate(query=q, expected_ids=ids) for q, ids in questions]
    hit_rate = sum(r.metric_vals_dict["hit_rate"] for r in results) / len(results)
    mrr = sum(r.metric_vals_dict["mrr"] for r in results) / len(results)
    assert results[0].retrieved_ids == [h.id for h in core_retriever.retrieve(questions[0][0], k=3)]
    assert hit_rate == 1.0 and mrr == 1.0, (hit_rate, mrr)
