from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.models import Event, SavedSearch
from tests.conftest import Org
from tests.test_membership import add_member

URL = "/api/v1/saved_search/"
NOT_FOUND = {"error": "Empty query: SavedSearch matching query does not exist."}


def object_type(kind: str = "lead") -> dict[str, Any]:
    return {"type": "object_type", "object_type": kind}


def name_is(value: str) -> dict[str, Any]:
    return {
        "type": "field_condition",
        "field": {"type": "regular_field", "object_type": "lead", "field_name": "display_name"},
        "condition": {"type": "text", "mode": "full_words", "value": value},
    }


# Close's documented create example (developer.close.com, Smart Views > Create).
DOCS_EXAMPLE: dict[str, Any] = {
    "name": "every lead",
    "type": "lead",
    "s_query": {"query": {"type": "and", "queries": [object_type(), name_is("Bluth Company")]}},
}

# What the UI's "Copy Filters" produces: negate everywhere, the conditions in a second `and`,
# and `limit: null` next to the wrapper's own keys.
COPY_FILTERS: dict[str, Any] = {
    "limit": None,
    "query": {
        "negate": False,
        "type": "and",
        "queries": [
            {"negate": False, "type": "object_type", "object_type": "lead"},
            {
                "negate": False,
                "type": "and",
                "queries": [
                    {
                        "negate": False,
                        "type": "field_condition",
                        "field": {
                            "type": "regular_field",
                            "object_type": "lead",
                            "field_name": "status_id",
                        },
                        "condition": {
                            "type": "reference",
                            "reference_type": "status.lead",
                            "object_ids": ["stat_x"],
                        },
                    }
                ],
            },
        ],
    },
    "results_limit": None,
    "sort": [
        {
            "direction": "desc",
            "field": {"type": "regular_field", "object_type": "lead", "field_name": "date_updated"},
        }
    ],
}

FIELDS = {
    "id",
    "name",
    "description",
    "type",
    "query",
    "s_query",
    "selected_fields",
    "is_shared",
    "shared_with",
    "sharing_settings",
    "is_user_dependent",
    "user_id",
    "organization_id",
    "created_by",
    "updated_by",
    "date_created",
    "date_updated",
}


def create(client: TestClient, org: Org, **body: Any) -> dict[str, Any]:
    payload = {**copy.deepcopy(DOCS_EXAMPLE), **body}
    response = client.post(URL, json=payload, auth=org.auth)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def field_errors(client: TestClient, org: Org, body: dict[str, Any]) -> dict[str, str]:
    response = client.post(URL, json=body, auth=org.auth)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"errors", "field-errors"}
    errors: dict[str, str] = response.json()["field-errors"]
    return errors


def events(session_factory: sessionmaker[Session], object_id: str) -> list[Event]:
    with session_factory() as session:
        query = select(Event).where(Event.object_id == object_id).order_by(Event.date_created)
        return list(session.scalars(query))


def names(client: TestClient, org: Org, **params: str) -> list[str]:
    response = client.get(URL, params=params, auth=org.auth)
    assert response.status_code == 200, response.text
    return [v["name"] for v in response.json()["data"]]


