"""Custom fields: definitions (CRUD, events, rules), schema order, and the values written on
leads and contacts through `apply_custom_values`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.custom_field.service import apply_custom_values, custom_keys, render_custom_values
from clove.errors import ValidationFailed
from clove.kit.ids import new_id
from clove.models import Contact, CustomField, Event, Lead, LeadStatus, Membership
from tests.conftest import Org
from tests.test_membership import add_member

CORE_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
FIELD_KEYS = {
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


def url(object_type: str = "lead", field_id: str = "") -> str:
    return f"/api/v1/custom_field/{object_type}/" + (f"{field_id}/" if field_id else "")


def schema_url(object_type: str = "lead") -> str:
    return f"/api/v1/custom_field_schema/{object_type}/"


def create(client: TestClient, org: Org, object_type: str = "lead", **body: Any) -> dict[str, Any]:
    body.setdefault("name", f"Field {new_id('cf')[-6:]}")
    body.setdefault("type", "text")
    response = client.post(url(object_type), json=body, auth=org.auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def names(client: TestClient, org: Org, object_type: str = "lead") -> list[str]:
    return [f["name"] for f in client.get(url(object_type), auth=org.auth).json()["data"]]


def schema_ids(client: TestClient, org: Org, object_type: str = "lead") -> list[str]:
    return [f["id"] for f in client.get(schema_url(object_type), auth=org.auth).json()["fields"]]


def events(session_factory: sessionmaker[Session], object_id: str) -> list[Event]:
    with session_factory() as session:
        query = select(Event).where(Event.object_id == object_id).order_by(Event.date_created)
        return list(session.scalars(query))


def add_lead(
    session_factory: sessionmaker[Session], org: Org, custom: dict[str, Any] | None = None
) -> str:
    with session_factory.begin() as session:
        status_id = session.scalars(
            select(LeadStatus.id).where(LeadStatus.organization_id == org.id)
        ).first()
        lead = Lead(
            id=new_id("lead"),
            organization_id=org.id,
            name="Acme",
            status_id=status_id,
            custom=custom or {},
        )
        session.add(lead)
        return lead.id


def add_contact(
    session_factory: sessionmaker[Session], org: Org, custom: dict[str, Any] | None = None
) -> str:
    lead_id = add_lead(session_factory, org)
    with session_factory.begin() as session:
        contact = Contact(
            id=new_id("cont"),
            organization_id=org.id,
            lead_id=lead_id,
            name="Ada",
            custom=custom or {},
        )
        session.add(contact)
        return contact.id


def custom_of(session_factory: sessionmaker[Session], model: Any, object_id: str) -> Any:
    with session_factory() as session:
        return session.scalar(select(model.custom).where(model.id == object_id))


def field_row(session_factory: sessionmaker[Session], field_id: str) -> CustomField | None:
    with session_factory() as session:
        return session.get(CustomField, field_id)


def apply(
    session_factory: sessionmaker[Session],
    org: Org,
    writes: dict[str, Any],
    current: dict[str, Any] | None = None,
    object_type: str = "lead",
) -> dict[str, Any]:
    with session_factory() as session:
        return apply_custom_values(session, org.id, object_type, current or {}, writes)


def rejected(
    session_factory: sessionmaker[Session],
    org: Org,
    writes: dict[str, Any],
    current: dict[str, Any] | None = None,
    object_type: str = "lead",
) -> dict[str, str]:
    """The field errors of writes that must fail as one ValidationFailed."""
    with pytest.raises(ValidationFailed) as failure:
        apply(session_factory, org, writes, current, object_type)
    assert failure.value.errors == []
    return failure.value.field_errors


def assert_close_error(response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} or set(body) == {"errors", "field-errors"}, body


# --- Definitions -------------------------------------------------------------------------------


def test_create_get_update_delete_each_record_an_event(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    created = create(client, org, name="Industry", type="choices", choices=["SaaS", "Retail"])
    assert set(created) == FIELD_KEYS
    assert re.fullmatch(r"cf_[A-Za-z0-9]{43}", created["id"])
    assert created["choices"] == ["SaaS", "Retail"]
    assert created["accepts_multiple_values"] is False
    assert created["editable_with_roles"] == []
    assert created["organization_id"] == org.id
    assert created["created_by"] == created["updated_by"] == org.user_id
    assert CORE_DATE.match(created["date_created"]) and CORE_DATE.match(created["date_updated"])
    assert client.get(url("lead", created["id"]), auth=org.auth).json() == created

    response = client.put(
        url("lead", created["id"]),
        json={"name": "Vertical", "description": "Market", "choices": ["SaaS", "Retail", "Gov"]},
        auth=org.auth,
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["name"], updated["description"]) == ("Vertical", "Market")
    assert updated["choices"] == ["SaaS", "Retail", "Gov"]
    assert updated["type"] == "choices" and updated["date_created"] == created["date_created"]
    assert client.get(url("lead", created["id"]), auth=org.auth).json() == updated

    assert client.delete(url("lead", created["id"]), auth=org.auth).json() == {}
    assert_close_error(client.get(url("lead", created["id"]), auth=org.auth), 404)
    assert field_row(session_factory, created["id"]) is None

    created_ev, updated_ev, deleted_ev = events(session_factory, created["id"])
    assert (created_ev.object_type, created_ev.action) == ("custom_fields.lead", "created")
    assert created_ev.data == created and created_ev.previous_data == {}
    assert created_ev.api_key_id is not None and created_ev.lead_id is None
    assert updated_ev.action == "updated" and updated_ev.data == updated
    assert {"name", "description", "choices"} <= set(updated_ev.changed_fields)
    previous = updated_ev.previous_data or {}
    assert previous["name"] == "Industry" and previous["choices"] == ["SaaS", "Retail"]
    assert deleted_ev.action == "deleted" and deleted_ev.data is None
    assert deleted_ev.previous_data == updated
    assert deleted_ev.meta["request_method"] == "DELETE"


def test_lead_and_contact_fields_are_kept_apart(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead_field = create(client, org, name="Budget", type="number")
    contact_field = create(client, org, "contact", name="Budget", type="number")
    assert names(client, org, "lead") == ["Budget"] and names(client, org, "contact") == ["Budget"]
    assert_close_error(client.get(url("lead", contact_field["id"]), auth=org.auth), 404)
    assert_close_error(client.get(url("contact", lead_field["id"]), auth=org.auth), 404)
    assert_close_error(client.delete(url("lead", contact_field["id"]), auth=org.auth), 404)
    assert field_row(session_factory, contact_field["id"]) is not None
    assert events(session_factory, contact_field["id"])[0].object_type == "custom_fields.contact"


def test_list_pages_and_narrows_fields(client: TestClient, org: Org) -> None:
    ids = [create(client, org, name=f"F{n}")["id"] for n in range(3)]
    first = client.get(url(), params={"_limit": 2}, auth=org.auth).json()
    assert [f["id"] for f in first["data"]] == ids[:2] and first["has_more"] is True
    rest = client.get(url(), params={"_skip": 2}, auth=org.auth).json()
    assert [f["id"] for f in rest["data"]] == ids[2:] and rest["has_more"] is False
    narrow = client.get(url(), params={"_fields": "id,name"}, auth=org.auth).json()
    assert narrow["data"][0] == {"id": ids[0], "name": "F0"}
    assert_close_error(client.get(url(), params={"_limit": "x"}, auth=org.auth), 400)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X", "type": "text", "accepts_multiple_values": True}, "accepts_multiple_values"),
        ({"name": "X", "type": "date", "accepts_multiple_values": True}, "accepts_multiple_values"),
        ({"name": "X", "type": "choices"}, "choices"),
        ({"name": "X", "type": "choices", "choices": []}, "choices"),
        ({"name": "X", "type": "choices", "choices": ["a", "a"]}, "choices"),
        ({"name": "X", "type": "choices", "choices": ["a", " "]}, "choices"),
        ({"name": "X", "type": "text", "choices": ["a"]}, "choices"),
        ({"name": "X", "type": "colour"}, "type"),
        ({"name": "X"}, "type"),
        ({"type": "text"}, "name"),
        ({"name": "   ", "type": "text"}, "name"),
        ({"name": "X" * 201, "type": "text"}, "name"),
        ({"name": "X", "type": "text", "editable_with_roles": ["admin"]}, "editable_with_roles"),
        (
            {"name": "X", "type": "text", "accepts_multiple_values": "yes"},
            "accepts_multiple_values",
        ),
        ({"name": "X", "type": "text", "colour": "red"}, "colour"),
    ],
)
def test_invalid_definitions_are_400_field_errors(
    client: TestClient, org: Org, body: dict[str, Any], field: str
) -> None:
    response = client.post(url(), json=body, auth=org.auth)
    assert_close_error(response, 400)
    assert field in response.json()["field-errors"], response.json()
    assert names(client, org) == []


@pytest.mark.parametrize("field_type", ["choices", "user", "contact"])
def test_multiple_values_are_allowed_where_values_pick_from_a_set(
    client: TestClient, org: Org, field_type: str
) -> None:
    extra: dict[str, Any] = {"choices": ["a"]} if field_type == "choices" else {}
    created = create(client, org, type=field_type, accepts_multiple_values=True, **extra)
    assert created["accepts_multiple_values"] is True


def test_names_are_unique_per_organization_and_object_type(client: TestClient, org: Org) -> None:
    first = create(client, org, name="Source")
    other = create(client, org, name="Channel")
    for body in ({"name": "source", "type": "text"}, {"name": " Source ", "type": "number"}):
        response = client.post(url(), json=body, auth=org.auth)
        assert_close_error(response, 400)
        assert "name" in response.json()["field-errors"]
    renamed = client.put(url("lead", other["id"]), json={"name": "SOURCE"}, auth=org.auth)
    assert_close_error(renamed, 400)
    assert names(client, org) == ["Source", "Channel"]
    # A field may change the case of its own name, and the other object type is separate.
    own = client.put(url("lead", first["id"]), json={"name": "source"}, auth=org.auth)
    assert own.status_code == 200 and own.json()["name"] == "source"
    create(client, org, "contact", name="Source")


def test_type_cannot_change_and_a_no_op_update_records_nothing(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    field = create(client, org, name="Score", type="text")
    response = client.put(url("lead", field["id"]), json={"type": "number"}, auth=org.auth)
    assert_close_error(response, 400)
    assert "type" in response.json()["field-errors"]
    row = field_row(session_factory, field["id"])
    assert row is not None and row.type == "text"

    same = client.put(
        url("lead", field["id"]), json={"type": "text", "name": "Score"}, auth=org.auth
    )
    assert same.status_code == 200 and same.json() == field
    assert [e.action for e in events(session_factory, field["id"])] == ["created"]


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"choices": None}, "choices"),
        ({"choices": []}, "choices"),
        ({"name": None}, "name"),
        ({"accepts_multiple_values": None}, "accepts_multiple_values"),
        ({"editable_with_roles": ["admin"]}, "editable_with_roles"),
        ({"id": "cf_other"}, "id"),
    ],
)
def test_invalid_updates_are_400_and_change_nothing(
    client: TestClient,
    org: Org,
    session_factory: sessionmaker[Session],
    body: dict[str, Any],
    key: str,
) -> None:
    field = create(client, org, type="choices", choices=["a", "b"])
    response = client.put(url("lead", field["id"]), json=body, auth=org.auth)
    assert_close_error(response, 400)
    assert key in response.json()["field-errors"], response.json()
    assert client.get(url("lead", field["id"]), auth=org.auth).json() == field


def test_description_may_be_cleared(client: TestClient, org: Org) -> None:
    field = create(client, org, description="Where the lead came from")
    response = client.put(url("lead", field["id"]), json={"description": None}, auth=org.auth)
    assert response.status_code == 200 and response.json()["description"] is None


def test_turning_multiple_values_on_and_off_converts_stored_values(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    field = create(client, org, type="choices", choices=["a", "b", "c"])
    keep = create(client, org, type="text")
    fid = field["id"]
    lead_id = add_lead(session_factory, org, {fid: "a", keep["id"]: "x"})
    empty_lead = add_lead(session_factory, org, {keep["id"]: "y"})

    on = client.put(url("lead", fid), json={"accepts_multiple_values": True}, auth=org.auth)
    assert on.status_code == 200 and on.json()["accepts_multiple_values"] is True
    assert custom_of(session_factory, Lead, lead_id) == {fid: ["a"], keep["id"]: "x"}
    assert custom_of(session_factory, Lead, empty_lead) == {keep["id"]: "y"}

    with session_factory.begin() as session:
        session.execute(
            update(Lead).where(Lead.id == lead_id).values(custom={fid: ["b", "a"], keep["id"]: "x"})
        )
    off = client.put(url("lead", fid), json={"accepts_multiple_values": False}, auth=org.auth)
    assert off.status_code == 200
    assert custom_of(session_factory, Lead, lead_id) == {fid: "b", keep["id"]: "x"}
    assert events(session_factory, fid)[-1].changed_fields == [
        "accepts_multiple_values",
        "date_updated",
    ]


def test_delete_removes_the_fields_values_and_nothing_else(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    doomed = create(client, org, name="Doomed", type="number")
    kept = create(client, org, name="Kept", type="text")
    with_both = add_lead(session_factory, org, {doomed["id"]: 5, kept["id"]: "stay"})
    with_doomed = add_lead(session_factory, org, {doomed["id"]: 7})
    without = add_lead(session_factory, org, {kept["id"]: "also"})
    # The same key in another organization's row is not this organization's to touch.
    elsewhere = add_lead(session_factory, other_org, {doomed["id"]: 9})

    assert client.delete(url("lead", doomed["id"]), auth=org.auth).status_code == 200
    assert custom_of(session_factory, Lead, with_both) == {kept["id"]: "stay"}
    assert custom_of(session_factory, Lead, with_doomed) == {}
    assert custom_of(session_factory, Lead, without) == {kept["id"]: "also"}
    assert custom_of(session_factory, Lead, elsewhere) == {doomed["id"]: 9}
    assert names(client, org) == ["Kept"]


def test_deleting_a_contact_field_clears_contacts(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    field = create(
        client, org, "contact", type="choices", choices=["x"], accepts_multiple_values=True
    )
    contact_id = add_contact(session_factory, org, {field["id"]: ["x"], "cf_other": 1})
    assert client.delete(url("contact", field["id"]), auth=org.auth).status_code == 200
    assert custom_of(session_factory, Contact, contact_id) == {"cf_other": 1}


# --- Schema ------------------------------------------------------------------------------------


def test_schema_lists_fields_in_order_and_reorders(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    a, b, c = (create(client, org, name=n)["id"] for n in "ABC")
    contact_field = create(client, org, "contact")["id"]
    body = client.get(schema_url(), auth=org.auth).json()
    assert set(body) == {"fields"}
    assert [f["id"] for f in body["fields"]] == [a, b, c]
    assert set(body["fields"][0]) == FIELD_KEYS | {"is_shared"}
    assert body["fields"][0]["is_shared"] is False
    assert schema_ids(client, org, "contact") == [contact_field]

    response = client.put(schema_url(), json={"fields": [{"id": c}, {"id": a}]}, auth=org.auth)
    assert response.status_code == 200, response.text
    # Close appends fields left out of the list, in their previous order.
    assert [f["id"] for f in response.json()["fields"]] == [c, a, b]
    assert schema_ids(client, org) == [c, a, b]
    assert [f["id"] for f in client.get(url(), auth=org.auth).json()["data"]] == [c, a, b]
    # New fields go to the end.
    d = create(client, org, name="D")["id"]
    assert schema_ids(client, org) == [c, a, b, d]


@pytest.mark.parametrize(
    "entries",
    [
        lambda ids: [{"id": ids[0]}, {"id": "cf_unknown"}],
        lambda ids: [{"id": ids[0]}, {"id": ids[0]}],
        lambda ids: [{"id": ids[2]}],  # the contact field is not in the lead schema
        lambda ids: ids[:2],
        lambda ids: [{"id": ids[0], "name": "x"}],
    ],
)
def test_bad_schema_updates_are_400_and_change_nothing(
    client: TestClient, org: Org, entries: Any
) -> None:
    ids = [
        create(client, org)["id"],
        create(client, org)["id"],
        create(client, org, "contact")["id"],
    ]
    response = client.put(schema_url(), json={"fields": entries(ids)}, auth=org.auth)
    assert_close_error(response, 400)
    assert schema_ids(client, org) == ids[:2]


def test_unknown_schema_object_type_is_404(client: TestClient, org: Org) -> None:
    assert_close_error(client.get(schema_url("opportunity"), auth=org.auth), 404)
    assert_close_error(client.put(schema_url("nope"), json={"fields": []}, auth=org.auth), 404)


# --- Permissions and tenancy -------------------------------------------------------------------


def test_only_admins_change_custom_fields(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    field = create(client, org, name="Admin made")
    other = create(client, org, name="Second")
    member = add_member(session_factory, org, "user")
    attempts = [
        client.post(url(), json={"name": "Mine", "type": "text"}, auth=member.auth),
        client.put(url("lead", field["id"]), json={"name": "Mine"}, auth=member.auth),
        client.delete(url("lead", field["id"]), auth=member.auth),
        client.put(
            schema_url(),
            json={"fields": [{"id": other["id"]}, {"id": field["id"]}]},
            auth=member.auth,
        ),
    ]
    for response in attempts:
        assert_close_error(response, 403)
    assert names(client, org) == ["Admin made", "Second"]
    assert client.get(url(), auth=member.auth).status_code == 200
    assert client.get(url("lead", field["id"]), auth=member.auth).json() == field
    assert client.get(schema_url(), auth=member.auth).status_code == 200


def test_another_organization_cannot_see_or_change_fields(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    field = create(client, org, name="Secret", type="choices", choices=["x"])
    second = create(client, org, name="Second")
    own = create(client, other_org, name="Theirs")
    for response in (
        client.get(url("lead", field["id"]), auth=other_org.auth),
        client.put(url("lead", field["id"]), json={"name": "Taken"}, auth=other_org.auth),
        client.delete(url("lead", field["id"]), auth=other_org.auth),
    ):
        assert_close_error(response, 404)
    assert names(client, other_org) == ["Theirs"]
    response = client.put(
        schema_url(),
        json={"fields": [{"id": second["id"]}, {"id": field["id"]}, {"id": own["id"]}]},
        auth=other_org.auth,
    )
    assert_close_error(response, 400)
    assert client.get(url("lead", field["id"]), auth=org.auth).json() == field
    assert schema_ids(client, org) == [field["id"], second["id"]]
    assert schema_ids(client, other_org) == [own["id"]]


@pytest.mark.parametrize(
    "content", [b"{bad", b"[]", b"null", b'"x"', b"\xff", b'{"name": "\\u0000"}']
)
def test_garbage_bodies_are_400_in_closes_shape(
    client: TestClient, org: Org, content: bytes
) -> None:
    field = create(client, org)
    headers = {"Content-Type": "application/json"}
    for method, path in (
        ("POST", url()),
        ("PUT", url("lead", field["id"])),
        ("PUT", schema_url()),
    ):
        response = client.request(method, path, content=content, headers=headers, auth=org.auth)
        assert_close_error(response, 400)
    assert names(client, org) == [field["name"]]


# --- Values ------------------------------------------------------------------------------------


def new_field(
    session_factory: sessionmaker[Session],
    org: Org,
    field_type: str,
    *,
    multi: bool = False,
    choices: list[str] | None = None,
    object_type: str = "lead",
) -> str:
    with session_factory.begin() as session:
        field = CustomField(
            id=new_id("cf"),
            organization_id=org.id,
            object_type=object_type,
            name=f"{field_type} {new_id('cf')[-8:]}",
            type=field_type,
            accepts_multiple_values=multi,
            choices=choices,
        )
        session.add(field)
        return field.id


@pytest.mark.parametrize(
    ("field_type", "value", "stored"),
    [
        ("text", "hello", "hello"),
        ("text", "", ""),
        ("number", 5, 5),
        ("number", -2.5, -2.5),
        ("date", "2014-06-27", "2014-06-27"),
        ("date", "2024-02-29", "2024-02-29"),
        ("datetime", "2014-06-27T22:00:00-08:00", "2014-06-28T06:00:00.000000+00:00"),
        ("datetime", "2014-06-28T06:00:00Z", "2014-06-28T06:00:00.000000+00:00"),
        ("datetime", "2014-06-28T06:00:00.25", "2014-06-28T06:00:00.250000+00:00"),
        ("datetime", "2014-06-28T08:30:00+02:30", "2014-06-28T06:00:00.000000+00:00"),
        ("choices", "b", "b"),
        ("hidden", "anything", "anything"),
        ("hidden", 42, 42),
        ("hidden", False, False),
    ],
)
def test_good_values_are_stored_normalized(
    session_factory: sessionmaker[Session], org: Org, field_type: str, value: Any, stored: Any
) -> None:
    choices = ["a", "b"] if field_type == "choices" else None
    fid = new_field(session_factory, org, field_type, choices=choices)
    result = apply(session_factory, org, {f"custom.{fid}": value})
    assert result == {fid: stored}
    assert type(result[fid]) is type(stored)


@pytest.mark.parametrize(
    ("field_type", "value"),
    [
        ("text", 5),
        ("text", True),
        ("text", ["a"]),
        ("text", {"a": 1}),
        ("text", "nul\x00byte"),
        ("number", "5"),
        ("number", True),
        ("number", [1]),
        ("number", float("nan")),
        ("date", "2014-6-27"),
        ("date", "2014-02-30"),
        ("date", "27/06/2014"),
        ("date", "2014-06-27T00:00:00"),
        ("date", 20140627),
        ("datetime", "tomorrow"),
        ("datetime", "2014-13-01T00:00:00"),
        ("datetime", ""),
        ("datetime", 1403906400),
        ("choices", "z"),
        ("choices", ["a"]),
        ("choices", 1),
        ("hidden", [1]),
        ("hidden", {"a": 1}),
        ("user", 5),
        ("contact", ["cont_x"]),
    ],
)
def test_bad_values_are_field_errors_keyed_by_the_request_key(
    session_factory: sessionmaker[Session], org: Org, field_type: str, value: Any
) -> None:
    choices = ["a", "b"] if field_type == "choices" else None
    fid = new_field(session_factory, org, field_type, choices=choices)
    errors = rejected(session_factory, org, {f"custom.{fid}": value}, {fid: "old"})
    assert list(errors) == [f"custom.{fid}"]
    assert errors[f"custom.{fid}"]


def test_null_unsets_a_value(session_factory: sessionmaker[Session], org: Org) -> None:
    fid = new_field(session_factory, org, "text")
    other = new_field(session_factory, org, "number")
    current = {fid: "x", other: 1}
    assert apply(session_factory, org, {f"custom.{fid}": None}, current) == {other: 1}
    assert current == {fid: "x", other: 1}  # the input is left alone


def test_user_values_name_active_members_of_the_organization(
    session_factory: sessionmaker[Session], org: Org, other_org: Org
) -> None:
    single = new_field(session_factory, org, "user")
    multi = new_field(session_factory, org, "user", multi=True)
    member = add_member(session_factory, org, "user")
    gone = add_member(session_factory, org, "user")
    with session_factory.begin() as session:
        session.execute(
            update(Membership).where(Membership.id == gone.membership_id).values(is_active=False)
        )

    ok = apply(
        session_factory,
        org,
        {f"custom.{single}": member.user_id, f"custom.{multi}": [org.user_id, member.user_id]},
    )
    assert ok == {single: member.user_id, multi: [org.user_id, member.user_id]}
    for bad in (other_org.user_id, gone.user_id, "user_nobody"):
        errors = rejected(session_factory, org, {f"custom.{single}": bad})
        assert list(errors) == [f"custom.{single}"]
    errors = rejected(session_factory, org, {f"custom.{multi}": [org.user_id, other_org.user_id]})
    assert other_org.user_id in errors[f"custom.{multi}"]


def test_contact_values_name_contacts_of_the_organization(
    session_factory: sessionmaker[Session], org: Org, other_org: Org
) -> None:
    fid = new_field(session_factory, org, "contact", multi=True, object_type="contact")
    mine = add_contact(session_factory, org)
    theirs = add_contact(session_factory, other_org)
    ok = apply(session_factory, org, {f"custom.{fid}": mine}, object_type="contact")
    assert ok == {fid: [mine]}
    errors = rejected(
        session_factory, org, {f"custom.{fid}.add": [mine, theirs]}, object_type="contact"
    )
    assert theirs in errors[f"custom.{fid}.add"]


def test_fields_of_other_object_types_and_organizations_are_unknown(
    session_factory: sessionmaker[Session], org: Org, other_org: Org
) -> None:
    contact_field = new_field(session_factory, org, "text", object_type="contact")
    foreign = new_field(session_factory, other_org, "text")
    good = new_field(session_factory, org, "number")
    writes = {
        f"custom.{contact_field}": "x",
        f"custom.{foreign}": "x",
        "custom.cf_missing": "x",
        f"custom.{good}.bogus": 1,
        f"custom.{good}": "not a number",
    }
    errors = rejected(session_factory, org, writes)
    assert set(errors) == set(writes)  # every problem reported at once


def test_add_and_remove_on_multi_value_fields(
    session_factory: sessionmaker[Session], org: Org
) -> None:
    fid = new_field(session_factory, org, "choices", multi=True, choices=["a", "b", "c"])
    key = f"custom.{fid}"

    def run(writes: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        return apply(session_factory, org, writes, current)

    assert run({f"{key}.add": "b"}, {fid: ["a"]}) == {fid: ["a", "b"]}
    assert run({f"{key}.add": "a"}, {fid: ["a"]}) == {fid: ["a"]}
    assert run({f"{key}.add": ["b", "c", "b"]}, {}) == {fid: ["b", "c"]}
    assert run({f"{key}.remove": "a"}, {fid: ["a", "b"]}) == {fid: ["b"]}
    assert run({f"{key}.remove": "a"}, {fid: ["a"]}) == {}
    assert run({f"{key}.remove": "zzz"}, {fid: ["a", "zzz"]}) == {fid: ["a"]}  # an old choice
    assert run({key: ["c", "a"]}, {fid: ["b"]}) == {fid: ["c", "a"]}
    assert run({key: "c"}, {fid: ["b"]}) == {fid: ["c"]}
    assert run({key: []}, {fid: ["b"]}) == {}
    assert run({key: ["a"], f"{key}.add": "b"}, {}) == {fid: ["a", "b"]}
    current = {fid: ["a"]}
    run({f"{key}.add": "b"}, current)
    assert current == {fid: ["a"]}

    errors = rejected(session_factory, org, {f"{key}.add": "z", f"{key}.remove": 5})
    assert set(errors) == {f"{key}.add", f"{key}.remove"}
    assert rejected(session_factory, org, {f"{key}.add": None})


def test_add_and_remove_need_a_multi_value_field(
    session_factory: sessionmaker[Session], org: Org
) -> None:
    fid = new_field(session_factory, org, "choices", choices=["a"])
    errors = rejected(session_factory, org, {f"custom.{fid}.add": "a"})
    assert "multiple values" in errors[f"custom.{fid}.add"]
    assert rejected(session_factory, org, {f"custom.{fid}.remove": "a"}, {fid: "a"})


@pytest.fixture
def queries(session_factory: sessionmaker[Session]) -> Iterator[list[str]]:
    """The SQL statements run on the test engine while the test runs."""
    seen: list[str] = []
    engine = session_factory.kw["bind"]

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_one_query_loads_the_fields_of_all_writes(
    session_factory: sessionmaker[Session], org: Org, queries: list[str]
) -> None:
    ids = [new_field(session_factory, org, "text") for _ in range(5)]
    users = [new_field(session_factory, org, "user") for _ in range(3)]
    writes = {f"custom.{fid}": "v" for fid in ids} | {f"custom.{u}": org.user_id for u in users}
    queries.clear()
    result = apply(session_factory, org, writes)
    assert len(result) == 8
    field_queries = [q for q in queries if "FROM custom_field" in q]
    member_queries = [q for q in queries if "FROM membership" in q]
    assert len(field_queries) == 1 and len(member_queries) == 1, queries


def test_no_writes_need_no_query(
    session_factory: sessionmaker[Session], org: Org, queries: list[str]
) -> None:
    queries.clear()
    assert apply(session_factory, org, {}, {"cf_a": ["x"]}) == {"cf_a": ["x"]}
    assert queries == []


def test_render_and_pick_custom_keys() -> None:
    assert render_custom_values({"cf_a": 1, "cf_b": ["x"]}) == {
        "custom.cf_a": 1,
        "custom.cf_b": ["x"],
    }
    body = {"name": "Acme", "custom.cf_a": 1, "custom.cf_b.add": "x", "customer": "no"}
    assert custom_keys(body) == {"custom.cf_a": 1, "custom.cf_b.add": "x"}
