"""Roles and what each may do. This matrix is the single source; docs/security.md shows it.

Every route declares the one permission it needs (`api.security.require`); a role has a
permission or not — no route checks a role by name.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    admin = "admin"
    operator = "operator"
    viewer = "viewer"
    service = "service"


class Permission(StrEnum):
    profile_read = "profile:read"
    workflows_read = "workflows:read"
    workflows_run = "workflows:run"
    workflows_approve = "workflows:approve"  # decide a run's approval steps
    schedules_read = "schedules:read"
    schedules_write = "schedules:write"
    events_read = "events:read"
    events_append = "events:append"
    audit_read = "audit:read"
    registry_read = "registry:read"
    registry_write = "registry:write"
    users_manage = "users:manage"
    api_keys_manage = "api_keys:manage"


_READ = {
    Permission.profile_read,
    Permission.workflows_read,
    Permission.schedules_read,
    Permission.events_read,
    Permission.registry_read,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.viewer: frozenset(_READ),
    Role.operator: frozenset(
        _READ
        | {
            Permission.workflows_run,
            Permission.workflows_approve,
            Permission.schedules_write,
            Permission.events_append,
        }
    ),
    Role.service: frozenset(_READ | {Permission.registry_write, Permission.events_append}),
    Role.admin: frozenset(Permission),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def roles_with(permission: Permission) -> list[Role]:
    return [role for role in Role if allows(role, permission)]
