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
