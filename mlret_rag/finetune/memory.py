"""Peak-memory estimate of a training step, checked before training so a run fails early with advice.

The model's weights, gradients and AdamW state are counted exactly; activations are estimated per
token and per attention cell from measurements of multilingual-e5-small on CPU (README, "Fine-tuning
memory"), scaled by the model's hidden size, depth and heads. Texts are counted in the model's own
tokens, capped at the training window, at their longest per column (batches can be that unlucky).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import TrainingMemoryError
from .frozen_prefix import MAX_CACHE_BYTES, encoder_layers, inner_model
from .packing import MAX_CHUNK_ROWS

logger = logging.getLogger(__name__)

# Measured on e5-small (hidden 384, 12 layers, 12 heads), fp32, CPU: bytes kept for backward per token per
# layer per hidden unit, and per attention cell (query x key token pair) per head per layer.
_BYTES_PER_TOKEN_UNIT = 120.0
_BYTES_PER_ATTENTION_CELL = 16.0
_OVERHEAD_GB = 1.2  # interpreter, torch, tokenizer, data
SAFETY = 0.85  # share of the available memory a run may plan to use


def estimate_peak_gb(n_params: int, n_trainable: int, hidden: int, layers: int, heads: int,
                     column_lengths: list[int], batch_size: int, *, loaded: bool = False,
                     document_gradients: bool = True, frozen_layers: int = 0, cache_bytes: float = 0.0) -> float:
    """Estimated peak resident memory in GB of one step: weights, grads + AdamW, activations.

    With ``loaded`` only what training adds to an already loaded model (no weights, no overhead). Without
    ``document_gradients`` (documents embedded without autograd) only the anchor column keeps activations
    for the backward; the documents' forward holds one layer of one packed chunk at a time. Frozen lower
    layers keep no activations; their cached output (``cache_bytes``, :mod:`.frozen_prefix`) is added.
    """
    weights = 0.0 if loaded else 4.0 * n_params
    optimiser = 4.0 * 3 * n_trainable  # gradient + two AdamW moments

    def activations(lengths: list[int], rows: int, depth: int) -> float:
        tokens, cells = rows * sum(lengths), rows * sum(n * n for n in lengths)
        return depth * (_BYTES_PER_TOKEN_UNIT * hidden * tokens + _BYTES_PER_ATTENTION_CELL * heads * cells)

    depth = max(1, layers - frozen_layers)
    if document_gradients:
        kept = activations(column_lengths, batch_size, depth)
    else:
        documents = column_lengths[1:2] if len(column_lengths) > 1 else []
        chunk_rows = min(MAX_CHUNK_ROWS, batch_size * (len(column_lengths) - 1))
        kept = activations(column_lengths[:1], batch_size, depth) + activations(documents, chunk_rows, 1)
    return (weights + optimiser + kept + cache_bytes) / 1e9 + (0.0 if loaded else _OVERHEAD_GB)


def available_gb() -> float:
    """Memory the process may still use: ``MemAvailable``, bounded by a cgroup limit when there is one."""
    try:
        import psutil

        free = psutil.virtual_memory().available
    except ImportError:  # psutil comes with the dev extra; Linux has /proc/meminfo
        free = _meminfo_available()
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                raw = fh.read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < free:
            free = int(raw)
    return free / 1e9


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # no /proc: nothing to check against
        pass
    return 1 << 62


def _token_lengths(tokenizer: Any, texts: list[str], window: int, sample: int, rng: np.random.Generator) -> list[int]:
    """Token counts (capped at ``window``) of up to ``sample`` texts drawn without replacement."""
    picked = [texts[i] for i in rng.choice(len(texts), size=min(sample, len(texts)), replace=False)]
    return [min(window, len(ids)) for ids in tokenizer(picked, add_special_tokens=True, truncation=False)["input_ids"]]


def mean_length(tokenizer: Any, texts: list[str], window: int, sample: int = 2000, seed: int = 0) -> float:
    """Mean token count of ``texts`` (capped at ``window``), from a seeded sample; 0 for none."""
    rng = np.random.default_rng(seed)
    return float(np.mean(_token_lengths(tokenizer, texts, window, sample, rng))) if texts else 0.0


def column_lengths(tokenizer: Any, anchors: list[str], documents: list[str], n_document_columns: int,
                   window: int, sample: int = 2000, seed: int = 0) -> list[int]:
    """Longest anchor and document length in tokens (capped at ``window``): one per training column."""
    rng = np.random.default_rng(seed)

    def longest(texts: list[str]) -> int:
        return max(_token_lengths(tokenizer, texts, window, sample, rng)) if texts else 0

    return [longest(anchors)] + [longest(documents)] * n_document_columns


def check_training_memory(encoder: Any, data: Any, *, batch_size: int, negatives_per_anchor: int,
                          max_seq_length: int | None, freeze_embeddings: bool,
                          document_embeddings: str = "trained", frozen_layers: int = 0) -> float:
    """Raise :class:`TrainingMemoryError` when the estimated peak exceeds the available memory; return the estimate."""
    st = encoder.sentence_transformer
    inner = inner_model(st)
    cfg = getattr(inner, "config", None)
    hidden = int(getattr(cfg, "hidden_size", 384))
    layers = int(getattr(cfg, "num_hidden_layers", 12))
    heads = int(getattr(cfg, "num_attention_heads", 12))
    params = list(st.parameters())
    n_params = sum(p.numel() for p in params)
    frozen = inner.get_input_embeddings().weight.numel() if inner is not None and freeze_embeddings else 0
    window = min(x for x in (st.max_seq_length, max_seq_length) if x) if (st.max_seq_length or max_seq_length) else 512
    anchors, documents = [a.text for a in data.anchors], [r.text for r in data.index]
    lengths = column_lengths(st.tokenizer, anchors, documents, 1 + negatives_per_anchor, window)
    cache_bytes = 0.0
    if frozen_layers:
        frozen = sum(p.numel() for m in (inner.embeddings, *encoder_layers(inner)[:frozen_layers]) for p in m.parameters())
        tokens = len(anchors) * mean_length(st.tokenizer, anchors, window) + len(documents) * mean_length(
            st.tokenizer, documents, window)
        cache_bytes = min(MAX_CACHE_BYTES, 4.0 * hidden * tokens)
    shape = (n_params, n_params - frozen, hidden, layers, heads, lengths, batch_size)
    options = {"document_gradients": document_embeddings == "trained", "frozen_layers": frozen_layers,
               "cache_bytes": cache_bytes}
    need = estimate_peak_gb(*shape, **options)
    extra = estimate_peak_gb(*shape, loaded=True, **options)
    have = available_gb()  # the loaded model is already outside it: compare what training adds
    logger.info("fine-tune memory: estimated peak %.1f GB, %.1f GB available", need, have)
    if extra > SAFETY * have:
        raise TrainingMemoryError(
            f"this fine-tune would need about {need:.1f} GB at its peak, {extra:.1f} GB more than the loaded model, "
            f"but {have:.1f} GB are available "
            f"(batch_size={batch_size}, {1 + negatives_per_anchor} document columns of up to {lengths[1]} tokens, "
            f"max_seq_length={max_seq_length}); lower --batch-size, --max-seq-length or --negatives-per-anchor"
            + (", or use --document-embeddings cached (far lighter, but about 0.06 MRR worse on passages)"
               if options["document_gradients"] else "")
            + (f", or freeze more layers (--frozen-layers, now {frozen_layers} of {layers})"
               if frozen_layers < layers - 1 else "")
            + ("" if freeze_embeddings else ", or keep the embeddings frozen")
        )
    return need
