"""`/bulk_action/edit/` end to end over HTTP, with a real job runner."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy import event as sa_event

from clove.auth.service import AuthContext
from clove.bulk_action.edit import BulkEdit
from clove.event.service import Actor
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.models import BulkAction, Event, Lead
from tests.bulk_world import (
    ALL_LEADS,
    COMMON_FIELDS,
    EXTENSIONS,
    BulkWorld,
    leads_named,
    make_world,
)
from tests.conftest import Org

# Close's fields of this kind besides those every bulk action has.
FIELDS = COMMON_FIELDS | {"custom_field_name", "custom_field_value", "lead_status_id", "type"}


@pytest.fixture
def world(client: TestClient, org: Org, engine: Engine, database_url: str) -> BulkWorld:
    return make_world(client, org, engine, database_url)


# --- Helpers -------------------------------------------------------------------------------------


def api(world: BulkWorld, method: str, path: str, body: Any = None) -> Any:
    response = world.client.request(method, f"/api/v1/{path}", json=body, auth=world.org.auth)
    assert response.status_code == 200, response.text
    return response.json()


def custom_field(world: BulkWorld, object_type: str = "lead", **body: Any) -> dict[str, Any]:
    body.setdefault("name", f"Field {new_id('cf')[-6:]}")
    body.setdefault("type", "text")
    return dict(api(world, "POST", f"custom_field/{object_type}/", body))


def statuses(world: BulkWorld) -> list[dict[str, Any]]:
    return list(api(world, "GET", "status/lead/")["data"])


def lead(world: BulkWorld, lead_id: str) -> dict[str, Any]:
    return dict(api(world, "GET", f"lead/{lead_id}/"))


def contact(world: BulkWorld, contact_id: str) -> dict[str, Any]:
    return dict(api(world, "GET", f"contact/{contact_id}/"))


def edit(world: BulkWorld, **body: Any) -> dict[str, Any]:
    """Posts an edit over all leads (unless `s_query` is given) and runs it to its end."""
    body.setdefault("s_query", ALL_LEADS)
    response = world.post("edit", body)
    assert response.status_code == 200, response.text
    created = response.json()
    assert set(created) == FIELDS | EXTENSIONS
    assert created["id"].startswith("bulkedit_")
    assert created["status"] == "created"
    world.run_jobs()
    done = world.get("edit", created["id"])
    assert done["status"] == "done"
    return done


def updated_events(world: BulkWorld, object_type: str) -> list[Event]:
    with world.reader() as session:
        return list(
            session.scalars(
                select(Event)
                .where(
                    Event.organization_id == world.org.id,
                    Event.object_type == object_type,
                    Event.action == "updated",
                )
                .order_by(Event.object_id)
            )
        )


# --- Lead status ---------------------------------------------------------------------------------


def test_set_lead_status_changes_leads_with_events_and_true_counters(world: BulkWorld) -> None:
    first, target = statuses(world)[0], statuses(world)[1]
    leads = [world.lead(f"Status {i}", [[f"s{i}@x.test"]]) for i in range(3)]
    assert all(x["status_id"] == first["id"] for x in leads)
    api(world, "PUT", f"lead/{leads[0]['id']}/", {"status_id": target["id"]})

    done = edit(world, type="set_lead_status", lead_status_id=target["id"])

    assert (done["type"], done["lead_status_id"]) == ("set_lead_status", target["id"])
    assert (done["custom_field_name"], done["custom_field_value"]) == (None, None)
    assert (done["n_leads"], done["n_leads_processed"]) == (3, 3)
    assert (done["n_objects"], done["n_objects_processed"]) == (3, 3)
    assert done["skipped"] == {"unchanged": 1}
    now = [lead(world, x["id"]) for x in leads]
    assert {(x["status_id"], x["status_label"]) for x in now} == {(target["id"], target["label"])}
    events = [e for e in updated_events(world, "lead") if e.meta.get("bulk_action_id")]
    assert sorted(e.object_id for e in events) == sorted(x["id"] for x in leads[1:])
    by_id = {x["id"]: x for x in now}
    for event in events:
        assert event.meta["bulk_action_id"] == done["id"]
        assert event.data == by_id[event.object_id]
        assert event.lead_id == event.object_id
        assert {"status_id", "status_label", "date_updated"} <= set(event.changed_fields)
        assert event.previous_data["status_id"] == first["id"]


# --- Lead custom fields --------------------------------------------------------------------------


def test_set_custom_field_by_name_normalizes_and_skips_equal_values(world: BulkWorld) -> None:
    field = custom_field(world, name="Signed", type="date")
    key = f"custom.{field['id']}"
    one = world.lead("Acme One", [])
    two = world.lead("Acme Two", [])
    api(world, "PUT", f"lead/{two['id']}/", {key: "2024-01-02"})
    other = world.lead("Other", [])

    done = edit(
        world,
        type="set_custom_field",
        custom_field_name="Signed",
        custom_field_value="2024-01-02",
        s_query=leads_named("Acme"),
    )

    assert (done["custom_field_name"], done["custom_field_value"]) == ("Signed", "2024-01-02")
    assert (done["n_leads"], done["n_objects"], done["n_objects_processed"]) == (2, 2, 2)
    assert done["skipped"] == {"unchanged": 1}
    assert lead(world, one["id"])[key] == "2024-01-02"
    assert key not in lead(world, other["id"])
    [event] = [e for e in updated_events(world, "lead") if e.meta.get("bulk_action_id")]
    assert event.object_id == one["id"]
    assert event.meta["bulk_action_id"] == done["id"]
    assert key in event.changed_fields
    assert event.previous_data[key] is None


def test_set_custom_field_by_id_returns_its_name_and_value_as_text(world: BulkWorld) -> None:
    field = custom_field(world, name="Seats", type="number")
    target = world.lead("Numbers", [])
    done = edit(world, type="set_custom_field", custom_field_id=field["id"], custom_field_value=12)
    assert (done["custom_field_name"], done["custom_field_value"]) == ("Seats", "12")
    assert lead(world, target["id"])[f"custom.{field['id']}"] == 12


def test_multi_value_replace_add_and_remove(world: BulkWorld) -> None:
    field = custom_field(
        world, type="choices", choices=["red", "green", "blue"], accepts_multiple_values=True
    )
    key = f"custom.{field['id']}"
    target = world.lead("Colors", [])

    edit(world, type="set_custom_field", custom_field_id=field["id"], custom_field_values=["red"])
    assert lead(world, target["id"])[key] == ["red"]
    edit(
        world,
        type="set_custom_field",
        custom_field_id=field["id"],
        custom_field_values=["green", "red", "blue"],
        custom_field_operation="add",
    )
    assert lead(world, target["id"])[key] == ["red", "green", "blue"]
    done = edit(
        world,
        type="set_custom_field",
        custom_field_id=field["id"],
        custom_field_value="red",
        custom_field_operation="remove",
    )
    assert lead(world, target["id"])[key] == ["green", "blue"]
    assert done["n_objects_processed"] == 1 and done["skipped"] == {}
    done = edit(
        world,
        type="set_custom_field",
        custom_field_id=field["id"],
        custom_field_values=["green", "blue"],
        custom_field_operation="remove",
    )
    assert key not in lead(world, target["id"])  # an empty list is no value, as with PUT
    events = [e for e in updated_events(world, "lead") if e.meta.get("bulk_action_id")]
    assert len(events) == 4


def test_clear_custom_field(world: BulkWorld) -> None:
    field = custom_field(world)
    key = f"custom.{field['id']}"
    full = world.lead("Full", [])
    api(world, "PUT", f"lead/{full['id']}/", {key: "something"})
    empty = world.lead("Empty", [])

    done = edit(world, type="clear_custom_field", custom_field_id=field["id"])

    assert (done["custom_field_name"], done["custom_field_value"]) == (field["name"], None)
    assert done["skipped"] == {"unchanged": 1}
    assert key not in lead(world, full["id"])
    assert key not in lead(world, empty["id"])
    [event] = [e for e in updated_events(world, "lead") if e.meta.get("bulk_action_id")]
    assert (event.object_id, event.previous_data[key]) == (full["id"], "something")


# --- Contact custom fields -----------------------------------------------------------------------


def test_set_contact_custom_field_on_the_contacts_of_matching_leads(world: BulkWorld) -> None:
    field = custom_field(world, "contact", name="Role", type="choices", choices=["buyer", "user"])
    key = f"custom.{field['id']}"
    one = world.lead("Acme One", [["a@x.test"], ["b@x.test"]])
    two = world.lead("Acme Two", [["c@x.test"]])
    world.lead("Acme Empty", [])
    other = world.lead("Other", [["o@x.test"]])
    api(world, "PUT", f"contact/{two['contacts'][0]['id']}/", {key: "buyer"})

    done = edit(
        world,
        type="set_contact_custom_field",
        custom_field_name="Role",
        custom_field_value="buyer",
        s_query=leads_named("Acme"),
    )

    assert (done["n_leads"], done["n_leads_processed"]) == (3, 3)
    assert (done["n_objects"], done["n_objects_processed"]) == (3, 3)
    assert done["skipped"] == {"unchanged": 1}
    changed = [c["id"] for c in one["contacts"]]
    assert all(contact(world, c)[key] == "buyer" for c in changed)
    assert key not in contact(world, other["contacts"][0]["id"])
    events = [e for e in updated_events(world, "contact") if e.meta.get("bulk_action_id")]
    assert sorted(e.object_id for e in events) == sorted(changed)
    for event in events:
        assert event.meta["bulk_action_id"] == done["id"]
        assert event.data == contact(world, event.object_id)
        assert event.lead_id == one["id"]
        assert {key, "date_updated"} <= set(event.changed_fields)
    # The lead embeds its contacts: it moves, without a lead event, as with PUT /contact/.
    assert lead(world, one["id"])["date_updated"] > one["date_updated"]
    assert not [e for e in updated_events(world, "lead") if e.meta.get("bulk_action_id")]


def test_clear_contact_custom_field(world: BulkWorld) -> None:
    field = custom_field(world, "contact")
    key = f"custom.{field['id']}"
    target = world.lead("Clear", [["a@x.test"], ["b@x.test"]])
    first = target["contacts"][0]["id"]
    api(world, "PUT", f"contact/{first}/", {key: "x"})

    done = edit(world, type="clear_contact_custom_field", custom_field_id=field["id"])

    assert (done["n_objects"], done["n_objects_processed"]) == (2, 2)
    assert done["skipped"] == {"unchanged": 1}
    assert key not in contact(world, first)
    [event] = [e for e in updated_events(world, "contact") if e.meta.get("bulk_action_id")]
    assert (event.object_id, event.previous_data[key]) == (first, "x")


# --- Nothing to do, dry run ----------------------------------------------------------------------


def test_a_query_matching_nothing_is_done_with_zero_counts(world: BulkWorld) -> None:
    field = custom_field(world, "contact")
    world.lead("Someone", [["s@x.test"]])
    done = edit(
        world,
        type="set_contact_custom_field",
        custom_field_id=field["id"],
        custom_field_value="v",
        s_query=leads_named("Nobody"),
    )
    assert (done["n_leads"], done["n_leads_processed"]) == (0, 0)
    assert (done["n_objects"], done["n_objects_processed"]) == (0, 0)
    assert not updated_events(world, "contact")


def test_dry_run_counts_and_samples_without_writing(world: BulkWorld) -> None:
    field = custom_field(world, "contact")
    key = f"custom.{field['id']}"
    target = world.lead("Dry", [["a@x.test"], ["b@x.test"]])
    before = world.bulk_rows()
    body = {
        "type": "set_contact_custom_field",
        "custom_field_id": field["id"],
        "custom_field_value": "v",
        "s_query": ALL_LEADS,
        "dry_run": True,
    }
    response = world.post("edit", body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["dry_run"] is True and result["id"] is None
    assert (result["n_leads"], result["n_objects"]) == (1, 2)
    assert sorted(s["contact_id"] for s in result["sample"]) == sorted(
        c["id"] for c in target["contacts"]
    )
    assert all(s[key] is None and s["lead_id"] == target["id"] for s in result["sample"])
    assert world.bulk_rows() == before
    assert all(key not in contact(world, c["id"]) for c in target["contacts"])

    status = statuses(world)[1]
    body = {"type": "set_lead_status", "lead_status_id": status["id"]}
    result = world.post("edit", body | {"s_query": ALL_LEADS, "dry_run": True}).json()
    assert result["sample"] == [{"lead_id": target["id"], "status_id": target["status_id"]}]


# --- Queries per chunk ---------------------------------------------------------------------------


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)


def queries_for_a_chunk(world: BulkWorld, body: dict[str, Any]) -> int:
    """Statements one `process` call runs over all of the organization's leads."""
    created = world.post("edit", {"s_query": ALL_LEADS, **body}).json()
    ctx = AuthContext(world.org.id, world.org.user_id, world.org.membership_id, "")
    with world.factory.begin() as session:
        action = session.get(BulkAction, created["id"])
        assert action is not None
        items = select(Lead.id).where(Lead.organization_id == world.org.id)
        with statements(world.engine) as seen:
            progress = BulkEdit().process(session, action, Actor(ctx), items, utcnow())
            session.flush()
    assert progress.objects > 0 and not progress.skipped
    return len(seen)


