"""Loaders for real multilingual benchmark data, generated at run time from installed packages."""

from __future__ import annotations

from .bible import PassageBenchmark, build_passage_benchmark, load_verses
from .home_assistant import (
    DEFAULT_TRAIN_LANGUAGES,
    IntentBenchmark,
    available_languages,
    build_intent_benchmark,
    intent_descriptions,
    language_coverage,
    load_home_assistant_intents,
)

__all__ = [
    "DEFAULT_TRAIN_LANGUAGES",
    "IntentBenchmark",
    "PassageBenchmark",
    "available_languages",
    "build_intent_benchmark",
    "build_passage_benchmark",
    "intent_descriptions",
    "language_coverage",
    "load_home_assistant_intents",
    "load_verses",
]
