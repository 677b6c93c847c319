"""Phone numbers: registering, Close's shape, PUT validation, permissions, tenancy, events."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.models import Event, PhoneNumber
from tests.conftest import Org
from tests.test_membership import Member, add_member

URL = "/api/v1/phone_number/"
NOT_FOUND = {"error": "Empty query: PhoneNumber matching query does not exist."}
# Close's PhoneNumber schema: every property (the required ones and the rest).
FIELDS = {
    "address_id",
    "bundle_id",
    "carrier",
    "carrier_type",
    "country",
    "date_created",
    "date_updated",
    "forward_to",
    "forward_to_enabled",
    "forward_to_formatted",
    "id",
    "is_group_number",
    "is_premium",
    "is_verified",
    "label",
    "last_billed_price",
    "mms_enabled",
    "next_billing_on",
    "number",
    "number_formatted",
    "organization_id",
    "participants",
    "phone_numbers",
    "phone_numbers_formatted",
    "press_1_to_accept",
    "sms_enabled",
    "supports_mms_to_countries",
    "supports_sms_to_countries",
    "type",
    "user_id",
    "voicemail_greeting_url",
    "was_ported",
}


def register(client: TestClient, who: Org | Member, **body: Any) -> dict[str, Any]:
    payload = {"number": "+16503334444", "label": "Office", **body}
    response = client.post(URL, json=payload, auth=who.auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def put(client: TestClient, who: Org | Member, phone_id: str, body: Any) -> Any:
    return client.put(f"{URL}{phone_id}/", json=body, auth=who.auth)


def events(session_factory: sessionmaker[Session], object_id: str) -> list[Event]:
    with session_factory() as session:
        query = select(Event).where(Event.object_id == object_id).order_by(Event.date_created)
        return list(session.scalars(query))


def test_register_get_list_in_closes_shape(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    phone = register(client, org, number="(650) 333-4444")
    assert set(phone) == FIELDS
    assert phone["id"].startswith("phon_") and len(phone["id"]) == 5 + 43
    assert phone["number"] == "+16503334444"
    assert phone["number_formatted"] == "+1 650-333-4444"
    assert phone["label"] == "Office" and phone["country"] == "US"
    assert phone["user_id"] == org.user_id and phone["organization_id"] == org.id
    assert phone["is_group_number"] is False and phone["type"] == "external"
    assert phone["participants"] == [] and phone["phone_numbers"] == []
    assert phone["forward_to"] is None and phone["forward_to_formatted"] is None
    assert phone["forward_to_enabled"] is False and phone["press_1_to_accept"] is False
    assert phone["carrier"] is None and phone["sms_enabled"] is False
    assert phone["date_created"].endswith("+00:00")

    assert client.get(f"{URL}{phone['id']}/", auth=org.auth).json() == phone
    assert client.get(URL, auth=org.auth).json() == {"data": [phone], "has_more": False}
    [created] = events(session_factory, phone["id"])
    assert created.object_type == "phone_number" and created.action == "created"
    assert created.data == phone


def test_list_filters(client: TestClient, org: Org, session_factory: sessionmaker[Session]) -> None:
    bob = add_member(session_factory, org)
    mine = register(client, org)
    bobs = register(client, bob, number="+442071838750")
    group = register(client, org, number="+16505550100", is_group_number=True)
    assert group["user_id"] is None and group["is_group_number"] is True

    def ids(**params: Any) -> list[str]:
        response = client.get(URL, params=params, auth=org.auth)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["data"]]

    assert ids() == [mine["id"], bobs["id"], group["id"]]
    assert ids(number="+44 20 7183 8750") == [bobs["id"]]
    assert ids(number="6503334444") == [mine["id"]]
    assert ids(user_id=bob.user_id) == [bobs["id"]]
    assert ids(is_group_number="true") == [group["id"]]
    assert ids(is_group_number="false") == [mine["id"], bobs["id"]]
    assert ids(_limit=1, _skip=1) == [bobs["id"]]
    assert client.get(URL, params={"is_group_number": "maybe"}, auth=org.auth).status_code == 400
    assert client.get(URL, params={"number": "12"}, auth=org.auth).status_code == 400


def test_register_rules(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    bob = add_member(session_factory, org)
    register(client, org)
    for body, status, field in (
        ({"number": "+1 650 333 4444"}, 400, "number"),  # already registered
        ({"number": "not a number"}, 400, "number"),
        ({"number": "+16505550101", "user_id": "user_nope"}, 400, "user_id"),
        (
            {"number": "+16505550101", "is_group_number": True, "user_id": org.user_id},
            400,
            "user_id",
        ),
    ):
        response = client.post(URL, json=body, auth=org.auth)
        assert response.status_code == status, (body, response.text)
        assert field in response.json()["field-errors"], body
    # Members add their own numbers only, and no group numbers.
    theirs = client.post(
        URL, json={"number": "+16505550102", "user_id": org.user_id}, auth=bob.auth
    )
    assert theirs.status_code == 403
    group = client.post(
        URL, json={"number": "+16505550103", "is_group_number": True}, auth=bob.auth
    )
    assert group.status_code == 403
    # An admin may add a number for a member.
    assert (
        register(client, org, number="+16505550104", user_id=bob.user_id)["user_id"] == bob.user_id
    )
    with session_factory() as session:
        count = session.scalar(select(func.count()).where(PhoneNumber.organization_id == org.id))
    assert count == 2


def test_put_updates_the_documented_fields(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    phone = register(client, org)
    body = {
        "label": "  Desk  ",
        "forward_to": "(415) 555-2671",
        "forward_to_enabled": True,
        "voicemail_greeting_url": "https://example.com/greeting.mp3",
        "press_1_to_accept": True,
    }
    response = put(client, org, phone["id"], body)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["label"] == "Desk"
    assert updated["forward_to"] == "+14155552671"
    assert updated["forward_to_formatted"] == "+1 415-555-2671"
    assert updated["forward_to_enabled"] is True and updated["press_1_to_accept"] is True
    assert updated["voicemail_greeting_url"] == "https://example.com/greeting.mp3"
    assert client.get(f"{URL}{phone['id']}/", auth=org.auth).json() == updated
    update_event = events(session_factory, phone["id"])[-1]
    assert update_event.action == "updated"
    assert "forward_to" in update_event.changed_fields and update_event.data == updated

    cleared = put(
        client, org, phone["id"], {"voicemail_greeting_url": None, "forward_to_enabled": False}
    )
    assert cleared.status_code == 200 and cleared.json()["voicemail_greeting_url"] is None
    unchanged = put(client, org, phone["id"], {"label": "Desk"})
    assert unchanged.status_code == 200
    assert len(events(session_factory, phone["id"])) == 3  # created, updated, updated


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"voicemail_greeting_url": "http://example.com/greeting.mp3"}, "voicemail_greeting_url"),
        ({"voicemail_greeting_url": "https://"}, "voicemail_greeting_url"),
        ({"voicemail_greeting_url": "https://["}, "voicemail_greeting_url"),
        ({"forward_to": "12"}, "forward_to"),
        ({"forward_to_enabled": True}, "forward_to"),
        ({"participants": []}, "participants"),  # not a group number
        ({"phone_numbers": ["+14155552671"]}, "phone_numbers"),
        ({"label": None}, "label"),
        ({"press_1_to_accept": "yes"}, "press_1_to_accept"),
        ({"number": "+14155552671"}, "number"),  # not updatable
    ],
)
def test_put_refuses_bad_values_and_changes_nothing(
    client: TestClient,
    org: Org,
    session_factory: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    phone = register(client, org)
    response = put(client, org, phone["id"], {"label": "Changed", **body})
    assert response.status_code == 400, response.text
    assert field in response.json()["field-errors"], response.json()
    assert client.get(f"{URL}{phone['id']}/", auth=org.auth).json() == phone
    assert len(events(session_factory, phone["id"])) == 1


def test_group_numbers_take_participants_and_numbers(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    bob = add_member(session_factory, org)
    group = register(client, org, is_group_number=True)
    body = {
        "participants": [bob.user_id, org.user_id, bob.user_id],
        "phone_numbers": ["+14155552671", "(650) 555-0100"],
    }
    response = put(client, org, group["id"], body)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["participants"] == [bob.user_id, org.user_id]
    assert updated["phone_numbers"] == ["+14155552671", "+16505550100"]
    assert updated["phone_numbers_formatted"] == ["+1 415-555-2671", "+1 650-555-0100"]
    bad = put(client, org, group["id"], {"participants": ["user_nope"]})
    assert bad.status_code == 400 and "participants" in bad.json()["field-errors"]
    assert put(client, bob, group["id"], {"label": "Mine now"}).status_code == 403


def test_only_owners_or_admins_change_personal_numbers(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    bob = add_member(session_factory, org)
    carol = add_member(session_factory, org)
    bobs = register(client, bob)
    assert put(client, carol, bobs["id"], {"label": "Carol's"}).status_code == 403
    assert client.delete(f"{URL}{bobs['id']}/", auth=carol.auth).status_code == 403
    assert put(client, bob, bobs["id"], {"label": "Bob's"}).json()["label"] == "Bob's"
    assert put(client, org, bobs["id"], {"label": "Admin's"}).json()["label"] == "Admin's"

    deleted = client.delete(f"{URL}{bobs['id']}/", auth=bob.auth)
    assert deleted.status_code == 200 and deleted.json() == {}
    assert client.get(f"{URL}{bobs['id']}/", auth=org.auth).json() == NOT_FOUND
    assert events(session_factory, bobs["id"])[-1].action == "deleted"


def test_other_organizations_numbers_are_404(client: TestClient, org: Org, other_org: Org) -> None:
    theirs = register(client, other_org)
    url = f"{URL}{theirs['id']}/"
    assert client.get(url, auth=org.auth).json() == NOT_FOUND
    assert put(client, org, theirs["id"], {"label": "Mine"}).status_code == 404
    assert client.delete(url, auth=org.auth).status_code == 404
    assert client.get(URL, auth=org.auth).json()["data"] == []
    # The same number may be registered in another organization.
    assert register(client, org)["number"] == theirs["number"]
    assert client.get(url, auth=other_org.auth).json()["label"] == "Office"


def test_renting_is_refused_with_closes_status_body(client: TestClient, org: Org) -> None:
    body = {"country": "US", "sharing": "personal"}
    response = client.post(f"{URL}request/internal/", json=body, auth=org.auth)
    assert response.status_code == 400
    assert response.json() == {
        "status": "error",
        "error": "Clove cannot rent phone numbers; add one with POST /phone_number/.",
    }
