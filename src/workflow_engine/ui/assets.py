"""The dashboard's static files, read once and kept in memory.

The folder is flat and its names are plain (`app.js`, `page-runs.js`, `icon.svg`): a request
names one of the files found at the first request, never a path, so nothing a caller sends
reaches the file system. Each file carries a strong ETag (its SHA-256): with
`Cache-Control: no-cache` a browser asks again every time and gets a 304 without a body,
and never runs a stale module after an upgrade.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).with_name("static")
ASSET_NAME = re.compile(r"[a-z0-9-]+\.(js|css|svg)")
MEDIA_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str  # quoted, as the header carries it

    def matches(self, if_none_match: str | None) -> bool:
        """Whether an `If-None-Match` header names this version (RFC 9110 13.1.2: compared
        weakly, so a `W/` a proxy added does not matter)."""
        if if_none_match is None:
            return False
        tags = [tag.strip() for tag in if_none_match.split(",")]
        return any(tag == "*" or tag.removeprefix("W/") == self.etag for tag in tags)


def read_asset(path: Path) -> Asset:
    body = path.read_bytes()
    extension = path.suffix.removeprefix(".")
    return Asset(body, MEDIA_TYPES[extension], f'"{hashlib.sha256(body).hexdigest()}"')


@functools.cache
def assets() -> dict[str, Asset]:
    """Every asset of the folder by name. Read at the first request and kept: restart the
    server to serve changed files."""
    if not STATIC_DIR.is_dir():
        return {}
    return {
        path.name: read_asset(path)
        for path in sorted(STATIC_DIR.iterdir())
        if ASSET_NAME.fullmatch(path.name) and path.is_file()
    }


def find(name: str) -> Asset | None:
    if not ASSET_NAME.fullmatch(name):
        return None
    return assets().get(name)