def test_crud_round_trip(client: TestClient, org: Org) -> None:
    created = create(client, org)
    assert set(created) == FIELDS
    assert created["id"].startswith("save_") and len(created["id"]) == 5 + 43
    assert created["s_query"] == DOCS_EXAMPLE["s_query"]  # stored as sent, nothing added
    assert created["description"] == "" and created["query"] is None
    assert (created["user_id"], created["created_by"], created["updated_by"]) == (
        org.user_id,
        org.user_id,
        org.user_id,
    )
    assert created["organization_id"] == org.id
    assert created["is_shared"] is False and created["is_user_dependent"] is False
    assert created["date_created"].endswith("+00:00")

    url = f"{URL}{created['id']}/"
    assert client.get(url, auth=org.auth).json() == created
    listed = client.get(URL, auth=org.auth).json()
    assert listed == {"data": [created], "has_more": False}
    assert client.get(url, params={"_fields": "id,name"}, auth=org.auth).json() == {
        "id": created["id"],
        "name": "every lead",
    }

    updated = client.put(url, json={"name": "Bluths", "description": "Family"}, auth=org.auth)
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert (body["name"], body["description"]) == ("Bluths", "Family")
    assert body["s_query"] == created["s_query"] and body["date_created"] == created["date_created"]
    assert body["date_updated"] > created["date_updated"]
    assert client.get(url, auth=org.auth).json() == body

    assert client.delete(url, auth=org.auth).json() == {}
    assert client.get(url, auth=org.auth).json() == NOT_FOUND
    assert client.delete(url, auth=org.auth).status_code == 404


def test_copy_filters_shape_is_kept_exactly(client: TestClient, org: Org) -> None:
    created = create(client, org, s_query=COPY_FILTERS, query=None)
    assert created["s_query"] == COPY_FILTERS
    fetched = client.get(f"{URL}{created['id']}/", auth=org.auth).json()
    assert fetched["s_query"] == COPY_FILTERS
    # The wrapper with only `query` is enough too (Close's contact example).
    minimal = {"query": {"type": "and", "queries": [object_type("contact")]}}
    contact = create(client, org, type="contact", s_query=minimal)
    assert contact["s_query"] == minimal and contact["type"] == "contact"


def test_a_text_query_alone_is_a_view(client: TestClient, org: Org) -> None:
    view = create(client, org, s_query=None, query='status:"Potential" sort:updated')
    assert view["query"] == 'status:"Potential" sort:updated' and view["s_query"] is None


def test_a_view_needs_a_name_and_a_query(client: TestClient, org: Org) -> None:
    assert "s_query" in field_errors(client, org, {"name": "Nothing"})
    assert "s_query" in field_errors(client, org, {"name": "Blank", "query": "  "})
    assert "name" in field_errors(client, org, {**DOCS_EXAMPLE, "name": "   "})
    assert "name" in field_errors(client, org, {"s_query": DOCS_EXAMPLE["s_query"]})
    assert field_errors(client, org, {**DOCS_EXAMPLE, "type": "deal"}).keys() == {"type"}
    assert names(client, org) == []


def test_invalid_nodes_are_400s_naming_the_path(client: TestClient, org: Org) -> None:
    bad_mode = copy.deepcopy(DOCS_EXAMPLE)
    bad_mode["s_query"]["query"]["queries"][1]["condition"]["mode"] = "exact"
    errors = field_errors(client, org, bad_mode)
    assert list(errors) == ["s_query.query.queries[1].condition.mode"]

    unknown_node = copy.deepcopy(DOCS_EXAMPLE)
    unknown_node["s_query"]["query"]["queries"].append({"type": "negate", "query": {}})
    errors = field_errors(client, org, unknown_node)
    assert "s_query.query.queries[2]" in errors and "negate" in errors["s_query.query.queries[2]"]

    bad_sort = copy.deepcopy(DOCS_EXAMPLE)
    bad_sort["s_query"]["sort"] = [{"direction": "up", "field": {"type": "regular_field"}}]
    errors = field_errors(client, org, bad_sort)
    assert "s_query.sort[0].direction" in errors
    assert "s_query.sort[0].field.object_type" in errors

    extra = copy.deepcopy(DOCS_EXAMPLE)
    extra["s_query"].update({"_limit": 10, "results_limit": "10"})
    assert field_errors(client, org, extra).keys() == {"s_query._limit", "s_query.results_limit"}

    # The bare tree instead of the wrapper: told where the tree goes.
    bare = {**DOCS_EXAMPLE, "s_query": DOCS_EXAMPLE["s_query"]["query"]}
    errors = field_errors(client, org, bare)
    assert "s_query.query" in errors and "s_query.query" in errors["s_query.query"]
    assert field_errors(client, org, {**DOCS_EXAMPLE, "s_query": []}).keys() == {"s_query"}
    assert field_errors(client, org, {**DOCS_EXAMPLE, "s_query": {"query": None}})
    assert names(client, org) == []


