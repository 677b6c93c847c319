"""Built-in roles. Custom roles are not stored yet; membership `role_id` names one of these."""

from __future__ import annotations

from typing import Any

ALL_PERMISSIONS = [
    "bulk_delete",
    "bulk_edit",
    "bulk_email",
    "bulk_import",
    "bulk_sequence_subscriptions",
    "calling",
    "delete_leads",
    "delete_own_activities",
    "edit_others_activities",
    "export",
    "manage_customizations",
    "manage_group_numbers",
    "manage_organization",
    "manage_team_smart_views",
    "view_all_leads",
]

_USER_DENIED = {
    "manage_organization",
    "manage_customizations",
    "manage_group_numbers",
    "bulk_delete",
    "manage_team_smart_views",
}

BUILTIN_ROLES: dict[str, dict[str, Any]] = {
    "admin": {"name": "Admin", "permissions": list(ALL_PERMISSIONS)},
    "user": {
        "name": "User",
        "permissions": [p for p in ALL_PERMISSIONS if p not in _USER_DENIED],
    },
}


def role_permissions(role_id: str) -> list[str]:
    return list(BUILTIN_ROLES.get(role_id, BUILTIN_ROLES["user"])["permissions"])


def serialize_role(role_id: str) -> dict[str, Any]:
    role = BUILTIN_ROLES[role_id]
    return {
        "id": role_id,
        "name": role["name"],
        "editable": False,
        "permissions": list(role["permissions"]),
        "visibility_user_lcf_behavior": None,
        "visibility_user_lcf_ids": None,
    }
