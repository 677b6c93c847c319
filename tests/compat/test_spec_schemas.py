"""Clove's real responses checked against Close's spec, operation by operation.

Where the spec types the success response, the body is validated with jsonschema (local
`$ref`s resolved inside the spec). Most operations Clove has today are typed only as "Empty
response body" there; for those the body must carry every field name that the research notes
(shared/docs/close-api.md §5.3-5.5, from Close's docs and examples) document.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove import compat
from tests.conftest import SPEC, Org, bearer_token
from tests.test_membership import add_member

NO_SPEC = f"Close's OpenAPI spec is not at {SPEC} (set CLOVE_CLOSE_SPEC to its path)"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
# Newer Close services (events, sequences, webhooks) use naive UTC (close-api.md §2.3).
NAIVE_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
NAIVE_RESOURCES = {"event"}
# Objects of newer services that are naive through and through (close-api.md §2.3).
NAIVE_OBJECTS = {"sequence", "sequence_subscription", "webhook"}

# Field names as documented for Close's objects (close-api.md §5.3-5.5).
USER = {
    "id",
    "email",
    "first_name",
    "last_name",
    "image",
    "date_created",
    "date_updated",
    "organizations",
}
ME = USER | {"email_accounts", "memberships", "phone_numbers", "last_used_timezone"}
ORGANIZATION = {
    "id",
    "name",
    "created_by",
    "updated_by",
    "date_created",
    "date_updated",
    "lead_statuses",
    "pipelines",
    "memberships",
    "inactive_memberships",
    "plan_type",
    "currency",
    "currency_symbol",
}
MEMBERSHIP = {
    "id",
    "user_id",
    "organization_id",
    "role_id",
    "role",
    "permissions_granted",
    "auto_record_calls",
    "track_email_opens",
    "may_workflows_impersonate",
    "default_caller_id",
    "hangup_recording_url",
    "primary_personal_number",
    "onboarding_status",
    "is_free",
    "plan_type",
}
ORG_MEMBERSHIP = MEMBERSHIP | {
    "user_email",
    "user_first_name",
    "user_last_name",
    "user_full_name",
    "user_phone",
}
ROLE = {
    "id",
    "name",
    "editable",
    "permissions",
    "visibility_user_lcf_behavior",
    "visibility_user_lcf_ids",
}
ENVELOPE = {"data", "has_more"}
STATUS = {"id", "label"}
CUSTOM_FIELD = {
    "id",
    "name",
    "description",
    "type",
    "choices",
    "accepts_multiple_values",
    "editable_with_roles",
    "organization_id",
    "created_by",
    "updated_by",
    "date_created",
    "date_updated",
}
SCHEMA_FIELD = CUSTOM_FIELD | {"is_shared"}
EVENT = {
    "id",
    "organization_id",
    "object_type",
    "object_id",
    "lead_id",
    "action",
    "user_id",
    "request_id",
    "api_key_id",
    "data",
    "previous_data",
    "changed_fields",
    "meta",
    "date_created",
    "date_updated",
}

# close-api.md §5.9.
EMAIL_TEMPLATE = {
    "id",
    "name",
    "subject",
    "body",
    "attachments",
    "is_shared",
    "is_archived",
    "organization_id",
    "created_by",
    "updated_by",
    "date_created",
    "date_updated",
    "used_by_sequences",
}
# close-api.md §5.6: the 26 default `_fields` of a connected account, and Send As.
CONNECTED_ACCOUNT = {
    "_type",
    "available_calendars",
    "available_features",
    "calendar_receive_status",
    "calendly",
    "date_created",
    "default_identity",
    "email",
    "email_receive_status",
    "enabled_features",
    "has_meeting_creation_scopes",
    "id",
    "identities",
    "imap",
    "is_imap_archive_sync_enabled",
    "latest_receive_error",
    "latest_send_error",
    "lead_suggestions_updated_at",
    "organization_id",
    "receive_status",
    "send_status",
    "smtp",
    "sync_all_calendars",
    "synced_calendars",
    "user_id",
    "zoom_account_plan",
}
SEND_AS = {"id", "allowing_user_id", "allowed_user_id", "organization_id"}
# Operations Clove answers with a deliberate 4xx in Close's shape (nothing to rent from).
REFUSED = {("POST", "/phone_number/request/internal/")}

RENDERED_TEMPLATE = {
    "subject",
    "body",
    "email",
    "contact_id",
    "contact_display_name",
    "lead_id",
    "lead_display_name",
}

# close-api.md §4.1-4.3.
SEQUENCE = {
    "id",
    "name",
    "status",
    "timezone",
    "schedule",
    "steps",
    "organization_id",
    "created_by_id",
    "updated_by_id",
    "date_created",
    "date_updated",
}
SEQUENCE_ONE = SEQUENCE | {"subscription_counts_by_status"}
SEQUENCE_STEP = {
    "id",
    "step_type",
    "delay",
    "email_template_id",
    "threading",
    "required",
    "step_allowed_delay",
    "created_by_id",
    "updated_by_id",
    "date_created",
    "date_updated",
}
SUBSCRIPTION = {
    "id",
    "sequence_id",
    "contact_id",
    "contact_email",
    "lead_id",
    "sender_account_id",
    "sender_name",
    "sender_email",
    "calls_assigned_to",
    "start_date",
    "status",
    "status_reason",
    "organization_id",
    "created_by_id",
    "updated_by_id",
    "date_created",
    "date_updated",
}

# Close's task object (docs examples; the spec types task responses as empty bodies).
TASK = {
    "_type",
    "id",
    "organization_id",
    "lead_id",
    "lead_name",
    "contact_id",
    "contact_name",
    "assigned_to",
    "assigned_to_name",
    "text",
    "date",
    "due_date",
    "is_dateless",
    "is_complete",
    "created_by",
    "updated_by",
    "date_created",
    "date_updated",
}
# The generic activity list (untyped in the spec): what every activity has.
ACTIVITY = {"_type", "id", "organization_id", "lead_id", "activity_at", "date_created"}

# Close's webhook subscription object (close-api.md §6.2; the spec types responses as empty).
WEBHOOK = {
    "id",
    "url",
    "events",
    "status",
    "verify_ssl",
    "signature_key",
    "created_by",
    "updated_by",
    "date_created",
    "date_updated",
    "counters",
    "health_status",
    "latest_error",
    "pause_reason",
    "recent_consecutive_fail_buckets_cnt",
}

# (selector, field names): "" is the body, "x[]" every item of the list under "x".
Documented = list[tuple[str, set[str]]]
DOCUMENTED: dict[tuple[str, str], Documented] = {
    ("GET", "/me/"): [("", ME), ("organizations[]", ORGANIZATION), ("memberships[]", MEMBERSHIP)],
    ("GET", "/user/"): [("", ENVELOPE), ("data[]", USER)],
    ("GET", "/user/{}/"): [("", USER)],
    ("GET", "/organization/{}/"): [("", ORGANIZATION), ("memberships[]", ORG_MEMBERSHIP)],
    ("PUT", "/organization/{}/"): [("", ORGANIZATION), ("memberships[]", ORG_MEMBERSHIP)],
    ("POST", "/membership/"): [("", MEMBERSHIP)],
    ("PUT", "/membership/"): [("", {"count"})],
    ("PUT", "/membership/{}/"): [("", MEMBERSHIP)],
    ("GET", "/membership/{}/pinned_views/"): [("", {"saved_view_ids"})],
    ("PUT", "/membership/{}/pinned_views/"): [("", {"saved_view_ids"})],
    ("GET", "/role/"): [("", ENVELOPE), ("data[]", ROLE)],
    ("GET", "/role/{}/"): [("", ROLE)],
    ("GET", "/status/lead/"): [("", ENVELOPE), ("data[]", STATUS)],
    ("POST", "/status/lead/"): [("", STATUS)],
    ("PUT", "/status/lead/{}/"): [("", STATUS)],
    ("DELETE", "/status/lead/{}/"): [("", set())],
    ("POST", "/lead/merge/"): [("", set())],
    ("DELETE", "/lead/{}/"): [("", set())],
    ("DELETE", "/contact/{}/"): [("", set())],
    **{
        (method, path): [("", CUSTOM_FIELD)]
        for t in ("lead", "contact")
        for method, path in (
            ("POST", f"/custom_field/{t}/"),
            ("GET", f"/custom_field/{t}/{{}}/"),
            ("PUT", f"/custom_field/{t}/{{}}/"),
        )
    },
    ("GET", "/custom_field/lead/"): [("", ENVELOPE), ("data[]", CUSTOM_FIELD)],
    ("GET", "/custom_field/contact/"): [("", ENVELOPE), ("data[]", CUSTOM_FIELD)],
    ("DELETE", "/custom_field/lead/{}/"): [("", set())],
    ("DELETE", "/custom_field/contact/{}/"): [("", set())],
    ("GET", "/custom_field_schema/{}/"): [("", {"fields"}), ("fields[]", SCHEMA_FIELD)],
    ("PUT", "/custom_field_schema/{}/"): [("", {"fields"}), ("fields[]", SCHEMA_FIELD)],
    ("GET", "/event/"): [("", {"data", "cursor_next", "cursor_previous"}), ("data[]", EVENT)],
    ("GET", "/event/{}/"): [("", EVENT)],
    ("DELETE", "/saved_search/{}/"): [("", set())],
    ("GET", "/email_template/"): [("", ENVELOPE), ("data[]", EMAIL_TEMPLATE)],
    ("POST", "/email_template/"): [("", EMAIL_TEMPLATE)],
    ("GET", "/email_template/{}/"): [("", EMAIL_TEMPLATE)],
    ("PUT", "/email_template/{}/"): [("", EMAIL_TEMPLATE)],
    ("DELETE", "/email_template/{}/"): [("", set())],
    ("GET", "/email_template/{}/render/"): [("", RENDERED_TEMPLATE)],
    ("GET", "/unsubscribe/email/"): [("", ENVELOPE), ("data[]", {"email"})],
    ("POST", "/unsubscribe/email/"): [("", {"email"})],
    ("DELETE", "/unsubscribe/email/{}/"): [("", {"email"})],
    ("GET", "/activity/"): [("", ENVELOPE), ("data[]", ACTIVITY)],
    ("DELETE", "/activity/email/{}/"): [("", set())],
    ("GET", "/webhook/"): [("", ENVELOPE), ("data[]", WEBHOOK)],
    ("POST", "/webhook/"): [("", WEBHOOK)],
    ("GET", "/webhook/{}/"): [("", WEBHOOK)],
    ("PUT", "/webhook/{}/"): [("", WEBHOOK)],
    ("DELETE", "/webhook/{}/"): [("", set())],
    ("GET", "/task/"): [("", ENVELOPE), ("data[]", TASK)],
    ("POST", "/task/"): [("", TASK)],
    ("GET", "/task/{}/"): [("", TASK)],
    ("PUT", "/task/{}/"): [("", TASK)],
    ("DELETE", "/task/{}/"): [("", set())],
    ("GET", "/sequence/"): [("", ENVELOPE), ("data[]", SEQUENCE)],
    ("POST", "/sequence/"): [("", SEQUENCE), ("steps[]", SEQUENCE_STEP)],
    ("GET", "/sequence/{}/"): [("", SEQUENCE_ONE), ("steps[]", SEQUENCE_STEP)],
    ("PUT", "/sequence/{}/"): [("", SEQUENCE_ONE), ("steps[]", SEQUENCE_STEP)],
    ("DELETE", "/sequence/{}/"): [("", set())],
    ("GET", "/sequence_subscription/"): [("", ENVELOPE), ("data[]", SUBSCRIPTION)],
    ("POST", "/sequence_subscription/"): [("", SUBSCRIPTION)],
    ("GET", "/sequence_subscription/{}/"): [("", SUBSCRIPTION)],
    ("PUT", "/sequence_subscription/{}/"): [("", SUBSCRIPTION)],
    ("GET", "/connected_account/"): [("", ENVELOPE), ("data[]", CONNECTED_ACCOUNT)],
    ("GET", "/connected_account/{}/"): [("", CONNECTED_ACCOUNT)],
    ("GET", "/send_as/"): [("", ENVELOPE), ("data[]", SEND_AS)],
    ("POST", "/send_as/"): [("", SEND_AS)],
    ("GET", "/send_as/{}/"): [("", SEND_AS)],
    ("POST", "/send_as/bulk/"): [("", {"data"}), ("data[]", SEND_AS)],
    ("DELETE", "/send_as/"): [("", set())],
    ("DELETE", "/send_as/{}/"): [("", set())],
    ("DELETE", "/phone_number/{}/"): [("", set())],
}

# Close's documented example of a contact Smart View.
CONTACT_VIEW = {
    "name": "CEOs",
    "type": "contact",
    "s_query": {
        "query": {
            "type": "and",
            "queries": [
                {"type": "object_type", "object_type": "contact"},
                {
                    "type": "field_condition",
                    "field": {
                        "type": "regular_field",
                        "object_type": "contact",
                        "field_name": "title",
                    },
                    "condition": {"type": "text", "mode": "full_words", "value": "CEO"},
                },
            ],
        }
    },
}


@dataclass
class Sample:
    """One real request that should succeed."""

    json: Any = None
    params: dict[str, str] = field(default_factory=dict)
    oauth: bool = False  # the operation is for OAuth apps only


def samples(org: Org, known: dict[str, str]) -> dict[tuple[str, str], Sample]:
    """Request bodies for operations that need one (GETs without a body need no entry)."""
    return {
        ("POST", "/lead/"): Sample(
            {
                "name": "Bluth Company",
                "status": "Qualified",
                "contacts": [
                    {
                        "name": "Gob",
                        "emails": [{"email": "gob@example.com", "type": "office"}],
                        "phones": [{"phone": "8004445555", "type": "office"}],
                        "urls": [{"url": "https://example.com/gob", "type": "url"}],
                    }
                ],
                "addresses": [{"label": "business", "city": "San Francisco", "country": "US"}],
            }
        ),
        ("PUT", "/lead/{}/"): Sample({"description": "Banana stand", "status": "Customer"}),
        ("DELETE", "/lead/{}/"): Sample({}),
        ("POST", "/lead/merge/"): Sample(
            {"source": known["merge_source"], "destination": known["lead"]}
        ),
        ("POST", "/contact/"): Sample(
            {"lead_id": known["lead"], "name": "Lucille", "phones": [{"phone": "+14155552671"}]}
        ),
        ("PUT", "/contact/{}/"): Sample(
            {"title": "Matriarch", "emails": [{"email": "lucille@example.com"}]}
        ),
        ("DELETE", "/contact/{}/"): Sample({}),
        ("PUT", "/organization/{}/"): Sample({"name": "Renamed by the schema test"}),
        ("POST", "/membership/"): Sample(
            {"email": f"invited-{secrets.token_hex(4)}@example.com", "role_id": "user"},
            oauth=True,
        ),
        ("PUT", "/membership/"): Sample(
            {"_params": {"id__in": org.membership_id}, "track_email_opens": False}
        ),
        ("PUT", "/membership/{}/"): Sample({"track_email_opens": False}),
        ("PUT", "/membership/{}/pinned_views/"): Sample({"saved_view_ids": ["save_a", "save_b"]}),
        ("POST", "/status/lead/"): Sample({"label": f"Status {secrets.token_hex(3)}"}),
        ("PUT", "/status/lead/{}/"): Sample({"label": f"Renamed {secrets.token_hex(3)}"}),
        ("DELETE", "/status/lead/{}/"): Sample({}),
        ("POST", "/custom_field/lead/"): Sample(
            {"name": f"F {secrets.token_hex(3)}", "type": "text"}
        ),
        ("POST", "/custom_field/contact/"): Sample(
            {
                "name": f"F {secrets.token_hex(3)}",
                "type": "choices",
                "choices": ["a", "b"],
                "accepts_multiple_values": True,
            }
        ),
        ("PUT", "/custom_field/lead/{}/"): Sample({"name": f"Renamed {secrets.token_hex(3)}"}),
        ("PUT", "/custom_field/contact/{}/"): Sample({"description": "Renamed"}),
        ("DELETE", "/custom_field/lead/{}/"): Sample({}),
        ("DELETE", "/custom_field/contact/{}/"): Sample({}),
        ("PUT", "/custom_field_schema/{}/"): Sample({"fields": []}),
        ("POST", "/saved_search/"): Sample(CONTACT_VIEW),
        ("PUT", "/saved_search/{}/"): Sample(
            {"name": "every lead", "description": "Renamed", "is_shared": True}
        ),
        ("DELETE", "/saved_search/{}/"): Sample({}),
        ("POST", "/email_template/"): Sample(
            {"name": "Intro", "subject": 'Hi {{ contact.first_name|default:"there" }}'}
        ),
        ("PUT", "/email_template/{}/"): Sample({"body": "Renamed", "is_shared": True}),
        ("DELETE", "/email_template/{}/"): Sample({}),
        ("GET", "/email_template/{}/render/"): Sample(
            params={"lead_id": known["lead"], "contact_id": known["contact"]}
        ),
        ("POST", "/unsubscribe/email/"): Sample({"email": "sample@example.com"}),
        ("DELETE", "/unsubscribe/email/{}/"): Sample({}),
        ("POST", "/sequence/"): Sample(
            {
                "name": "My Sequence",
                "timezone": "America/Los_Angeles",
                "schedule": {"ranges": [{"weekday": 1, "start": "09:00", "end": "16:59"}]},
                "steps": [
                    {"step_type": "call", "delay": 0, "required": True},
                    {"delay": 86400, "email_template_id": known["email_template"]},
                ],
            }
        ),
        ("PUT", "/sequence/{}/"): Sample({"name": "Renamed", "steps": [{"step_type": "call"}]}),
        ("DELETE", "/sequence/{}/"): Sample({}),
        ("GET", "/sequence_subscription/"): Sample(params={"sequence_id": known["sequence"]}),
        ("POST", "/sequence_subscription/"): Sample(
            {"sequence_id": known["spare_sequence"], "contact_id": known["contact"]}
        ),
        ("PUT", "/sequence_subscription/{}/"): Sample({"status": "paused"}),
        ("POST", "/webhook/"): Sample(WEBHOOK_BODY),
        ("PUT", "/webhook/{}/"): Sample({"status": "paused"}),
        ("DELETE", "/webhook/{}/"): Sample({}),
        ("POST", "/bulk_action/sequence_subscription/"): Sample(
            BULK_SUBSCRIBE | known_sender(known)
        ),
        ("POST", "/bulk_action/edit/"): Sample(BULK_EDIT | {"lead_status_id": known["status"]}),
        ("POST", "/bulk_action/delete/"): Sample(BULK_DELETE),
        ("POST", "/bulk_action/email/"): Sample(bulk_email(known)),
        ("POST", "/activity/email/"): Sample(
            {
                "lead_id": known["lead"],
                "status": "inbox",
                "sender": "Ann <ann@example.com>",
                "subject": "Re: hello",
                "body_text": "Thanks!",
            }
        ),
        ("PUT", "/activity/email/{}/"): Sample({"subject": "Renamed", "status": "draft"}),
        ("DELETE", "/activity/email/{}/"): Sample({}),
        ("POST", "/task/"): Sample(
            {"lead_id": known["lead"], "text": "Call", "date": "2026-12-01"}
        ),
        ("PUT", "/task/{}/"): Sample({"is_complete": True}),
        ("DELETE", "/task/{}/"): Sample({}),
        ("POST", "/send_as/"): Sample(
            {
                "allowing_user_id": org.user_id,
                "allowed_user_id": known["send_as_member"],
            }
        ),
        ("POST", "/send_as/bulk/"): Sample({"allowed_user_ids": [known["send_as_member"]]}),
        ("DELETE", "/send_as/"): Sample(
            {},
            params={
                "allowing_user_id": org.user_id,
                "allowed_user_id": known["revoked_member"],
            },
        ),
        ("DELETE", "/send_as/{}/"): Sample({}),
        ("PUT", "/phone_number/{}/"): Sample(
            {"label": "Desk", "voicemail_greeting_url": "https://example.com/hello.mp3"}
        ),
        ("DELETE", "/phone_number/{}/"): Sample({}),
        ("POST", "/phone_number/request/internal/"): Sample(
            {"country": "US", "sharing": "personal"}
        ),
    }


def ids(org: Org, client: TestClient) -> dict[str, str]:
    """A real id for a path parameter, by the resource (first path segment)."""
    statuses = client.get("/api/v1/status/lead/", auth=org.auth).json()["data"]
    # Creating a status records an event, so the event log has one to show.
    client.post(
        "/api/v1/status/lead/", json={"label": f"For events {secrets.token_hex(3)}"}, auth=org.auth
    )
    events = client.get("/api/v1/event/", params={"user_id": org.user_id}, auth=org.auth)
    fields = {
        t: client.post(
            f"/api/v1/custom_field/{t}/", json={"name": "Sample", "type": "text"}, auth=org.auth
        ).json()["id"]
        for t in ("lead", "contact")
    }
    # Not the first status: the DELETE /status/lead/{id}/ sample deletes that one.
    lead_body = {"name": "Sample", "status_id": statuses[-1]["id"], "contacts": [{"name": "Ann"}]}
    lead = client.post("/api/v1/lead/", json=lead_body, auth=org.auth).json()
    source = client.post("/api/v1/lead/", json=lead_body, auth=org.auth).json()
    view = client.post("/api/v1/saved_search/", json=CONTACT_VIEW, auth=org.auth).json()
    template = client.post(
        "/api/v1/email_template/", json={"name": "Sample", "body": "Hi"}, auth=org.auth
    ).json()
    client.post("/api/v1/unsubscribe/email/", json={"email": "gone@example.com"}, auth=org.auth)
    # Call-only sequences: a subscription to one needs no sender account or address.
    calls = {"name": "Sample", "steps": [{"step_type": "call"}]}
    sequence, spare = (
        client.post("/api/v1/sequence/", json=calls, auth=org.auth).json() for _ in range(2)
    )
    subscription = client.post(
        "/api/v1/sequence_subscription/",
        json={"sequence_id": sequence["id"], "contact_id": lead["contact_ids"][0]},
        auth=org.auth,
    ).json()
    accounts = email_accounts(org, client)
    bulk = client.post(
        "/api/v1/bulk_action/sequence_subscription/",
        json=BULK_SUBSCRIBE | known_sender({**accounts, "spare_sequence": spare["id"]}),
        auth=org.auth,
    ).json()
    bulk_mail = client.post(
        "/api/v1/bulk_action/email/",
        json=bulk_email({**accounts, "email_template": template["id"]}),
        auth=org.auth,
    ).json()
    edit = client.post(
        "/api/v1/bulk_action/edit/",
        json=BULK_EDIT | {"lead_status_id": statuses[0]["id"]},
        auth=org.auth,
    ).json()
    # Bulk deletes target a lead of their own: the other samples need theirs.
    target = {"name": BULK_DELETE_TARGET, "status_id": statuses[-1]["id"]}
    client.post("/api/v1/lead/", json=target, auth=org.auth)
    bulk_delete = client.post("/api/v1/bulk_action/delete/", json=BULK_DELETE, auth=org.auth)
    draft = {"lead_id": lead["id"], "status": "draft", "subject": "Draft"}
    email = client.post("/api/v1/activity/email/", json=draft, auth=org.auth).json()
    task = client.post("/api/v1/task/", json={"lead_id": lead["id"]}, auth=org.auth).json()
    webhook = client.post("/api/v1/webhook/", json=WEBHOOK_BODY, auth=org.auth).json()
    phone = client.post(
        "/api/v1/phone_number/", json={"number": "+16503334444"}, auth=org.auth
    ).json()
    return {
        **accounts,
        "phone_number": phone["id"],
        "lead": lead["id"],
        "contact": lead["contact_ids"][0],
        "merge_source": source["id"],
        "organization": org.id,
        "user": org.user_id,
        "membership": org.membership_id,
        "role": "admin",
        "status": statuses[0]["id"],
        "event": events.json()["data"][0]["id"],
        "custom_field/lead": fields["lead"],
        "custom_field/contact": fields["contact"],
        "custom_field_schema": "lead",
        "saved_search": view["id"],
        "email_template": template["id"],
        "unsubscribe": "gone@example.com",
        "sequence": sequence["id"],
        "spare_sequence": spare["id"],
        "sequence_subscription": subscription["id"],
        "bulk_action/sequence_subscription": bulk["id"],
        "bulk_action/edit": edit["id"],
        "bulk_action/delete": bulk_delete.json()["id"],
        "bulk_action/email": bulk_mail["id"],
        "activity": email["id"],
        "task": task["id"],
        "webhook": webhook["id"],
    }


WEBHOOK_BODY = {
    "url": "https://hooks.example.com/close",
    "events": [{"object_type": "lead", "action": "created"}],
}

# Close's example request (close-api.md §3.3), sent for real.
BULK_SUBSCRIBE = {
    "action_type": "subscribe",
    "contact_preference": "lead",
    "results_limit": None,
    "s_query": {
        "type": "and",
        "queries": [
            {"type": "object_type", "object_type": "lead"},
            {
                "type": "field_condition",
                "field": {"type": "regular_field", "object_type": "lead", "field_name": "name"},
                "condition": {"type": "text", "mode": "full_words", "value": "ACME Inc."},
            },
        ],
    },
    "sort": [
        {
            "direction": "desc",
            "field": {"type": "regular_field", "object_type": "lead", "field_name": "date_created"},
        }
    ],
}


# Close's bulk edit request (close-api.md §3.5) over the same selection.
BULK_EDIT = {
    "type": "set_lead_status",
    "s_query": BULK_SUBSCRIBE["s_query"],
    "sort": BULK_SUBSCRIBE["sort"],
    "results_limit": None,
}

BULK_DELETE_TARGET = "Bulk delete target"
# Close's example request (close-api.md §3.6) shape, aimed at the lead made for it.
BULK_DELETE = {
    "bulk_object_type": "lead",
    "results_limit": None,
    "s_query": {
        "type": "and",
        "queries": [
            {"type": "object_type", "object_type": "lead"},
            {
                "type": "field_condition",
                "field": {"type": "regular_field", "object_type": "lead", "field_name": "name"},
                "condition": {"type": "text", "mode": "full_words", "value": BULK_DELETE_TARGET},
            },
        ],
    },
    "sort": BULK_SUBSCRIBE["sort"],
    "send_done_email": False,
}


def known_sender(known: dict[str, str]) -> dict[str, str]:
    return {
        "sender_account_id": known["connected_account"],
        "sender_email": "sender@example.com",
        "sender_name": "John Doe",
        "sequence_id": known["spare_sequence"],
    }


def bulk_email(known: dict[str, str]) -> dict[str, Any]:
    """Close's example bulk email request (close-api.md §3.4), with a sender of ours."""
    return {
        "template_id": known["email_template"],
        "contact_preference": "lead",
        "email_account_id": known["connected_account"],
        "sender": "sender@example.com",
        "s_query": BULK_SUBSCRIBE["s_query"],
        "results_limit": None,
        "sort": [],
        "send_done_email": True,
    }