@pytest.mark.parametrize("object_type", ["lead", "contact"])
def test_a_chunk_runs_a_fixed_number_of_statements(world: BulkWorld, object_type: str) -> None:
    field = custom_field(world, object_type)
    prefix = "" if object_type == "lead" else "contact_"
    counts = []
    for n in (2, 6):
        for i in range(n):
            world.lead(f"Many {n} {i}", [[f"m{n}{i}@x.test"], []])
        counts.append(
            queries_for_a_chunk(
                world,
                {
                    "type": f"set_{prefix}custom_field",
                    "custom_field_id": field["id"],
                    "custom_field_value": f"value {n}",
                },
            )
        )
    assert counts[0] == counts[1], counts


# --- Validation ----------------------------------------------------------------------------------

UNSUPPORTED = [
    ("set_activity_custom_field", "custom activities"),
    ("clear_activity_custom_field", "custom activities"),
    ("set_global_custom_field", "shared custom fields"),
    ("clear_global_custom_field", "shared custom fields"),
    ("set_opportunity_custom_field", "opportunities"),
    ("clear_opportunity_custom_field", "opportunities"),
    ("set_custom_object_custom_field", "custom objects"),
    ("clear_custom_object_custom_field", "custom objects"),
]


@pytest.mark.parametrize(("edit_type", "objects"), UNSUPPORTED, ids=[t for t, _ in UNSUPPORTED])
def test_types_on_objects_clove_lacks_are_400(
    world: BulkWorld, edit_type: str, objects: str
) -> None:
    before = world.bulk_rows()
    response = world.post("edit", {"type": edit_type, "s_query": ALL_LEADS, "custom_field_id": "x"})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "errors": [],
        "field-errors": {"type": f"{edit_type} is not supported: Clove has no {objects} yet."},
    }
    assert world.bulk_rows() == before


