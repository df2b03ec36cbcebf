"""workflow-engine: a REST API server that runs AI workflows durably.

The public Python API: `create_app(settings)` builds the server's FastAPI app; `load_settings()`
reads the configuration; `ServiceBootstrapManager` declares and runs services.

Names are imported on first use (PEP 562), so that importing one submodule — the CLI's
`version` or `--help`, a worker — does not load the whole server first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from workflow_engine.version import __version__

if TYPE_CHECKING:
    from workflow_engine.app import create_app
    from workflow_engine.bootstrap import Health, ServiceBootstrapManager
    from workflow_engine.config import Settings, load_settings

_WHERE = {
    "create_app": "workflow_engine.app",
    "Health": "workflow_engine.bootstrap",
    "ServiceBootstrapManager": "workflow_engine.bootstrap",
    "Settings": "workflow_engine.config",
    "load_settings": "workflow_engine.config",
}

__all__ = [
    "Health",
    "ServiceBootstrapManager",
    "Settings",
    "__version__",
    "create_app",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'workflow_engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
