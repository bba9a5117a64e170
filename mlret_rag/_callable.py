"""Modules named like the function they export stay callable.

``mlret_rag.evaluate`` and ``mlret_rag.finetune`` are both a module and the public function of the same
name. Once Python imports the module it sets the package attribute to the module, so
``from mlret_rag import evaluate`` would hand out the module instead of the function. Giving those
modules this class makes the module call its function, so both spellings work.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module whose call is its own function of the same name (``mlret_rag.evaluate(...)``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rsplit(".", 1)[-1])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Turn the already imported module ``module_name`` into a :class:`CallableModule`."""
    sys.modules[module_name].__class__ = CallableModule
