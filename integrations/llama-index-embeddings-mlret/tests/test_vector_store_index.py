"""End to end: LlamaIndex VectorStoreIndex over ChromaVectorStore with MLRetEmbedding."""

from __future__ import annotations

import math

import chromadb
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.embeddings.mlret import MLRetEmbedding
from llama_index.vector_stores.chroma import ChromaVectorStore

KB = {
    "hours": "The pharmacy is open from 9 am to 6 pm on weekdays.",
    "refund": "Refunds are paid back to your card within 14 days.",
    "password": "You can reset your password from the login page.",
    "parking": "Parking is free for customers on Sundays.",
}
QUESTIONS = {
    "¿Cómo puedo recuperar mi contraseña?": "password",
    "Wann bekomme ich mein Geld zurück?": "refund",
    "À quelle heure ouvre la pharmacie ?": "hours",
}


def test_vector_store_index_over_chroma(encoder, tmp_path):
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    collection = client.create_collection("kb-demo", metadata={"hnsw:space": "cosine"})
    storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
    docs = [Document(text=text, id_=kid, metadata={"kb_id": kid}, excluded_embed_metadata_keys=["kb_id"]) for kid, text in KB.items()]
    index = VectorStoreIndex.from_documents(
        docs, storage_context=storage, embed_model=MLRetEmbedding(encoder=encoder)
    )
    assert collection.count() == len(KB)
    retriever = index.as_retriever(similarity_top_k=2)
    for question, expected in QUESTIONS.items():
        hits = retriever.retrieve(question)
        assert len(hits) == 2
        assert hits[0].node.metadata["kb_id"] == expected, question
        # The vectors are ours; ChromaVectorStore reports exp(-cosine_distance), not the cosine itself
        # (MLRetRetriever reports the cosine; see the README's "Scores" section).
        vq = encoder.encode_queries([question])[0]
        vd = encoder.encode_documents([KB[expected]])[0]
        assert hits[0].score == pytest.approx(math.exp(-(1.0 - float(vq @ vd))), abs=1e-4)