def email_accounts(org: Org, client: TestClient) -> dict[str, str]:
    """A connected account (not checked over SMTP), and Send As grants to two new members."""
    body = {
        "email": "sender@example.com",
        "smtp": {
            "host": "smtp.example.com",
            "port": 587,
            "username": "u",
            "password": "p",
        },
        "verify": False,
    }
    account = client.post("/api/v1/connected_account/", json=body, auth=org.auth).json()
    session_factory = client.app.state.session_factory  # type: ignore[attr-defined]
    members = [add_member(session_factory, org).user_id for _ in range(3)]
    grants = client.post(
        "/api/v1/send_as/bulk/", json={"allowed_user_ids": members[1:]}, auth=org.auth
    ).json()["data"]
    return {
        "connected_account": account["id"],
        "send_as": next(g["id"] for g in grants if g["allowed_user_id"] == members[1]),
        "send_as_member": members[0],  # not granted yet: POST /send_as/ grants it
        "revoked_member": members[2],  # granted: DELETE /send_as/?... revokes it
    }


def resource_of(path: str) -> str:
    """What a path's id names: the first segment, or two for `/custom_field/<type>/` and
    `/bulk_action/<kind>/`."""
    segments = path.strip("/").split("/")
    return "/".join(segments[:2]) if segments[0] in ("custom_field", "bulk_action") else segments[0]


