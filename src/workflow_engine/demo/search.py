"""Ranking for the demo services' search tools: shared words weighted by rarity (a word most
documents contain says little), title matches double. Deterministic, no index."""

from __future__ import annotations

import math
import re

from workflow_engine.text import content_words


def rank(query: str, documents: list[tuple[str, str]]) -> list[float]:
    """A score per `(title, body)` document; 0 when it shares no word with the query."""
    wanted = content_words(query)
    titles = [content_words(title) for title, _ in documents]
    bodies = [
        content_words(body) | title for (_, body), title in zip(documents, titles, strict=True)
    ]
    total = len(documents)
    scores = []
    for title, body in zip(titles, bodies, strict=True):
        points = 0.0
        for word in wanted & body:
            frequency = sum(1 for other in bodies if word in other)
            weight = math.log(1 + total / frequency)
            points += weight * (2 if word in title else 1)
        scores.append(round(points, 3))
    return scores


def snippet(body: str, query: str, size: int = 240) -> str:
    """The sentence of `body` that shares the most words with `query`."""
    wanted = content_words(query)
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", body) if s.strip()]
    if not sentences:
        return ""
    best = max(sentences, key=lambda s: (len(wanted & content_words(s)), -sentences.index(s)))
    return best[:size]
