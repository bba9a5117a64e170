"""Translate LlamaIndex ``MetadataFilters`` into a Chroma ``where`` clause for the core retriever."""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}
_CONDITIONS = {FilterCondition.AND: "$and", FilterCondition.OR: "$or"}


def to_chroma_where(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """A Chroma ``where`` dict equivalent to ``filters`` (``None`` when there is nothing to filter).

    Keys are the record's metadata keys plus ``label`` and ``lang``. Supports the operators
    ``==, !=, >, >=, <, <=, in, nin`` and the conditions ``and``/``or``, nested.

    Raises:
        ValueError: for another operator or condition, or a non-list value for ``in``/``nin``.
    """
    if filters is None or not filters.filters:
        return None
    return _translate(filters, "filters")


def _translate(item: MetadataFilters | MetadataFilter, where: str) -> dict[str, Any]:
    if isinstance(item, MetadataFilter):
        return _one(item, where)
    parts = [_translate(f, f"{where}.filters[{i}]") for i, f in enumerate(item.filters)]
    if not parts:
        raise ValueError(f"{where}: empty MetadataFilters")
    if len(parts) == 1:
        return parts[0]
    condition = item.condition or FilterCondition.AND
    if condition not in _CONDITIONS:
        raise ValueError(
            f"{where}: condition {condition.value!r} is not supported (allowed: and, or)"
        )
    return {_CONDITIONS[condition]: parts}


def _one(f: MetadataFilter, where: str) -> dict[str, Any]:
    op = _OPERATORS.get(f.operator)
    if op is None:
        allowed = ", ".join(o.value for o in _OPERATORS)
        raise ValueError(
            f"{where}: operator {f.operator.value!r} on key {f.key!r} is not supported (allowed: {allowed})"
        )
    value = f.value
    if op in ("$in", "$nin") and not isinstance(value, list):
        raise ValueError(f"{where}: operator {f.operator.value!r} on key {f.key!r} needs a list, got {value!r}")
    return {f.key: {op: value}}
