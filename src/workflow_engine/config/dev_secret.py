"""The development signing secret, generated once into DATA_DIR."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr

DEV_SECRET_FILE = "jwt-secret"  # noqa: S105 (a file name)


def development_jwt_secret(data_dir: Path) -> tuple[SecretStr, bool]:
    """The development signing secret kept in DATA_DIR, made on first use.

    Returns the secret and whether it was just created. Created once by the CLI before any
    worker process forks, so that every process signs with the same key (pitfall 2 in
    docs/architecture.md).
    """
    path = data_dir / DEV_SECRET_FILE
    if path.is_file():
        return SecretStr(path.read_text(encoding="utf-8").strip()), False
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the database and secrets live here
    value = secrets.token_urlsafe(48)
    # O_EXCL: two processes racing to create it cannot both write; the loser reads the winner's.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return SecretStr(path.read_text(encoding="utf-8").strip()), False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
    return SecretStr(value), True
