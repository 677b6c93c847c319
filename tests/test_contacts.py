"""`/contact/`: Close's contact objects, phone and email normalisation, the lead side of contact
changes, events, tenancy, and a fixed number of queries per list page."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.models import ContactEmail
from tests.conftest import Org
from tests.test_leads import (
    GOB,
    LUCILLE,
    add_text_field,
    assert_close_schema,
    close_spec,
    counting_queries,
    create_lead,
    crm_rows,
    events_of,
    statuses,
)

URL = "/api/v1/contact/"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return close_spec()


def create_contact(client: TestClient, org: Org, **body: Any) -> dict[str, Any]:
    response = client.post(URL, json=body, auth=org.auth)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def get_lead(client: TestClient, org: Org, lead_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/lead/{lead_id}/", auth=org.auth)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# --- Create --------------------------------------------------------------------------------------


def test_create_on_a_lead(client: TestClient, org: Org) -> None:
    lead = create_lead(client, org, contacts=[GOB])
    contact = create_contact(client, org, lead_id=lead["id"], **LUCILLE, title="Matriarch")
    assert contact["id"].startswith("cont_") and contact["lead_id"] == lead["id"]
    assert contact["organization_id"] == org.id
    assert (contact["name"], contact["display_name"], contact["title"]) == (
        "Lucille",
        "Lucille",
        "Matriarch",
    )
    assert contact["emails"] == [
        {"email": "Lucille@Example.com", "type": "home", "is_unsubscribed": False}
    ]
    assert contact["phones"] == contact["urls"] == []
    assert contact["integration_links"] == contact["recent_calls"] == []
    assert contact["subscriptions"] == [] and contact["timezone"] is None
    assert contact["created_by"] == contact["updated_by"] == org.user_id
    assert contact["date_created"] == contact["date_updated"]
    after = get_lead(client, org, lead["id"])
    assert after["contact_ids"] == [*lead["contact_ids"], contact["id"]]
    assert after["contacts"][-1] == contact
    assert after["date_updated"] > lead["date_updated"]
    assert client.get(f"{URL}{contact['id']}/", auth=org.auth).json() == contact


def test_create_records_the_contact_and_the_leads_new_contact_ids(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = create_lead(client, org)
    contact = create_contact(client, org, lead_id=lead["id"], name="Buster")
    [created] = events_of(session_factory, object_id=contact["id"])
    assert (created.object_type, created.action, created.lead_id) == (
        "contact",
        "created",
        lead["id"],
    )
    assert created.data == contact
    [lead_ev] = events_of(session_factory, object_id=lead["id"], action="updated")
    assert "contact_ids" in lead_ev.changed_fields
    assert lead_ev.previous_data["contact_ids"] == []
    assert lead_ev.data == get_lead(client, org, lead["id"])


def test_without_lead_id_a_lead_named_after_the_contact_is_created(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    contact = create_contact(client, org, name="Tobias Fünke", emails=[{"email": "t@example.com"}])
    lead = get_lead(client, org, contact["lead_id"])
    assert lead["name"] == "Tobias Fünke"
    assert lead["status_id"] == statuses(client, org)["Potential"]
    assert lead["contacts"] == [contact]
    evs = events_of(session_factory, lead_id=lead["id"])
    assert [(e.object_type, e.action) for e in evs] == [
        ("lead", "created"),
        ("contact", "created"),
    ]
    assert evs[0].data == lead


def test_responses_match_closes_spec(client: TestClient, org: Org, spec: dict[str, Any]) -> None:
    contact = create_contact(client, org, **GOB)
    assert_close_schema(spec, "Contact", contact)
    assert_close_schema(spec, "Contact", client.get(f"{URL}{contact['id']}/", auth=org.auth).json())
    updated = client.put(f"{URL}{contact['id']}/", json={"title": "CEO"}, auth=org.auth).json()
    assert_close_schema(spec, "Contact", updated)
    listed = client.get(URL, auth=org.auth).json()
    assert listed["data"], "an empty list proves nothing"
    assert_close_schema(spec, "contacts_list_Response_200", listed)


@pytest.mark.parametrize(
    ("given", "phone", "formatted", "country"),
    [
        ("8004445555", "+18004445555", "+1 800-444-5555", "US"),
        ("(415) 555-2671", "+14155552671", "+1 415-555-2671", "US"),
        (" +1 650 333 4444 ", "+16503334444", "+1 650-333-4444", "US"),
        ("+44 20 7946 0958", "+442079460958", "+44 20 7946 0958", "GB"),
        ("+49 1511 2345678", "+4915112345678", "+49 1511 2345678", "DE"),
    ],
)
def test_phones_are_normalised_to_e164(
    client: TestClient, org: Org, given: str, phone: str, formatted: str, country: str
) -> None:
    contact = create_contact(client, org, name="P", phones=[{"phone": given, "type": "mobile"}])
    assert contact["phones"] == [
        {"phone": phone, "phone_formatted": formatted, "type": "mobile", "country": country}
    ]


@pytest.mark.parametrize("phone", ["123", "abc", "+1 123 456 7890", "", "+999 1234"])
def test_invalid_phones_are_a_field_error(
    client: TestClient, org: Org, session_factory: sessionmaker[Session], phone: str
) -> None:
    response = client.post(URL, json={"name": "P", "phones": [{"phone": phone}]}, auth=org.auth)
    assert response.status_code == 400
    assert "phones" in response.json()["field-errors"]
    assert set(crm_rows(session_factory, org.id).values()) == {0}


def test_emails_are_stored_with_a_lower_cased_copy(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    contact = create_contact(client, org, emails=[{"email": " Gob@Bluth.Example.COM "}])
    assert contact["emails"][0]["email"] == "Gob@Bluth.Example.COM"
    assert contact["display_name"] == "Gob@Bluth.Example.COM"  # no name: the first email
    with session_factory() as session:
        row = session.scalars(select(ContactEmail).filter_by(contact_id=contact["id"])).one()
        assert (row.email_lower, row.type) == ("gob@bluth.example.com", "office")


def test_display_name_is_empty_without_name_and_email(client: TestClient, org: Org) -> None:
    contact = create_contact(client, org, phones=[{"phone": "8004445555"}])
    assert contact["name"] is None and contact["display_name"] == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"emails": [{"email": "no-at-sign"}]}, "emails"),
        ({"emails": [{"email": "a@b.c", "kind": "x"}]}, "emails.0.kind"),
        ({"emails": "a@b.c"}, "emails"),
        ({"urls": [{"url": ""}]}, "urls.0.url"),
        ({"name": ["Gob"]}, "name"),
        ({"title": "x" * 1001}, "title"),
        ({"lead_id": "lead_nope"}, "lead_id"),
        ({"hobby": "magic"}, "hobby"),
        ({"custom.cf_doesnotexist": "x"}, "custom.cf_doesnotexist"),
    ],
)
def test_bad_input_is_a_400_field_error_and_writes_nothing(
    client: TestClient,
    org: Org,
    session_factory: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    response = client.post(URL, json={"name": "X", **body}, auth=org.auth)
    assert response.status_code == 400, response.text
    assert field in response.json()["field-errors"], response.json()
    assert set(crm_rows(session_factory, org.id).values()) == {0}


def test_read_only_fields_are_ignored(client: TestClient, org: Org) -> None:
    original = create_contact(client, org, **GOB)
    copy = create_contact(client, org, **original)
    assert copy["id"] != original["id"] and copy["lead_id"] == original["lead_id"]
    for key in ("name", "title", "emails", "phones", "urls"):
        assert copy[key] == original[key]


# --- Update --------------------------------------------------------------------------------------


def test_put_is_partial_and_given_lists_replace(client: TestClient, org: Org) -> None:
    contact = create_contact(client, org, **GOB)
    new_emails = [{"email": "gob@magic.example.com", "type": "other"}, {"email": "g@x.example"}]
    response = client.put(f"{URL}{contact['id']}/", json={"emails": new_emails}, auth=org.auth)
    assert response.status_code == 200
    updated = response.json()
    assert [e["email"] for e in updated["emails"]] == ["gob@magic.example.com", "g@x.example"]
    assert [e["type"] for e in updated["emails"]] == ["other", "office"]
    assert updated["phones"] == contact["phones"] and updated["urls"] == contact["urls"]
    assert (updated["name"], updated["title"]) == (contact["name"], contact["title"])
    assert updated["date_updated"] > contact["date_updated"]
    assert client.get(f"{URL}{contact['id']}/", auth=org.auth).json() == updated

    cleared = client.put(
        f"{URL}{contact['id']}/", json={"phones": [], "title": None}, auth=org.auth
    )
    assert cleared.json()["phones"] == [] and cleared.json()["title"] is None
    assert cleared.json()["emails"] == updated["emails"]


def test_update_event_holds_only_the_changed_fields(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    contact = create_contact(client, org, **GOB)
    lead_before = get_lead(client, org, contact["lead_id"])
    body = {"title": "Magician", "name": "Gob", "phones": [{"phone": "+1 (800) 444-5555"}]}
    updated = client.put(f"{URL}{contact['id']}/", json=body, auth=org.auth).json()
    [ev] = events_of(session_factory, object_id=contact["id"], action="updated")
    assert (ev.object_type, ev.lead_id) == ("contact", contact["lead_id"])
    assert ev.changed_fields == ["date_updated", "title"]  # the same phone, the same name
    assert ev.previous_data == {
        "date_updated": contact["date_updated"],
        "title": "Sr. Vice President",
    }
    assert ev.data == updated
    # The lead object embeds the contact, so its date moves, but Close records no lead event.
    lead_after = get_lead(client, org, contact["lead_id"])
    assert lead_after["date_updated"] > lead_before["date_updated"]
    assert lead_after["contacts"] == [updated]
    assert events_of(session_factory, object_id=contact["lead_id"], action="updated") == []


def test_an_update_that_changes_nothing_records_nothing(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    contact = create_contact(client, org, **GOB)
    body = {k: contact[k] for k in ("name", "title", "emails", "phones", "urls", "lead_id")}
    same = client.put(f"{URL}{contact['id']}/", json=body, auth=org.auth).json()
    assert same == contact
    assert events_of(session_factory, object_id=contact["id"], action="updated") == []


def test_custom_values_on_update(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    field_id = add_text_field(session_factory, org, "contact")
    key = f"custom.{field_id}"
    contact = create_contact(client, org, name="Gob", **{key: "Magic"})
    assert contact[key] == "Magic"
    path = f"{URL}{contact['id']}/"
    assert client.put(path, json={key: "Magic"}, auth=org.auth).json() == contact
    updated = client.put(path, json={key: "Illusions"}, auth=org.auth).json()
    assert updated[key] == "Illusions"
    [ev] = events_of(session_factory, object_id=contact["id"], action="updated")
    assert (ev.changed_fields, ev.previous_data[key]) == ([key, "date_updated"], "Magic")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"emails": None}, "emails"),
        ({"phones": [{"phone": "12"}]}, "phones"),
        ({"lead_id": "OTHER_LEAD"}, "lead_id"),
        ({"name": "Ok", "hobby": "magic"}, "hobby"),
        ({"custom.cf_doesnotexist": 1}, "custom.cf_doesnotexist"),
    ],
)
def test_bad_updates_are_400_and_change_nothing(
    client: TestClient,
    org: Org,
    session_factory: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    contact = create_contact(client, org, **GOB)
    other = create_lead(client, org, name="Other")
    body = {k: other["id"] if v == "OTHER_LEAD" else v for k, v in body.items()}
    rows = crm_rows(session_factory, org.id)
    response = client.put(f"{URL}{contact['id']}/", json=body, auth=org.auth)
    assert response.status_code == 400, response.text
    assert field in response.json()["field-errors"]
    assert client.get(f"{URL}{contact['id']}/", auth=org.auth).json() == contact
    assert crm_rows(session_factory, org.id) == rows


# --- Delete --------------------------------------------------------------------------------------


def test_delete_removes_the_contact_and_records_both_sides(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = create_lead(client, org, contacts=[GOB, LUCILLE])
    gob_id, lucille_id = lead["contact_ids"]
    response = client.delete(f"{URL}{gob_id}/", auth=org.auth)
    assert (response.status_code, response.json()) == (200, {})
    assert client.get(f"{URL}{gob_id}/", auth=org.auth).status_code == 404
    after = get_lead(client, org, lead["id"])
    assert after["contact_ids"] == [lucille_id]
    rows = crm_rows(session_factory, org.id)
    assert (rows["Contact"], rows["ContactPhone"], rows["ContactUrl"], rows["ContactEmail"]) == (
        1,
        0,
        0,
        1,  # Lucille's
    )
    [deleted] = events_of(session_factory, object_id=gob_id, action="deleted")
    assert deleted.data is None and deleted.previous_data == lead["contacts"][0]
    assert deleted.lead_id == lead["id"]
    [lead_ev] = events_of(session_factory, object_id=lead["id"], action="updated")
    assert lead_ev.previous_data["contact_ids"] == [gob_id, lucille_id]
    assert lead_ev.data == after


def test_unknown_contact_is_404_in_closes_words(client: TestClient, org: Org) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, f"{URL}cont_nope/", json={}, auth=org.auth)
        assert response.status_code == 404
        assert response.json() == {"error": "Empty query: Contact matching query does not exist."}


# --- Tenancy -------------------------------------------------------------------------------------


def test_another_organization_cannot_reach_a_contact(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = create_lead(client, org, contacts=[GOB])
    contact = lead["contacts"][0]
    rows = crm_rows(session_factory, org.id)
    path = f"{URL}{contact['id']}/"
    for method, body in [("GET", None), ("PUT", {"name": "Taken"}), ("DELETE", None)]:
        response = client.request(method, path, json=body, auth=other_org.auth)
        assert response.status_code == 404, method
    response = client.post(URL, json={"lead_id": lead["id"], "name": "Mole"}, auth=other_org.auth)
    assert response.status_code == 400
    assert response.json()["field-errors"] == {"lead_id": "Object does not exist."}
    listed = client.get(URL, params={"lead_id": lead["id"]}, auth=other_org.auth).json()
    assert listed == {"data": [], "has_more": False, "total_results": 0}
    assert client.get(f"/api/v1/lead/{lead['id']}/", auth=org.auth).json() == lead
    assert crm_rows(session_factory, org.id) == rows
    assert set(crm_rows(session_factory, other_org.id).values()) == {0}


# --- Lists ---------------------------------------------------------------------------------------


def test_list_filters_by_lead_and_pages(client: TestClient, org: Org) -> None:
    first = create_lead(client, org, contacts=[GOB, LUCILLE])
    second = create_lead(client, org, contacts=[{"name": "Buster"}])
    everything = client.get(URL, auth=org.auth).json()
    assert [c["name"] for c in everything["data"]] == ["Buster", "Lucille", "Gob"]
    assert (everything["has_more"], everything["total_results"]) == (False, 3)

    only_first = client.get(URL, params={"lead_id": first["id"]}, auth=org.auth).json()
    assert sorted(c["id"] for c in only_first["data"]) == sorted(first["contact_ids"])
    assert only_first["total_results"] == 2

    page = client.get(URL, params={"_skip": 1, "_limit": 1}, auth=org.auth).json()
    assert [c["name"] for c in page["data"]] == ["Lucille"] and page["has_more"] is True
    narrow = client.get(URL, params={"_fields": "id,lead_id", "_limit": 1}, auth=org.auth).json()
    assert narrow["data"] == [{"id": second["contact_ids"][0], "lead_id": second["id"]}]


def test_a_list_page_costs_the_same_queries_whatever_its_size(
    client: TestClient, org: Org, engine: Engine
) -> None:
    for i in range(25):
        create_lead(client, org, name=f"Lead {i}", contacts=[GOB, LUCILLE])
    with counting_queries(engine) as one:
        small = client.get(URL, params={"_limit": 1}, auth=org.auth).json()
    with counting_queries(engine) as fifty:
        large = client.get(URL, params={"_limit": 50}, auth=org.auth).json()
    assert (len(small["data"]), len(large["data"])) == (1, 50)
    assert all(c["emails"] for c in large["data"])
    assert len(one) == len(fifty), (one, fifty)
