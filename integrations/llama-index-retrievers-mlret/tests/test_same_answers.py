"""Same KB, same questions in six languages: core, LlamaIndex and LangChain give the same answers."""

from __future__ import annotations

from langchain_mlret import MLRetRetriever as LangChainRetriever
from llama_index.retrievers.mlret import MLRetRetriever as LlamaIndexRetriever

K = 4


def test_same_ids_order_and_scores_everywhere(core_retriever, questions):
    llama = LlamaIndexRetriever(core_retriever, similarity_top_k=K)
    chain = LangChainRetriever(retriever=core_retriever, k=K)
    for question, _ in questions:
        core = [(h.id, h.score) for h in core_retriever.retrieve(question, k=K)]
        from_llama = [(n.node.node_id, n.score) for n in llama.retrieve(question)]
        from_chain = [(d.id, d.metadata["score"]) for d in chain.invoke(question)]
        assert len(core) == K
        assert from_llama == core, question
        assert from_chain == core, question
        assert [s for _, s in core] == sorted((s for _, s in core), reverse=True)
