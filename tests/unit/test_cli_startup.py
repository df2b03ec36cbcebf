"""The CLI answers `--help` and `version` without loading the server."""

from __future__ import annotations

from tests.conftest import python_output
from workflow_engine import cli
from workflow_engine.auth import accounts


def test_help_and_version_do_not_import_the_server() -> None:
    script = (
        "import sys\n"
        "from workflow_engine import cli\n"
        "heavy = [m for m in ('workflow_engine.app', 'fastapi', 'mcp', 'workflow_engine.db',\n"
        "                     'opentelemetry')\n"
        "         if m in sys.modules]\n"
        "print(heavy)\n"
    )
    assert python_output(script).strip() == "[]"


def test_the_cli_names_the_same_default_tenant_as_the_accounts() -> None:
    assert cli.DEFAULT_TENANT == accounts.DEFAULT_TENANT
