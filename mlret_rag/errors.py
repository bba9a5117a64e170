"""Exceptions that mean "the input or the environment is wrong", shown by the CLI as one clear line."""

from __future__ import annotations


class MlretError(Exception):
    """Base class: a problem the user can fix (bad file, wrong model, unreachable server)."""


class KnowledgeBaseError(MlretError, ValueError):
    """A knowledge-base or query file is malformed; the message names the file, the line and the problem."""


class EncoderMismatchError(MlretError):
    """A collection was built with a different encoder than the one used to open it."""


class StoreConnectionError(MlretError, ConnectionError):
    """The Chroma server cannot be reached; the message names host:port."""


class StoreBusyError(MlretError, TimeoutError):
    """Another process holds the writer lock of an embedded database; the message names that process."""


class StoreTimeoutError(StoreConnectionError, TimeoutError):
    """The Chroma server accepted the connection but did not answer in time (frozen or overloaded)."""


class DiskFullError(MlretError, OSError):
    """The database's file system ran out of space; the message names the path and the free space."""


class DocumentError(KnowledgeBaseError):
    """No document could be loaded, or an argument of the document loader is invalid."""


class TrainingMemoryError(MlretError, MemoryError):
    """A fine-tune would need more memory than the machine has free; the message says what to lower."""


class OutputExistsError(MlretError, FileExistsError):
    """The output folder is not empty and ``overwrite`` was not given."""


class BundledModelError(MlretError, RuntimeError):
    """The bundled model file is missing or is not the one this library knows how to convert."""


class MissingCollectionError(MlretError, LookupError):
    """The collection asked for does not exist (and was not to be created)."""


class OnnxBackendError(MlretError, RuntimeError):
    """The model cannot run on the ONNX backend (unsupported layout or a failed export)."""


class StoreClosedError(MlretError, RuntimeError):
    """The store was used after :meth:`ChromaStore.close`."""