def _implemented() -> list[Any]:
    if not SPEC.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_SPEC), id="no-spec")]
    result = compat.coverage(compat.load_spec(SPEC))
    return [pytest.param(op, id=f"{op.method} {op.path}") for op in result.implemented_operations()]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPEC.is_file():
        pytest.skip(NO_SPEC)
    return compat.load_spec(SPEC)


def validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for `schema` whose `#/components/...` references resolve inside the spec."""
    root = {**schema, "components": spec.get("components", {})}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(spec: dict[str, Any], schema: dict[str, Any], body: Any) -> list[str]:
    errors = validator(spec, schema).iter_errors(body)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}" for e in errors)


def select(body: Any, selector: str) -> list[Any]:
    if not selector:
        return [body]
    name = selector.removesuffix("[]")
    items = body.get(name) if isinstance(body, dict) else None
    assert isinstance(items, list) and items, f"expected a non-empty list under {name!r}"
    return items


def missing_fields(body: Any, documented: Documented) -> list[str]:
    problems = []
    for selector, names in documented:
        for index, obj in enumerate(select(body, selector)):
            where = f"{selector.replace('[]', f'[{index}]')}" or "<body>"
            if not isinstance(obj, dict):
                problems.append(f"{where}: not an object")
                continue
            absent = sorted(names - set(obj))
            if absent:
                problems.append(f"{where}: missing {absent}")
    return problems


def bad_dates(body: Any, pattern: re.Pattern[str] = ISO_UTC, where: str = "") -> list[str]:
    """Every `date_*` value anywhere must be ISO 8601 UTC: `+00:00` for core objects, naive for
    newer services (close-api.md §2.3)."""
    found = []
    if isinstance(body, dict):
        for key, value in body.items():
            if key.startswith("date_") and value is not None and not pattern.match(str(value)):
                found.append(f"{where}{key}={value!r}")
            found += bad_dates(value, pattern, f"{where}{key}.")
    elif isinstance(body, list):
        for index, value in enumerate(body):
            found += bad_dates(value, pattern, f"{where}{index}.")
    return found


@pytest.mark.parametrize("op", _implemented())
def test_response_matches_close(
    op: compat.Operation,
    spec: dict[str, Any],
    client: TestClient,
    org: Org,
    session_factory: sessionmaker[Session],
) -> None:
    known = ids(org, client)
    sample = samples(org, known).get(op.key, Sample())
    if op.method != "GET" and sample.json is None:
        pytest.fail(f"no sample request for {op.method} {op.path}: add one to samples()")
    resource = resource_of(op.path)
    if "{" in op.path and resource not in known:
        pytest.fail(f"no real id for {op.path}: add one to ids()")
    path = compat.API_PREFIX + re.sub(r"\{[^}]*\}", known.get(resource, ""), op.path)
    if sample.oauth:
        headers = {"Authorization": f"Bearer {bearer_token(session_factory, org)}"}
        response = client.request(op.method, path, json=sample.json, headers=headers)
    else:
        response = client.request(
            op.method, path, json=sample.json, params=sample.params, auth=org.auth
        )

    if op.key in REFUSED:
        assert response.status_code == 400 and "error" in response.json(), response.text
        return
    code, schema = compat.success_response(spec, op)
    assert response.status_code == code, response.text
    body = response.json() if response.content or code != 204 else {}
    if resource in NAIVE_RESOURCES:
        # An event's own dates are naive; the objects it carries keep their own format.
        events = body["data"] if "cursor_next" in body else [body]
        own = [{k: v for k, v in e.items() if k not in ("data", "previous_data")} for e in events]
        assert not bad_dates(own, NAIVE_UTC), bad_dates(own, NAIVE_UTC)
    elif resource in NAIVE_OBJECTS:
        assert not bad_dates(body, NAIVE_UTC), bad_dates(body, NAIVE_UTC)
    else:
        assert not bad_dates(body), bad_dates(body)
    if compat.is_typed(spec, schema):
        assert not schema_errors(spec, schema, body), schema_errors(spec, schema, body)
        return
    documented = DOCUMENTED.get(op.key)
    if documented is None:
        pytest.fail(f"{op.method} {op.path} is untyped in the spec: add its fields to DOCUMENTED")
    assert not missing_fields(body, documented), missing_fields(body, documented)


def minimal_instance(spec: dict[str, Any], schema: Any) -> Any:
    """The smallest value of a schema's type (required properties only), for the self-test."""
    schema = compat.resolve(spec, schema)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = "null" if "null" in kind else kind[0]
    if "oneOf" in schema or "anyOf" in schema:
        return minimal_instance(spec, (schema.get("oneOf") or schema["anyOf"])[0])
    if kind == "object":
        props = schema.get("properties", {})
        return {
            name: minimal_instance(spec, props.get(name, {})) for name in schema.get("required", [])
        }
    if kind == "string":
        return "2013-02-01T00:54:51.331000+00:00" if schema.get("format") == "date-time" else "x"
    return {"array": [], "null": None, "boolean": False, "integer": 0, "number": 0}[kind]


