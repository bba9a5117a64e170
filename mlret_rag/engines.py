"""Inference engines behind one interface: PyTorch (sentence-transformers), ONNX Runtime fp32 and int8.

An engine turns already-validated texts and a prompt into unit vectors, and says what it runs
(:class:`EngineInfo`). :func:`select_engine` picks one once per encoder and logs why (``INFO`` on the
``mlret_rag.engines`` logger): the backend that was asked for, or for ``backend=None`` the default
(ONNX when onnxruntime is installed) unless the model or device needs PyTorch.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8")


@dataclass(frozen=True)
class EngineInfo:
    """What an encoder runs on.

    Attributes:
        backend: ``"torch"``, ``"onnx"`` or ``"onnx-int8"``.
        reason: why this engine was chosen (the same line that was logged).
        files: the files it runs: the ONNX file, or the model folder for PyTorch (empty when none is local).
        manifest: for ONNX, the export manifest (``{"files": {name: {size, sha256, source_digest, ...}}}``);
            empty for PyTorch.
        torch_loaded: whether the PyTorch model is loaded (ONNX engines load it only for training).
    """

    backend: str
    reason: str
    files: tuple[Path, ...] = ()
    manifest: dict[str, Any] = field(default_factory=dict)
    torch_loaded: bool = False


class Engine(Protocol):
    """The interface every engine implements."""

    backend: str
    prompts: dict[str, str]  # the prompts saved with the model

    @property
    def dimension(self) -> int: ...

    @property
    def max_seq_length(self) -> int: ...

    @property
    def files(self) -> tuple[Path, ...]: ...

    @property
    def manifest(self) -> dict[str, Any]: ...

    def encode(self, texts: Sequence[str], prompt: str, batch_size: int, show_progress_bar: bool = False) -> np.ndarray:
        """Encode validated texts with ``prompt`` prepended into an (n, dim) float32 array of unit vectors."""
        ...


class TorchEngine:
    """sentence-transformers on PyTorch: any architecture, any device."""

    backend = "torch"

    def __init__(self, name_or_path: str, device: str, max_seq_length: int | None, folder: Path | None) -> None:
        self.model = load_sentence_transformer(name_or_path, pick_device(device))
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.prompts = dict(self.model.prompts or {})
        self.folder = folder

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.folder,) if self.folder is not None else ()

    @property
    def manifest(self) -> dict[str, Any]:
        return {}

    def encode(self, texts: Sequence[str], prompt: str, batch_size: int, show_progress_bar: bool = False) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            prompt=prompt or None,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def default_backend() -> str:
    """``"onnx"`` when onnxruntime is installed (same vectors as PyTorch, faster on CPU), else ``"torch"``."""
    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"


def check_backend(backend: str | None, device: str) -> None:
    """Refuse an unknown backend, or an ONNX backend on a GPU device, naming the argument."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend not in (None, "torch") and device not in ("auto", "cpu"):
        raise ValueError(f"backend={backend!r} runs on the CPU only; got device={device!r} (use backend='torch')")


def select_engine(
    model: Any, folder: Path | None, backend: str | None, *, device: str, max_seq_length: int | None,
    files_digest: Any,
) -> tuple[Engine, str]:
    """Build the engine for ``backend`` (``None``: the default) and say why it was chosen.

    Args:
        model: the encoder's ``model`` argument (loaded by name when ``folder`` is ``None``).
        folder: the model's local folder, if it has one.
        backend: ``"torch"``, ``"onnx"``, ``"onnx-int8"`` or ``None``.
        device: the encoder's device argument.
        max_seq_length: token window override.
        files_digest: callable ``folder -> str`` identifying the weights (names the ONNX export).

    Raises:
        ValueError: an ONNX backend was asked for a model that has no local folder.
        OnnxBackendError: an ONNX backend was asked for a model it cannot run.
    """
    check_backend(backend, device)
    chosen, reason = _choose(backend, folder, device)
    if chosen != "torch":
        if folder is None:
            raise ValueError(
                f"backend={chosen!r} needs a local model folder; {model!r} was not found locally "
                "(use backend='torch')"
            )
        from .onnx_backend import OnnxBackendError, OnnxEngine

        try:
            return _log(OnnxEngine(folder, chosen, files_digest(folder), max_seq_length=max_seq_length), reason)
        except OnnxBackendError as exc:
            if backend is not None:
                raise
            reason = f"default: the ONNX backend cannot run this model ({exc})"
    name_or_path = str(folder) if folder else str(model)
    return _log(TorchEngine(name_or_path, device, max_seq_length, folder), reason)


def _choose(backend: str | None, folder: Path | None, device: str) -> tuple[str, str]:
    if backend is not None:
        return backend, f"backend={backend!r} was asked for"
    if device in ("cuda", "mps"):
        return "torch", f"default: device={device!r} (ONNX Runtime runs on the CPU here)"
    if default_backend() == "torch":
        return "torch", "default: onnxruntime is not installed"
    if folder is None:
        return "torch", "default: the model is not in a local folder yet (sentence-transformers fetches it)"
    return "onnx", "default: onnxruntime is installed"


def _log(engine: Engine, reason: str) -> tuple[Engine, str]:
    logger.info("inference engine %s: %s", engine.backend, reason)
    return engine, reason


def load_sentence_transformer(name_or_path: str, device: str) -> SentenceTransformer:
    """Load a sentence-transformers model quietly, with safetensors and no remote code."""
    from sentence_transformers import SentenceTransformer

    from ._quiet import quiet_transformers

    try:
        with quiet_transformers():
            return SentenceTransformer(
                name_or_path, device=device, trust_remote_code=False, model_kwargs={"use_safetensors": True}
            )
    except OSError as exc:
        raise OSError(
            f"could not load model {name_or_path!r}: {exc}. Give a local folder, or a model name when the "
            "Hugging Face hub is reachable (or already cached)."
        ) from exc


def pick_device(device: str) -> str:
    """``"auto"``: cuda, then mps, then cpu; any other value as given."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
