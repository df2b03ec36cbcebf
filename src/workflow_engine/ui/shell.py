"""The dashboard's HTML shell: the same bytes for every page and every caller.

The shell embeds the role -> permission matrix so that the dashboard hides what a role may not
use; it holds nothing about the caller (who is signed in is learnt from `/api/v1/auth/me`), so
it is rendered once per process.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from workflow_engine.auth.permissions import ROLE_PERMISSIONS, Permission, Role
from workflow_engine.version import __version__

SHELL_FILE = Path(__file__).with_name("shell.html")
# Where the configuration goes: the shell file is the contract's text, placeholder included.
CONFIG_PLACEHOLDER = "{...}"
# Inside a <script> element the HTML parser looks for `</script` and `<!--`; JSON escapes
# stop any of them from appearing, whatever a value holds.
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def ui_config() -> dict[str, object]:
    """What the dashboard needs to know before it signs in: the server's version and which
    permissions each role has (in the order the API declares them)."""
    return {
        "version": __version__,
        "roles": {
            role.value: [p.value for p in Permission if p in ROLE_PERMISSIONS[role]]
            for role in Role
        },
    }


def script_json(value: object) -> str:
    """`value` as JSON that can sit inside a `<script>` element."""
    return json.dumps(value, separators=(",", ":")).translate(_SCRIPT_SAFE)


@functools.cache
def shell_bytes() -> bytes:
    template = SHELL_FILE.read_text(encoding="utf-8")
    if template.count(CONFIG_PLACEHOLDER) != 1:
        raise RuntimeError(f"{SHELL_FILE} must hold {CONFIG_PLACEHOLDER} exactly once")
    return template.replace(CONFIG_PLACEHOLDER, script_json(ui_config())).encode("utf-8")
