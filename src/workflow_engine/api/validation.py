"""Input types that every database accepts: PostgreSQL refuses NUL characters and strings that
are not valid UTF-8 (lone surrogates), which Python and SQLite let through (pitfall 7 in
docs/architecture.md)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator


def storable_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def is_storable_text(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        storable_text(value)
    except ValueError:
        return False
    return True


StorableText = Annotated[str, AfterValidator(storable_text)]


def utc_moment(value: datetime) -> datetime:
    """An aware moment in UTC; one UTC cannot hold (year 1 east of Greenwich) is refused."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the range of dates this server stores") from None


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


def moment_text(value: object) -> object:
    """Only a date-time as the document says (RFC 3339 text): pydantic would also take a
    number, or a string of digits, as Unix time, so `since=0` meant 1970."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError("must be a date and time with its offset, e.g. 2026-01-31T08:00:00Z")
    return value


# A point in time from a client: with its UTC offset (a naive time is ambiguous), stored as UTC.
Moment = Annotated[AwareDatetime, BeforeValidator(moment_text), AfterValidator(utc_moment)]

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def day_text(value: object) -> object:
    """Only a date as the document says (`YYYY-MM-DD`): pydantic would also take a number as
    Unix time, so `to=0` meant 1970-01-01."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise ValueError("must be a date, e.g. 2026-01-31")
    return value


# A calendar day from a client.
Day = Annotated[date, BeforeValidator(day_text)]
