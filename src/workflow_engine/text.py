"""Plain word matching shared by the offline LLM provider and the demo services' search."""

from __future__ import annotations

import re

WORD = re.compile(r"[a-z0-9']+")
COMMON_WORDS = (
    "a an the and or but if of to in on at for with from by is are was were be been am i "
    "you he she it we they me my your our their this that these those do does did have "
    "has had can could would should will just not no so as about what how when where "
    "which who why please hi hello thanks thank there here any some"
)
STOPWORDS = frozenset(COMMON_WORDS.split())


def stem(word: str) -> str:
    """Enough stemming for matching ("refunds" ~ "refund", "charged" ~ "charge")."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def words(text: str) -> list[str]:
    """The text's words, lower-cased and stemmed, in order."""
    return [stem(w) for w in WORD.findall(text.lower())]


def content_words(text: str) -> set[str]:
    """The text's words without the common ones."""
    return set(words(text)) - STOPWORDS