def invalid_cases(world: BulkWorld) -> list[tuple[dict[str, Any], str]]:
    text = custom_field(world, name="Text field")
    number = custom_field(world, type="number")
    single = custom_field(world, type="choices", choices=["a", "b"])
    multi = custom_field(world, type="user", accepts_multiple_values=True)
    on_contact = custom_field(world, "contact", name="Contact field")
    status = {"type": "set_lead_status"}
    set_text = {"type": "set_custom_field", "custom_field_id": text["id"]}
    return [
        ({}, "type"),
        ({"type": "set_everything"}, "type"),
        ({"type": None}, "type"),
        (status, "lead_status_id"),
        (status | {"lead_status_id": "stat_nope"}, "lead_status_id"),
        (status | {"lead_status_id": 5}, "lead_status_id"),
        ({"type": "clear_custom_field"}, "custom_field_id"),
        ({"type": "clear_custom_field", "custom_field_id": "cf_nope"}, "custom_field_id"),
        ({"type": "clear_custom_field", "custom_field_name": "No such"}, "custom_field_name"),
        ({"type": "clear_custom_field", "custom_field_name": "text field"}, "custom_field_name"),
        ({"type": "clear_custom_field", "custom_field_id": on_contact["id"]}, "custom_field_id"),
        (
            {"type": "clear_custom_field", "custom_field_name": "Contact field"},
            "custom_field_name",
        ),
        ({"type": "set_contact_custom_field", "custom_field_id": text["id"]}, "custom_field_id"),
        (set_text, "custom_field_value"),
        (set_text | {"custom_field_value": 5}, "custom_field_value"),
        (set_text | {"custom_field_value": ["a"]}, "custom_field_value"),
        (set_text | {"custom_field_values": ["a"]}, "custom_field_values"),
        (
            {
                "type": "set_custom_field",
                "custom_field_id": number["id"],
                "custom_field_value": "7",
            },
            "custom_field_value",
        ),
        (
            {
                "type": "set_custom_field",
                "custom_field_id": single["id"],
                "custom_field_value": "c",
            },
            "custom_field_value",
        ),
        (
            {
                "type": "set_custom_field",
                "custom_field_id": single["id"],
                "custom_field_value": "a",
                "custom_field_operation": "add",
            },
            "custom_field_operation",
        ),
        (
            {
                "type": "set_custom_field",
                "custom_field_id": multi["id"],
                "custom_field_values": ["user_nobody"],
                "custom_field_operation": "add",
            },
            "custom_field_values",
        ),
        (
            set_text | {"custom_field_value": "x", "custom_field_operation": "merge"},
            "custom_field_operation",
        ),
        (set_text | {"custom_field_value": "x", "s_query": None}, "s_query"),
        (set_text | {"custom_field_value": "x", "unknown": 1}, "unknown"),
    ]