def test_the_query_may_not_select_another_object_type(client: TestClient, org: Org) -> None:
    def with_query(query: dict[str, Any], kind: str = "lead") -> dict[str, Any]:
        return {"name": "V", "type": kind, "s_query": {"query": query}}

    # The default type is lead: a contact clause needs "type": "contact".
    wrong = field_errors(client, org, {"name": "V", "s_query": {"query": object_type("contact")}})
    assert "'contact'" in wrong["s_query.query"] and "'lead'" in wrong["s_query.query"]
    inside = {"type": "and", "queries": [object_type("contact"), name_is("x")]}
    assert "'contact'" in field_errors(client, org, with_query(inside))["s_query.query"]

    # Without a clause the view's type applies, as in Close's own "All Leads" view.
    assert create(client, org, s_query={"query": {"type": "match_all"}})["type"] == "lead"
    unclaused = {"type": "and", "queries": [name_is("x")]}
    assert create(client, org, s_query={"query": unclaused})["type"] == "lead"
    assert create(client, org, s_query={"query": object_type()})["type"] == "lead"
    call = create(client, org, type="call", s_query={"query": object_type("activity.call")})
    assert call["type"] == "call"
    note = create(client, org, type="note", s_query={"query": object_type("note")})
    assert note["type"] == "note"


def test_is_user_dependent_follows_current_user(client: TestClient, org: Org) -> None:
    mine = copy.deepcopy(DOCS_EXAMPLE)
    mine["s_query"]["query"]["queries"].append(
        {
            "type": "has_related",
            "this_object_type": "lead",
            "related_object_type": "opportunity",
            "related_query": {
                "type": "field_condition",
                "field": {"type": "regular_field", "object_type": "opportunity", "field_name": "x"},
                "condition": {
                    "type": "reference",
                    "reference_type": "user_or_group",
                    "object_ids": ["user_other", "CURRENT_USER"],
                },
            },
        }
    )
    view = client.post(URL, json=mine, auth=org.auth).json()
    assert view["is_user_dependent"] is True
    url = f"{URL}{view['id']}/"
    # Sent back by a client, the computed flag is ignored (as are the other read-only fields).
    plain = client.put(
        url, json={**DOCS_EXAMPLE, "is_user_dependent": True, "id": "save_x"}, auth=org.auth
    ).json()
    assert plain["is_user_dependent"] is False and plain["id"] == view["id"]
    again = client.put(url, json={"s_query": mine["s_query"]}, auth=org.auth).json()
    assert again["is_user_dependent"] is True
    text_only = client.put(url, json={"s_query": None, "query": "*"}, auth=org.auth).json()
    assert text_only["is_user_dependent"] is False and text_only["s_query"] is None


def test_update_validates_the_result(client: TestClient, org: Org) -> None:
    view = create(client, org)
    url = f"{URL}{view['id']}/"

    def refused(body: dict[str, Any]) -> dict[str, str]:
        response = client.put(url, json=body, auth=org.auth)
        assert response.status_code == 400, response.text
        errors: dict[str, str] = response.json()["field-errors"]
        return errors

    assert "s_query" in refused({"s_query": None})  # and no text query either
    assert "s_query.query" in refused({"type": "contact"})  # the stored query selects leads
    assert "name" in refused({"name": " "})
    assert "name" in refused({"name": None})
    bad = copy.deepcopy(DOCS_EXAMPLE["s_query"])
    bad["query"]["queries"][1]["field"]["field_name"] = 5
    assert list(refused({"s_query": bad})) == ["s_query.query.queries[1].field.field_name"]
    assert client.get(url, auth=org.auth).json() == view

    contact_query = {"query": {"type": "and", "queries": [object_type("contact")]}}
    moved = client.put(url, json={"type": "contact", "s_query": contact_query}, auth=org.auth)
    assert moved.status_code == 200 and moved.json()["type"] == "contact"


