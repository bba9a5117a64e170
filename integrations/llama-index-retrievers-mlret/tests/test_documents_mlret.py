"""Chunks of documents indexed by the core come back as nodes with the same source fields as LangChain's."""

from __future__ import annotations

import pytest
from llama_index.core.schema import NodeRelationship
from llama_index.retrievers.mlret import MLRetRetriever

from mlret_rag.testing import SOURCE_FIELDS


def test_nodes_carry_the_core_source_fields_and_link_their_document(docs_retriever):
    question = "¿En cuántos días puedo devolver un artículo?"
    nodes = MLRetRetriever(docs_retriever, similarity_top_k=3).retrieve(question)
    hits = docs_retriever.retrieve(question, k=3)
    assert [n.node.node_id for n in nodes] == [h.id for h in hits]
    for node, hit in zip(nodes, hits):
        meta = node.node.metadata
        assert {key: meta[key] for key in SOURCE_FIELDS} == {key: hit.metadata[key] for key in SOURCE_FIELDS}
        assert node.node.ref_doc_id == hit.metadata["doc_id"]
        assert node.node.relationships[NodeRelationship.SOURCE].node_id == hit.metadata["doc_id"]
        assert (node.node.start_char_idx, node.node.end_char_idx) == (hit.metadata["start"], hit.metadata["end"])
    assert nodes[0].node.metadata["source"] == "returns.md"


def test_per_document_caps_nodes(docs_retriever):
    question = "¿En cuántos días puedo devolver un artículo?"
    capped = MLRetRetriever(docs_retriever, similarity_top_k=3, per_document=1).retrieve(question)
    assert len({n.node.metadata["source"] for n in capped}) == 3
    with pytest.raises(ValueError, match="per_document must be a positive integer"):
        MLRetRetriever(docs_retriever, per_document=0)


def test_plain_records_have_no_source_link(core_retriever):
    node = MLRetRetriever(core_retriever, similarity_top_k=1).retrieve("Où est ma commande ?")[0].node
    assert node.ref_doc_id is None and NodeRelationship.SOURCE not in node.relationships
