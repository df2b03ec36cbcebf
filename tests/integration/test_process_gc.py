"""A serving process leaves what it loaded at start-up out of the garbage collector's full
collections (they stalled every request for about 110 ms), and gives it back when it stops."""

from __future__ import annotations

import gc
from pathlib import Path

from tests.integration.conftest import build_app, running


async def test_start_up_is_frozen_while_the_app_serves_and_thawed_after(
    database_url: str, tmp_path: Path
) -> None:
    app = build_app(database_url, tmp_path)
    assert gc.get_freeze_count() == 0
    async with running(app) as http:
        # Everything imported and built by then: modules, routes, the services' objects.
        assert gc.get_freeze_count() > 50_000
        assert (await http.get("/health")).status_code == 200
    assert gc.get_freeze_count() == 0
