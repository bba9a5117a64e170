"""Synthetic anchors for the varieties nobody labelled: code-switched and noisy copies of the training queries.

With ``augment=True`` every labelled training anchor (never a dev query, never a pseudo-label) gets one
seeded copy: for half of them a third of the words replaced by the matching stretch of an index text
with the same label, in the knowledge base's language (a mixed-language question, as Hinglish or Swiss
German users write), for the rest about a tenth of the characters dropped, doubled or swapped (typing
noise). Measured in ``benchmarks/selftrain_ha.py`` against a run with as many steps; intent KBs only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from .examples import Anchor

NOISE_RATE = 0.1


def augmented_anchors(anchors: Sequence[Anchor], index_texts: Sequence[str], index_label_ids: Sequence[int],
                      seed: int) -> list[Anchor]:
    """``anchors`` followed by one synthetic copy of each (same label, language and source): half
    code-switched with a same-label index text, half with character noise; seeded."""
    rng = random.Random(f"augment:{seed}")
    by_label: dict[int, list[str]] = {}
    for text, label_id in zip(index_texts, index_label_ids):
        by_label.setdefault(label_id, []).append(text)
    copies = []
    for anchor in anchors:
        sources = by_label.get(anchor.label_id)
        switch = rng.random() < 0.5
        text = code_switched(anchor.text, rng.choice(sources), rng) if switch and sources else noisy(anchor.text, rng)
        copies.append(replace(anchor, text=text))
    return list(anchors) + copies


def code_switched(text: str, source: str, rng: random.Random) -> str:
    """``text`` with a third of its words (its characters, for unspaced scripts) replaced by as many
    words of ``source`` at the same relative position."""
    source_words = source.split()
    words = text.split()
    spaced = len(words) > 1
    units = words if spaced else list(text)
    span = max(1, len(units) // 3)
    at = rng.randrange(len(units) - span + 1)
    start = min(len(source_words) - 1, round(at * len(source_words) / len(units)))
    stretch = source_words[start:start + span]
    if spaced:
        return " ".join(units[:at] + stretch + units[at + span:])
    return "".join(units[:at]) + " ".join(stretch) + "".join(units[at + span:])


def noisy(text: str, rng: random.Random, rate: float = NOISE_RATE) -> str:
    """``text`` with about ``rate`` of its characters dropped, doubled or swapped with the next one
    (``text`` itself if nothing would be left)."""
    chars, out, i = list(text), [], 0
    while i < len(chars):
        r = rng.random()
        if r < rate / 3:
            i += 1
            continue
        if r < 2 * rate / 3:
            out += [chars[i], chars[i]]
        elif r < rate and i + 1 < len(chars):
            out += [chars[i + 1], chars[i]]
            i += 1
        else:
            out.append(chars[i])
        i += 1
    return "".join(out).strip() or text
