"""Length-packed forward passes for training: each distinct text once, in chunks of similar length.

sentence-transformers merges a batch's candidate columns into one forward padded to the longest text,
which keeps a GPU busy but on a CPU pays for every padding token (about half the tokens of a typical
intent batch) and for every repeated knowledge-base text. Here the columns' rows are deduplicated,
sorted by length and run in chunks whose padding is bounded, then put back in column order. The loss
and its gradients are those of the padded forward (a repeated text's gradients add up on its one row),
up to dropout sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor, nn

MAX_CHUNK_ROWS = 32
MAX_PADDING_SHARE = 0.25  # a chunk grows while its padding stays under this share of its tokens


def embed_columns_packed(model: nn.Module | Callable, features_list: Iterable[dict[str, Any]]) -> list[Tensor]:
    """One ``sentence_embedding`` tensor per column, from deduplicated, length-sorted chunked forwards.

    Neighbouring columns that carry the same metadata (the same prompt) are packed together; anchors
    and documents with different prompts are packed apart. A group sentence-transformers cannot merge,
    or a batch that is not right-padded, takes its plain per-column forward; on an accelerator, where one
    wide forward is what keeps the device busy, sentence-transformers' merged forward is used unchanged.
    """
    from sentence_transformers.base.losses.merged_forward import embed_columns, merge_feature_batches

    features_list = list(features_list)
    if any(isinstance(v, Tensor) and v.device.type != "cpu" for f in features_list for v in f.values()):
        return embed_columns(model, features_list)
    embeddings: list[Tensor] = []
    for group in _same_metadata_groups(features_list):
        merged = group[0] if len(group) == 1 else merge_feature_batches(group)
        if merged is None or not right_padded(merged):
            embeddings += [model(features)["sentence_embedding"] for features in group]
            continue
        packed = _packed_forward(model, merged)
        embeddings += list(packed.reshape(len(group), -1, *packed.shape[1:]).unbind(0))
    return embeddings


def _same_metadata_groups(features_list: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Runs of neighbouring columns with the same keys and the same non-row values (e.g. prompt length)."""

    def signature(features: dict[str, Any]) -> tuple:
        meta = []
        for key in sorted(features):
            value = features[key]
            if key == "prompt_length" or not isinstance(value, Tensor):
                meta.append((key, value.tolist() if isinstance(value, Tensor) else repr(value)))
        return tuple(sorted(features)), repr(meta)

    groups: list[list[dict[str, Any]]] = []
    for features in features_list:
        if groups and signature(groups[-1][0]) == signature(features):
            groups[-1].append(features)
        else:
            groups.append([features])
    return groups


def right_padded(features: dict[str, Any]) -> bool:
    """Whether ``features`` is a flat token batch whose rows are real tokens then padding."""
    mask = features.get("attention_mask")
    if not isinstance(mask, Tensor) or mask.ndim != 2 or not isinstance(features.get("input_ids"), Tensor):
        return False
    import torch

    lengths = mask.sum(dim=1, keepdim=True)
    return bool(torch.equal(mask.bool(), torch.arange(mask.shape[1])[None, :] < lengths))


def _packed_forward(model: nn.Module | Callable, features: dict[str, Any]) -> Tensor:
    """Embeddings of every row of one right-padded flat batch, each distinct row computed once."""
    import torch

    lengths = features["attention_mask"].sum(dim=1).tolist()
    index_of: dict[bytes, int] = {}
    representatives: list[int] = []  # the first row of each distinct text
    slot = []  # row -> index of its distinct text
    for row, key in enumerate(row_keys(features)):
        if key not in index_of:
            index_of[key] = len(representatives)
            representatives.append(row)
        slot.append(index_of[key])
    order = sorted(range(len(representatives)), key=lambda d: lengths[representatives[d]])
    outputs = []
    for chunk in _chunks([lengths[representatives[d]] for d in order]):
        sub = select_rows(features, [representatives[order[i]] for i in chunk])
        outputs.append(model(sub)["sentence_embedding"])
    by_order = torch.cat(outputs)
    position = torch.empty(len(order), dtype=torch.long)
    position[torch.tensor(order)] = torch.arange(len(order))
    return by_order[position[torch.tensor(slot)]]


def _token_and_row_keys(features: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The per-token (rows x width) and per-row tensors of a flat batch; the rest is shared metadata."""
    rows, width = features["attention_mask"].shape
    token_keys = [k for k, v in features.items() if isinstance(v, Tensor) and v.ndim == 2 and v.shape == (rows, width)]
    row_keys_ = [k for k, v in features.items()
                 if k not in token_keys and isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == rows
                 and k != "prompt_length"]
    return token_keys, row_keys_


def row_keys(features: dict[str, Any]) -> list[bytes]:
    """One key per row of a right-padded flat batch: equal keys mean the same text (tokens and row values)."""
    token_keys, per_row = _token_and_row_keys(features)
    lengths = features["attention_mask"].sum(dim=1).tolist()
    return [b"".join(features[k][row, :length].cpu().numpy().tobytes() for k in token_keys)
            + b"".join(features[k][row].cpu().numpy().tobytes() for k in per_row)
            for row, length in enumerate(lengths)]


def select_rows(features: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """The flat batch of ``rows`` only, its padding cut to the longest of them."""
    import torch

    token_keys, per_row = _token_and_row_keys(features)
    picked = torch.tensor(rows, device=features["attention_mask"].device)
    longest = int(features["attention_mask"][picked].sum(dim=1).max())
    return {k: (v[picked, :longest] if k in token_keys else v[picked] if k in per_row else v)
            for k, v in features.items()}


def _chunks(sorted_lengths: list[int]) -> list[range]:
    """Consecutive index ranges of ascending lengths: at most MAX_CHUNK_ROWS rows, padding bounded."""
    chunks, start, real = [], 0, 0
    for i, length in enumerate(sorted_lengths):
        rows = i - start + 1
        if i > start and (rows > MAX_CHUNK_ROWS or length * rows * (1 - MAX_PADDING_SHARE) > real + length):
            chunks.append(range(start, i))
            start, real = i, 0
        real += length
    chunks.append(range(start, len(sorted_lengths)))
    return chunks
