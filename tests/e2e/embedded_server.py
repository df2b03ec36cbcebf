"""An embedding application: `create_app` plus its own router, served by our server module.

Run by the shutdown test with the wheel's Python; the extra route lives here, in the tests,
not in the product.
"""

from __future__ import annotations

import sys

from fastapi import Request

from workflow_engine import create_app, load_settings
from workflow_engine.observability.logging import configure_logging
from workflow_engine.server import serve


def main() -> int:
    settings, _ = load_settings()
    configure_logging(settings.log_level, settings.effective_log_format)
    app = create_app(settings)

    @app.post("/api/v1/upload", status_code=201)
    async def upload(request: Request) -> dict[str, int]:
        return {"received_bytes": len(await request.body())}

    return serve(app, settings)


if __name__ == "__main__":
    sys.exit(main())
