"""``mlret index``, ``mlret query`` and ``mlret demo``."""

from __future__ import annotations

from . import app  # noqa: F401