def test_invalid_requests_are_400_naming_the_field_and_create_nothing(world: BulkWorld) -> None:
    world.lead("Untouched", [["u@x.test"]])
    for change, field in invalid_cases(world):
        body: dict[str, Any] = {"s_query": ALL_LEADS, **change}
        body = {k: v for k, v in body.items() if v is not None}
        before = world.bulk_rows()
        response = world.post("edit", body)
        assert response.status_code == 400, (change, response.text)
        errors = response.json()
        assert set(errors) == {"errors", "field-errors"}
        assert any(k == field or k.startswith(field) for k in errors["field-errors"]), (
            change,
            errors,
        )
        assert world.bulk_rows() == before
    assert not updated_events(world, "lead")


def test_another_organizations_status_and_fields_are_refused(
    world: BulkWorld, other_org: Org, engine: Engine, database_url: str
) -> None:
    theirs = make_world(world.client, other_org, engine, database_url)
    their_status = statuses(theirs)[1]
    their_field = custom_field(theirs, name="Theirs")
    their_contact_field = custom_field(theirs, "contact", name="Theirs too")
    before = world.bulk_rows()
    for change, field in (
        ({"type": "set_lead_status", "lead_status_id": their_status["id"]}, "lead_status_id"),
        ({"type": "clear_custom_field", "custom_field_id": their_field["id"]}, "custom_field_id"),
        ({"type": "clear_custom_field", "custom_field_name": "Theirs"}, "custom_field_name"),
        (
            {
                "type": "set_contact_custom_field",
                "custom_field_id": their_contact_field["id"],
                "custom_field_value": "x",
            },
            "custom_field_id",
        ),
    ):
        response = world.post("edit", {"s_query": ALL_LEADS, **change})
        assert response.status_code == 400, response.text
        assert response.json()["field-errors"] == {field: "Object does not exist."}
    assert world.bulk_rows() == before
    mine = world.post(
        "edit", {"s_query": ALL_LEADS, "type": "clear_custom_field", "custom_field_name": "X"}
    )
    assert mine.status_code == 400
    assert theirs.client.get("/api/v1/bulk_action/edit/", auth=other_org.auth).json() == {
        "data": [],
        "has_more": False,
    }
