"""workflow-engine: a REST API server that runs AI workflows durably.

The public Python API: `create_app(settings)` builds the server's FastAPI app; `load_settings()`
reads the configuration; `ServiceBootstrapManager` declares and runs services.
"""

from workflow_engine.app import create_app
from workflow_engine.bootstrap import Health, ServiceBootstrapManager
from workflow_engine.config import Settings, load_settings
from workflow_engine.version import __version__

__all__ = [
    "Health",
    "ServiceBootstrapManager",
    "Settings",
    "__version__",
    "create_app",
    "load_settings",
]
