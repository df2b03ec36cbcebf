"""Documents from code we do not control, made storable on both databases."""

from __future__ import annotations

import math

import pytest

from workflow_engine.errors import InvalidInput
from workflow_engine.events.storable import MAX_DEPTH, check_document, storable_document


def test_what_the_log_cannot_hold_is_cleaned_and_the_rest_kept() -> None:
    document = {
        "text": "nul\x00 and a lone \ud83d surrogate",
        "numbers": [1, 2.5, math.nan, math.inf, True, None],
        "bad\x00key": {"object": object()},
    }
    with pytest.raises(InvalidInput):
        check_document("data", document)

    cleaned = storable_document(document)

    check_document("data", cleaned)
    assert cleaned == {
        "text": "nul and a lone ? surrogate",
        "numbers": [1, 2.5, None, None, True, None],
        "badkey": {"object": None},
    }


def test_nesting_deeper_than_the_log_allows_is_cut() -> None:
    deep: object = "bottom"
    for _ in range(MAX_DEPTH + 10):
        deep = [deep]
    cleaned = storable_document({"deep": deep})
    check_document("data", cleaned)
