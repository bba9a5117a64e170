"""Frozen lower layers computed once per text: training steps then run only the layers that learn.

With ``frozen_layers=k`` the embedding block and the lowest ``k`` transformer layers never change, so a
text's hidden states after them are the same at every step. :class:`FrozenPrefixCache` computes them once
per distinct text (without autograd or dropout) and feeds them to the upper layers, which is exact: the
loss and gradients are those of the full forward with the prefix frozen. A passage step, dominated by
long documents, then costs the upper layers' forward and backward only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import Tensor, nn

from .packing import right_padded, row_keys, select_rows

MAX_CACHE_BYTES = 2 * 1024**3  # beyond this, texts run through the frozen layers at every step (still no autograd)
# Passage KBs freeze the lower two thirds (8 of e5-small's 12 layers): measured on benchmarks/finetune_passages.py,
# steps 3.5x faster and within the passage targets, about 0.03 non-English MRR below training every layer.
PASSAGE_FROZEN_SHARE = 2 / 3


def inner_model(st: Any) -> nn.Module | None:
    """The Hugging Face model inside a SentenceTransformer's first module, if it has one."""
    return getattr(st[0], "model", None) or getattr(st[0], "auto_model", None)


def transformer_model(st: Any) -> nn.Module:
    """The Hugging Face model inside a SentenceTransformer's first module."""
    inner = inner_model(st)
    if inner is None or not hasattr(inner, "get_input_embeddings"):
        raise ValueError("freezing needs a transformer model with an input-embedding matrix")
    return inner


def encoder_layers(inner: nn.Module) -> nn.ModuleList:
    """The transformer layers of a BERT-style encoder (``inner.encoder.layer``)."""
    layers = getattr(getattr(inner, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):  # an unsupported model, like a bad option value: ValueError
        raise ValueError(  # noqa: TRY004
            f"frozen_layers needs a BERT-style encoder with encoder.layer; got {type(inner).__name__}")
    return layers


def default_frozen_layers(st: Any, *, passages: bool) -> int:
    """What ``frozen_layers=None`` means: two thirds of a BERT-style model's layers for passage KBs, else none."""
    if not passages:
        return 0
    try:
        return int(len(encoder_layers(transformer_model(st))) * PASSAGE_FROZEN_SHARE)
    except ValueError:  # not a BERT-style encoder: train it whole
        return 0


def check_pseudo_label_frozen_layers(st: Any, n_layers: int) -> None:
    """Refuse a ``pseudo_labels_frozen_layers`` the model cannot honour (no layers to stop at, or too many)."""
    layers = encoder_layers(transformer_model(st))
    if n_layers >= len(layers):
        raise ValueError(f"pseudo_labels_frozen_layers={n_layers} leaves pseudo-labelled questions nothing to "
                         f"train: the model has {len(layers)} layers")


@contextlib.contextmanager
def gradient_stopped_below(st: Any, n_layers: int) -> Iterator[None]:
    """Within, a forward through ``st`` passes no gradient to its embedding block or lowest ``n_layers`` layers
    (they still run, with dropout, as for every other text)."""
    layer = encoder_layers(transformer_model(st))[n_layers - 1]

    def detached(module: nn.Module, args: Any, output: Any) -> Any:
        return (output[0].detach(), *output[1:]) if isinstance(output, tuple) else output.detach()

    handle = layer.register_forward_hook(detached)
    try:
        yield
    finally:
        handle.remove()


def freeze_prefix(st: Any, n_layers: int) -> None:
    """Fix the embedding block and the lowest ``n_layers`` layers, dropout off there (a fixed feature extractor)."""
    inner = transformer_model(st)
    layers = encoder_layers(inner)
    if n_layers >= len(layers):
        raise ValueError(f"frozen_layers={n_layers} leaves nothing to train: the model has {len(layers)} layers")
    for module in (inner.embeddings, *layers[:n_layers]):
        module.requires_grad_(False)
        for sub in module.modules():
            if isinstance(sub, nn.Dropout):
                sub.p = 0.0


@contextlib.contextmanager
def _layers_swapped(inner: nn.Module, layers: nn.ModuleList) -> Iterator[None]:
    """Run ``inner`` with ``layers`` in place of its encoder's layers."""
    encoder = inner.encoder
    full = encoder.layer
    encoder.layer = layers
    try:
        yield
    finally:
        encoder.layer = full


@contextlib.contextmanager
def _embedding_output(inner: nn.Module, hidden: Tensor) -> Iterator[None]:
    """Make ``inner``'s embedding block return ``hidden`` (the frozen prefix's output) instead of its own."""
    handle = inner.embeddings.register_forward_hook(lambda module, args, output: hidden)
    try:
        yield
    finally:
        handle.remove()


class FrozenPrefixCache:
    """Call it as the SentenceTransformer: ``cache(features)``; the frozen prefix runs once per distinct text.

    Args:
        st: the SentenceTransformer being trained, its prefix already fixed with :func:`freeze_prefix`.
        n_layers: how many lower layers are frozen.
        max_bytes: most memory the cached hidden states may take; later texts are not cached.
    """

    def __init__(self, st: Any, n_layers: int, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self.st = st
        self.inner = transformer_model(st)
        layers = encoder_layers(self.inner)
        self.prefix, self.upper = nn.ModuleList(layers[:n_layers]), nn.ModuleList(layers[n_layers:])
        self.max_bytes = max_bytes
        self.bytes = 0
        self._states: dict[bytes, Tensor] = {}

    def __len__(self) -> int:
        """How many texts' prefix states are cached."""
        return len(self._states)

    def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
        """The SentenceTransformer's output for ``features``, the frozen layers replaced by cached states."""
        import torch

        if not right_padded(features):
            return self.st(features)
        mask = features["attention_mask"]
        lengths = mask.sum(dim=1).tolist()
        keys = row_keys(features)
        missing = {key: row for row, key in enumerate(keys) if key not in self._states}
        fresh = self._prefix_states(select_rows(features, list(missing.values()))) if missing else []
        computed = dict(zip(missing, fresh))
        for key, states in computed.items():
            if self.bytes + states.nbytes <= self.max_bytes:
                self._states[key] = states
                self.bytes += states.nbytes
        rows = [self._states[key] if key in self._states else computed[key] for key in keys]
        hidden = torch.zeros((*mask.shape, rows[0].shape[-1]), dtype=rows[0].dtype, device=rows[0].device)
        for row, (states, length) in enumerate(zip(rows, lengths)):
            hidden[row, :length] = states
        with _layers_swapped(self.inner, self.upper), _embedding_output(self.inner, hidden):
            return self.st(features)

    def _prefix_states(self, features: dict[str, Any]) -> list[Tensor]:
        """Each row's hidden states after the frozen layers, cut to its length."""
        import torch

        with torch.no_grad(), _layers_swapped(self.inner, self.prefix):
            states = self.st[0](dict(features))["token_embeddings"]
        lengths = features["attention_mask"].sum(dim=1).tolist()
        return [states[row, :length].clone() for row, length in enumerate(lengths)]