def test_schema_validation_resolves_refs_and_catches_mismatches(spec: dict[str, Any]) -> None:
    """The validator used above really validates: a typed spec schema (the lead) accepts a
    well-formed body and rejects missing fields and wrong types, also behind nested `$ref`s."""
    ops = {(op.method, op.path): op for op in compat.spec_operations(spec)}
    _code, schema = compat.success_response(spec, ops[("GET", "/lead/{id}/")])
    assert compat.is_typed(spec, schema)
    lead = minimal_instance(spec, schema)
    assert lead and schema_errors(spec, schema, lead) == []
    assert any("required property" in e for e in schema_errors(spec, schema, {}))
    assert any(e.startswith("id:") for e in schema_errors(spec, schema, {**lead, "id": 5}))
    nested = {**lead, "contacts": [{"emails": "not a list"}]}
    assert any(e.startswith("contacts/0/emails:") for e in schema_errors(spec, schema, nested))


def test_documented_field_check_catches_a_missing_field() -> None:
    body = {"data": [{"id": "user_1"}], "has_more": False}
    assert missing_fields(body, [("", ENVELOPE), ("data[]", {"id", "email"})]) == [
        "data[0]: missing ['email']"
    ]
    assert bad_dates({"x": [{"date_created": "2020-01-01T00:00:00Z"}]}) == [
        "x.0.date_created='2020-01-01T00:00:00Z'"
    ]