def test_events_record_create_update_delete(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    view = create(client, org)
    url = f"{URL}{view['id']}/"
    client.put(url, json={"name": "Renamed"}, auth=org.auth)
    client.put(url, json={"name": "Renamed"}, auth=org.auth)  # no change, no event
    client.delete(url, auth=org.auth)

    created, updated, deleted = events(session_factory, view["id"])
    assert (created.object_type, created.action) == ("saved_search", "created")
    assert created.data == view and created.previous_data == {} and created.lead_id is None
    assert created.request_id is not None and created.user_id == org.user_id
    assert updated.action == "updated"
    assert updated.changed_fields == ["date_updated", "name"]
    assert updated.previous_data == {"name": "every lead", "date_updated": view["date_updated"]}
    assert updated.data is not None and updated.data["name"] == "Renamed"
    assert deleted.action == "deleted" and deleted.data is None
    assert deleted.previous_data == updated.data
    assert deleted.meta["request_method"] == "DELETE"


def test_type_filters(client: TestClient, org: Org) -> None:
    create(client, org, name="L")
    create(client, org, name="C", type="contact", s_query={"query": object_type("contact")})
    create(client, org, name="O", type="opportunity", s_query={"query": object_type("opportunity")})

    assert names(client, org) == ["L"]  # lead by default
    assert names(client, org, type="contact") == ["C"]
    assert names(client, org, type__in="lead,contact") == ["L", "C"]
    assert names(client, org, type__in="opportunity, lead") == ["L", "O"]
    both = client.get(f"{URL}?type__in=contact&type__in=opportunity", auth=org.auth)
    assert [v["name"] for v in both.json()["data"]] == ["C", "O"]
    assert names(client, org, type="contact", type__in="lead,contact") == ["C"]
    assert names(client, org, type="contact", type__in="lead") == []
    assert names(client, org, type="") == ["L"]

    bad = client.get(URL, params={"type__in": "lead,deal"}, auth=org.auth)
    assert bad.status_code == 400 and "'deal'" in bad.json()["error"]
    assert client.get(URL, params={"type": "Lead"}, auth=org.auth).status_code == 400


def test_paging_oldest_first(client: TestClient, org: Org) -> None:
    for name in ("Zeta", "Alpha", "Mu"):
        create(client, org, name=name)
    first = client.get(URL, params={"_limit": 2}, auth=org.auth).json()
    assert [v["name"] for v in first["data"]] == ["Zeta", "Alpha"] and first["has_more"] is True
    rest = client.get(URL, params={"_limit": 2, "_skip": 2}, auth=org.auth).json()
    assert [v["name"] for v in rest["data"]] == ["Mu"] and rest["has_more"] is False
    assert client.get(URL, params={"_limit": 101}, auth=org.auth).status_code == 400
    assert client.get(URL, params={"_skip": -1}, auth=org.auth).status_code == 400


def test_other_organizations_views_are_invisible(
    client: TestClient,
    org: Org,
    other_org: Org,
    session_factory: sessionmaker[Session],
) -> None:
    theirs = create(client, other_org, name="Theirs")
    url = f"{URL}{theirs['id']}/"
    assert client.get(url, auth=org.auth).json() == NOT_FOUND
    put = client.put(url, json={"name": "Mine now"}, auth=org.auth)
    assert (put.status_code, put.json()) == (404, NOT_FOUND)
    delete = client.delete(url, auth=org.auth)
    assert (delete.status_code, delete.json()) == (404, NOT_FOUND)
    assert names(client, org) == []
    assert client.get(url, auth=other_org.auth).json() == theirs
    assert len(events(session_factory, theirs["id"])) == 1


def test_sharing_fields(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user").membership_id
    view = create(
        client,
        org,
        is_shared=True,
        shared_with=[member],
        selected_fields=[{"type_id": "lead", "field_id": "display_name"}],
        sharing_settings={"whole_org": False, "user_ids": [org.user_id], "group_ids": []},
    )
    assert view["is_shared"] is True and view["shared_with"] == [member]
    assert view["selected_fields"] == [{"type_id": "lead", "field_id": "display_name"}]
    settings = view["sharing_settings"]
    assert settings["user_ids"] == [org.user_id] and settings["whole_org"] is False
    assert settings["created_by_id"] == settings["updated_by_id"] == org.user_id
    assert settings["created_at"].endswith("+00:00")

    url = f"{URL}{view['id']}/"
    # Sent back unchanged (metadata included), the settings stay as they were.
    same = client.put(url, json={"sharing_settings": settings}, auth=org.auth).json()
    assert same["sharing_settings"] == settings
    whole = client.put(url, json={"sharing_settings": {"whole_org": True}}, auth=org.auth).json()
    assert whole["sharing_settings"]["whole_org"] is True
    assert whole["sharing_settings"]["created_at"] == settings["created_at"]
    cleared = client.put(url, json={"sharing_settings": None, "shared_with": None}, auth=org.auth)
    assert cleared.json()["sharing_settings"] is None and cleared.json()["shared_with"] is None

    # Memberships of another organization (or none) cannot be shared with.
    errors = field_errors(client, org, {**DOCS_EXAMPLE, "shared_with": [other_org.membership_id]})
    assert "shared_with" in errors
    bad_settings = {**DOCS_EXAMPLE, "sharing_settings": {"whole_org": "yes"}}
    assert "sharing_settings.whole_org" in field_errors(client, org, bad_settings)


def test_members_can_create_views_of_their_own(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    view = client.post(URL, json=DOCS_EXAMPLE, auth=member.auth).json()
    assert view["user_id"] == member.user_id and view["created_by"] == member.user_id
    renamed = client.put(f"{URL}{view['id']}/", json={"name": "Admin's"}, auth=org.auth).json()
    assert renamed["updated_by"] == org.user_id and renamed["user_id"] == member.user_id


def test_deep_and_hostile_queries_are_refused_cleanly(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    for levels in (150, 240):  # 240: deep enough to exhaust a recursive walk
        deep: dict[str, Any] = object_type()
        for _ in range(levels):
            deep = {"type": "and", "queries": [deep, name_is("x")]}
        response = client.post(
            URL, json={"name": "Deep", "s_query": {"query": deep}}, auth=org.auth
        )
        assert response.status_code == 400, response.text[:300]
        assert "Nested too deeply" in response.json()["field-errors"]["s_query"]
    nested: list[Any] = []
    for _ in range(300):
        nested = [nested]
    response = client.post(
        URL, json={**DOCS_EXAMPLE, "selected_fields": [{"x": nested}]}, auth=org.auth
    )
    assert "selected_fields" in response.json()["field-errors"]

    # Built as text: the client's own JSON encoder would give up on it first.
    deeper = '{"type": "and", "queries": [' * 2000 + '{"type": "match_all"}' + "]}" * 2000
    response = client.post(
        URL,
        content=f'{{"name": "Deeper", "s_query": {{"query": {deeper}}}}}',
        headers={"Content-Type": "application/json"},
        auth=org.auth,
    )
    assert 400 <= response.status_code < 500, response.text[:300]

    nul = copy.deepcopy(DOCS_EXAMPLE)
    nul["s_query"]["query"]["queries"][1]["condition"]["value"] = "a\x00b"
    assert client.post(URL, json=nul, auth=org.auth).status_code == 400
    with session_factory() as session:
        assert (
            session.scalars(select(SavedSearch).where(SavedSearch.organization_id == org.id)).all()
            == []
        )
