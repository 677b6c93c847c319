"""`POST /data/search/` through `sequence_subscription`: contacts (and leads through their
contacts, or directly) by the sequences they are subscribed to and how those runs stand."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from tests.conftest import Org
from tests.test_sequences import SUB_URL, account, contact, email_sequence, ok

URL = "/api/v1/data/search/"


def subscription_field(name: str, condition: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "field_condition",
        "field": {
            "type": "regular_field",
            "object_type": "sequence_subscription",
            "field_name": name,
        },
        "condition": condition,
    }


def in_sequence(sequence_id: str) -> dict[str, Any]:
    return subscription_field(
        "sequence_id",
        {"type": "reference", "reference_type": "sequence", "object_ids": [sequence_id]},
    )


def has_subscription(this: str, query: dict[str, Any], negate: bool = False) -> dict[str, Any]:
    return {
        "type": "has_related",
        "this_object_type": this,
        "related_object_type": "sequence_subscription",
        "related_query": query,
        "negate": negate,
    }


def search(client: TestClient, org: Org, object_type: str, node: dict[str, Any]) -> set[str]:
    query = {
        "type": "and",
        "queries": [{"type": "object_type", "object_type": object_type}, node],
    }
    found = ok(client.post(URL, json={"query": query}, auth=org.auth))["data"]
    return {item["id"] for item in found}


def test_contacts_and_leads_by_subscription(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    seq, other_seq = email_sequence(client, org), email_sequence(client, org)
    sender = account(session_factory, org)
    jane, john, lone = (contact(client, org, (f"{n}@acme.com",)) for n in ("jane", "john", "lo"))

    def subscribe(c: dict[str, Any], sequence_id: str) -> dict[str, Any]:
        body = {"sequence_id": sequence_id, "contact_id": c["id"], "sender_account_id": sender}
        return ok(client.post(SUB_URL, json=body, auth=org.auth), 201)

    subscribe(jane, seq["id"])
    paused = subscribe(john, other_seq["id"])
    ok(client.put(f"{SUB_URL}{paused['id']}/", json={"status": "paused"}, auth=org.auth))

    assert search(client, org, "contact", has_subscription("contact", in_sequence(seq["id"]))) == {
        jane["id"]
    }
    # A lead reaches subscriptions through its contacts, or directly.
    through_contacts = {
        "type": "has_related",
        "this_object_type": "lead",
        "related_object_type": "contact",
        "related_query": has_subscription("contact", in_sequence(seq["id"])),
    }
    assert search(client, org, "lead", through_contacts) == {jane["lead_id"]}
    direct = has_subscription("lead", in_sequence(other_seq["id"]))
    assert search(client, org, "lead", direct) == {john["lead_id"]}

    by_status = has_subscription(
        "contact", subscription_field("status", {"type": "term", "values": ["paused"]})
    )
    assert search(client, org, "contact", by_status) == {john["id"]}
    by_reason = has_subscription(
        "contact", subscription_field("status_reason", {"type": "term", "values": ["manual"]})
    )
    assert search(client, org, "contact", by_reason) == {john["id"]}
    created = has_subscription(
        "contact",
        subscription_field(
            "date_created",
            {
                "type": "moment_range",
                "on_or_after": {"type": "fixed_utc", "value": "2000-01-01T00:00:00Z"},
            },
        ),
    )
    assert search(client, org, "contact", created) == {jane["id"], john["id"]}
    never = has_subscription("contact", {"type": "match_all"}, negate=True)
    assert lone["id"] in search(client, org, "contact", never)
    assert jane["id"] not in search(client, org, "contact", never)

    # Another organization sees none of it, even with the sequence's id.
    node = has_subscription("contact", in_sequence(seq["id"]))
    assert search(client, other_org, "contact", node) == set()


def test_text_query_clause_finds_subscribed_contacts(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    seq = email_sequence(client, org)
    sender = account(session_factory, org)
    jane = contact(client, org)
    contact(client, org, ("other@acme.com",))
    body = {"sequence_id": seq["id"], "contact_id": jane["id"], "sender_account_id": sender}
    ok(client.post(SUB_URL, json=body, auth=org.auth), 201)
    response = client.get(
        "/api/v1/lead/",
        params={"query": f"contact(sequence_subscription(sequence:{seq['id']}))"},
        auth=org.auth,
    )
    assert [lead["id"] for lead in ok(response)["data"]] == [jane["lead_id"]]
