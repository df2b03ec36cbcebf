"""Database URLs as users write them (the seed's `postgresql://...`) and as we use them."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


# libpq query parameters a seed-style URL may carry, and asyncpg's names for them.
_POSTGRES_QUERY = {"sslmode": "ssl", "connect_timeout": "timeout"}
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


def to_async_url(raw: str) -> URL:
    """Map a user's database URL (the seed's `postgresql://...` included) to an async driver.

    Raises ValueError with a message that never contains the password.
    """
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        raise ValueError(
            "not a database URL; expected postgresql://user:pass@host/db or sqlite:///path"
        ) from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database {url.drivername!r}; use postgresql://... or sqlite:///..."
        )
    if driver.startswith("sqlite"):
        if not url.database or url.database == ":memory:":
            raise ValueError(
                "an in-memory SQLite database is not shared between connections; "
                "give a file: sqlite:///path/to/file.db"
            )
        if url.query:
            raise ValueError("a SQLite URL takes no query parameters")
        return url.set(drivername=driver)
    if not url.database:
        raise ValueError("a PostgreSQL URL needs a database name: postgresql://user@host/db")
    return url.set(drivername=driver, query=_postgres_query(url))


def _postgres_query(url: URL) -> dict[str, str]:
    query: dict[str, str] = {}
    for name, value in url.query.items():
        if name not in _POSTGRES_QUERY:
            raise ValueError(
                f"unsupported URL parameter {name!r}; supported: {', '.join(_POSTGRES_QUERY)}"
            )
        if not isinstance(value, str):
            raise ValueError(f"URL parameter {name!r} is given twice")
        if name == "sslmode" and value not in _SSL_MODES:
            raise ValueError(f"sslmode must be one of {', '.join(sorted(_SSL_MODES))}")
        if name == "connect_timeout" and not value.isdigit():
            raise ValueError("connect_timeout must be a whole number of seconds")
        query[_POSTGRES_QUERY[name]] = value
    return query


_USERINFO = re.compile(r"//[^/@]*@")


def mask_url(raw: str) -> str:
    """A URL with its password hidden, for logs and messages — even when it does not parse."""
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _USERINFO.sub("//***@", raw)
