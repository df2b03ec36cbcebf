"""The permission matrix in docs/security.md is the code's."""

from __future__ import annotations

import re
from pathlib import Path

from workflow_engine.auth.permissions import Permission, Role, allows

SECURITY_DOC = Path(__file__).parents[2] / "docs" / "security.md"


def test_documented_matrix_matches_the_code() -> None:
    lines = SECURITY_DOC.read_text().splitlines()
    header = next(line for line in lines if line.startswith("| Permission |"))
    roles = [Role(cell.strip()) for cell in header.strip("|").split("|")[1:]]
    documented: dict[Permission, dict[Role, bool]] = {}
    for line in lines:
        match = re.match(r"^\| `([a-z_:]+)` \|(.*)\|$", line)
        if match:
            cells = [cell.strip() for cell in match.group(2).split("|")]
            documented[Permission(match.group(1))] = {
                role: cell == "yes" for role, cell in zip(roles, cells, strict=True)
            }
    assert set(documented) == set(Permission)
    for permission, by_role in documented.items():
        for role, allowed in by_role.items():
            assert allows(role, permission) == allowed, (permission, role)


def test_admin_has_every_permission_and_viewer_only_reads() -> None:
    assert all(allows(Role.admin, p) for p in Permission)
    assert not any(allows(Role.viewer, p) for p in Permission if not p.endswith(":read"))
