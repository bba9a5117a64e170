"""LlamaIndex MetadataFilters to Chroma where: supported operators, nesting, and named errors."""

from __future__ import annotations

import pytest
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.retrievers.mlret import to_chroma_where


def test_nothing_to_filter():
    assert to_chroma_where(None) is None
    assert to_chroma_where(MetadataFilters(filters=[])) is None


def test_single_and_combined_filters():
    eq = MetadataFilters(filters=[MetadataFilter(key="label", value="refund")])
    assert to_chroma_where(eq) == {"label": {"$eq": "refund"}}
    both = MetadataFilters(
        filters=[
            MetadataFilter(key="dept", value=["billing", "account"], operator=FilterOperator.IN),
            MetadataFilters(
                filters=[MetadataFilter(key="lang", value="en"), MetadataFilter(key="label", value="x",
                                                                                operator=FilterOperator.NE)],
                condition=FilterCondition.OR,
            ),
        ]
    )
    assert to_chroma_where(both) == {
        "$and": [
            {"dept": {"$in": ["billing", "account"]}},
            {"$or": [{"lang": {"$eq": "en"}}, {"label": {"$ne": "x"}}]},
        ]
    }


def test_unsupported_operator_and_condition_are_named():
    text = MetadataFilters(filters=[MetadataFilter(key="dept", value="bill", operator=FilterOperator.TEXT_MATCH)])
    with pytest.raises(ValueError, match=r"filters\.filters\[0\]: operator 'text_match' on key 'dept'"):
        to_chroma_where(text)
    negated = MetadataFilters(
        filters=[MetadataFilter(key="a", value="1"), MetadataFilter(key="b", value="2")],
        condition=FilterCondition.NOT,
    )
    with pytest.raises(ValueError, match="condition 'not' is not supported"):
        to_chroma_where(negated)
