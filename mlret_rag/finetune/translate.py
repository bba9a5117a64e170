"""The translator hook: render training rows into target languages when no training queries exist.

A translator is any callable ``(texts: list[str], target_lang: str) -> list[str]`` returning one
translation per text, in order (a machine-translation model, a dictionary, a human-made table). A
LangChain chat model (anything with ``.invoke(prompt)`` returning a message with ``.content``) is wrapped
with :func:`chat_model_translator`; nothing here imports LangChain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Translator = Callable[[list[str], str], list[str]]

DEFAULT_PROMPT = (
    "Translate the following user request into the language with code '{lang}'. "
    "Write it the way a native speaker would ask. Reply with the translation only.\n\n{text}"
)


def chat_model_translator(chat_model: Any, *, prompt: str = DEFAULT_PROMPT) -> Translator:
    """Wrap a chat model (``.invoke(str)`` -> message with ``.content``) as a translator, one call per text."""
    if not hasattr(chat_model, "invoke"):
        raise TypeError(f"chat_model must have an .invoke() method, got {type(chat_model).__name__}")

    def translate(texts: list[str], target_lang: str) -> list[str]:
        out = []
        for text in texts:
            reply = chat_model.invoke(prompt.format(lang=target_lang, text=text))
            out.append(str(getattr(reply, "content", reply)).strip())
        return out

    return translate


def translate_texts(translator: Translator, texts: Sequence[str], target_lang: str) -> list[str]:
    """Call ``translator`` and check it returned one non-empty string per input text."""
    if not callable(translator):
        raise TypeError(f"translator must be callable (texts, target_lang) -> texts, got {type(translator).__name__}")
    result = list(translator(list(texts), target_lang))
    if len(result) != len(texts):
        raise ValueError(
            f"translator returned {len(result)} texts for {len(texts)} inputs (target language {target_lang!r})"
        )
    for i, text in enumerate(result):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"translator returned an empty or non-string text at position {i} for {target_lang!r}")
    return result
