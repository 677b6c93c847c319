"""`POST /data/search/` on a small dataset: every node type, negation, conditions, paging,
counts, `_fields`, errors that name the bad node, and tenancy."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import Org

URL = "/api/v1/data/search/"


def lead_query(*conditions: dict[str, Any], object_type: str = "lead") -> dict[str, Any]:
    return {
        "type": "and",
        "queries": [{"type": "object_type", "object_type": object_type}, *conditions],
    }


def field(name: str, condition: dict[str, Any], object_type: str = "lead") -> dict[str, Any]:
    return {
        "type": "field_condition",
        "field": {"type": "regular_field", "object_type": object_type, "field_name": name},
        "condition": condition,
    }


def text(value: str, mode: str = "full_words") -> dict[str, Any]:
    return {"type": "text", "mode": mode, "value": value}


def has_email(condition: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "has_related",
        "this_object_type": "lead",
        "related_object_type": "contact_email",
        "related_query": field("email", condition, "contact_email"),
    }


class Data:
    def __init__(self, client: TestClient, org: Org) -> None:
        self.client = client
        self.org = org
        self.leads: dict[str, str] = {}
        cf = self.post("/api/v1/custom_field/lead/", {"name": "Seats", "type": "number"})
        self.seats = cf["id"]
        tags = self.post(
            "/api/v1/custom_field/lead/",
            {
                "name": "Tags",
                "type": "choices",
                "choices": ["a", "b", "c"],
                "accepts_multiple_values": True,
            },
        )
        self.tags = tags["id"]
        self.add("acme", "Acme Widgets, Inc.", "Potential", "jane@acme.com", 10, ["a", "b"])
        self.add("globex", "Globex Corporation", "Bad Fit", "hank@globex.com", 250, ["c"])
        self.add("initech", "Initech", "Qualified", "peter@initech.com", None, None)
        self.add("acmesub", "Acme Subsidiary Ltd", "Potential", None, 75, ["b"])
        self.add("noname", None, "Potential", "someone@example.org", None, None)

    def post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(url, json=body, auth=self.org.auth)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def add(
        self,
        key: str,
        name: str | None,
        status: str,
        email: str | None,
        seats: int | None,
        tags: list[str] | None,
    ) -> None:
        contact: dict[str, Any] = {"name": f"{key.title()} Person", "title": "CEO"}
        if email:
            contact["emails"] = [{"type": "office", "email": email}]
        body: dict[str, Any] = {"status": status, "contacts": [contact]}
        if name:
            body["name"] = name
        if seats is not None:
            body[f"custom.{self.seats}"] = seats
        if tags:
            body[f"custom.{self.tags}"] = tags
        self.leads[key] = self.post("/api/v1/lead/", body)["id"]

    def search(self, query: dict[str, Any], **extra: Any) -> dict[str, Any]:
        response = self.client.post(URL, json={"query": query, **extra}, auth=self.org.auth)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def keys(self, query: dict[str, Any], **extra: Any) -> set[str]:
        by_id = {v: k for k, v in self.leads.items()}
        found = self.search(query, **extra)["data"]
        assert all(item["__object_type"] == "lead" for item in found)
        return {by_id[item["id"]] for item in found}

    def error(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(URL, json=body, auth=self.org.auth)
        assert response.status_code == 400, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
def data(client: TestClient, org: Org) -> Data:
    return Data(client, org)


ALL = {"acme", "globex", "initech", "acmesub", "noname"}


def test_text_modes(data: Data) -> None:
    assert data.keys(lead_query(field("name", text("acme")))) == {"acme", "acmesub"}
    assert data.keys(lead_query(field("name", text("ACME widgets")))) == {"acme"}
    assert data.keys(lead_query(field("name", text("acm")))) == set()
    assert data.keys(lead_query(field("name", text("acm", "beginning_of_words")))) == {
        "acme",
        "acmesub",
    }
    assert data.keys(lead_query(field("name", text("widgets inc", "phrase")))) == {"acme"}
    assert data.keys(lead_query(field("name", text("inc widgets", "phrase")))) == set()
    assert data.keys(lead_query(field("name", text("initech", "exact_value")))) == {"initech"}
    assert data.keys(lead_query(field("name", text("100%_", "full_words")))) == set()


def test_negated_text_includes_leads_without_a_name(data: Data) -> None:
    node = {**field("name", text("acme")), "negate": True}
    assert data.keys(lead_query(node)) == {"globex", "initech", "noname"}


def test_email_through_has_related(data: Data) -> None:
    exact = has_email(text("JANE@acme.com", "exact_value"))
    assert data.keys(lead_query(exact)) == {"acme"}
    assert data.keys(lead_query({**exact, "negate": True})) == ALL - {"acme"}
    any_email = {**has_email({"type": "exists"})}
    assert data.keys(lead_query(any_email)) == ALL - {"acmesub"}
    match_all = {
        "type": "has_related",
        "related_object_type": "contact_email",
        "related_query": {"type": "match_all"},
        "negate": True,
    }
    assert data.keys(lead_query(match_all)) == {"acmesub"}


def test_status_label_and_reference(data: Data, client: TestClient, org: Org) -> None:
    assert data.keys(lead_query(field("status_label", text("potential", "exact_value")))) == {
        "acme",
        "acmesub",
        "noname",
    }
    term = {"type": "term", "values": ["Bad Fit", "Qualified"]}
    assert data.keys(lead_query(field("status_label", term))) == {"globex", "initech"}
    lead = client.get(f"/api/v1/lead/{data.leads['globex']}/", auth=org.auth).json()
    reference = {
        "type": "reference",
        "reference_type": "status.lead",
        "object_ids": [lead["status_id"]],
    }
    assert data.keys(lead_query(field("status_id", reference))) == {"globex"}


def test_custom_number_range_and_multi_value_terms(data: Data) -> None:
    seats = {"type": "custom_field", "custom_field_id": data.seats}
    tags = {"type": "custom_field", "custom_field_id": data.tags}

    def on(spec: dict[str, Any], condition: dict[str, Any]) -> dict[str, Any]:
        return {"type": "field_condition", "field": spec, "condition": condition}

    assert data.keys(lead_query(on(seats, {"type": "number_range", "gte": 50}))) == {
        "globex",
        "acmesub",
    }
    assert data.keys(lead_query(on(seats, {"type": "number_range", "gt": 10, "lt": 100}))) == {
        "acmesub"
    }
    assert data.keys(lead_query({**on(seats, {"type": "exists"}), "negate": True})) == {
        "initech",
        "noname",
    }
    assert data.keys(lead_query(on(tags, {"type": "term", "values": ["b"]}))) == {
        "acme",
        "acmesub",
    }
    negated = {**on(tags, {"type": "term", "values": ["b"]}), "negate": True}
    assert data.keys(lead_query(negated)) == {"globex", "initech", "noname"}


def test_counts_of_related_rows(data: Data) -> None:
    one = field("num_email_addresses", {"type": "number_range", "gte": 1})
    assert data.keys(lead_query(one)) == ALL - {"acmesub"}
    none = field("num_contacts", {"type": "number_range", "gte": 0, "lte": 0})
    assert data.keys(lead_query(none)) == set()


def test_dates(data: Data) -> None:
    last_day = {
        "type": "moment_range",
        "on_or_after": {
            "type": "offset",
            "direction": "past",
            "moment": {"type": "now"},
            "offset": {
                "years": 0,
                "months": 0,
                "weeks": 0,
                "days": 1,
                "hours": 0,
                "minutes": 0,
                "seconds": 0,
            },
            "which_day_end": "start",
        },
        "before": {"type": "now"},
    }
    assert data.keys(lead_query(field("date_created", last_day))) == ALL
    future = {
        "type": "moment_range",
        "on_or_after": {"type": "fixed_local_date", "value": "2999-01-01", "which": "start"},
    }
    assert data.keys(lead_query(field("date_created", future))) == set()
    assert data.keys(lead_query({**field("date_created", future), "negate": True})) == ALL


def test_boolean_nodes_and_negation(data: Data) -> None:
    acme = field("name", text("acme"))
    globex = field("name", text("globex"))
    assert data.keys(lead_query({"type": "or", "queries": [acme, globex]})) == {
        "acme",
        "acmesub",
        "globex",
    }
    assert data.keys(lead_query({"type": "or", "queries": [acme, globex], "negate": True})) == {
        "initech",
        "noname",
    }
    assert data.keys(lead_query({"type": "and", "queries": []})) == ALL
    assert data.keys(lead_query({"type": "or", "queries": []})) == set()
    assert data.keys(lead_query({"type": "match_all", "negate": True})) == set()
    assert data.keys(lead_query({"type": "id", "value": data.leads["initech"]})) == {"initech"}
    assert data.keys(
        lead_query({"type": "id", "value": data.leads["initech"], "negate": True})
    ) == ALL - {"initech"}
    assert (
        data.keys(lead_query({"type": "object_type", "object_type": "lead", "negate": True}))
        == set()
    )
    assert data.keys(lead_query(text("jane", "beginning_of_words"))) == {"acme"}
    assert data.keys(lead_query({**text("globex"), "negate": True})) == ALL - {"globex"}


def test_contacts_as_results(data: Data) -> None:
    query = lead_query(field("title", text("CEO"), "contact"), object_type="contact")
    found = data.search(query, _fields={"contact": ["name", "lead_id"]})["data"]
    assert len(found) == 5
    assert {item["__object_type"] for item in found} == {"contact"}
    assert set(found[0]) == {"__object_type", "id", "name", "lead_id"}
    up = {
        "type": "has_related",
        "this_object_type": "contact",
        "related_object_type": "lead",
        "related_query": field("name", text("globex")),
    }
    found = data.search(lead_query(up, object_type="contact"), _fields={"contact": ["lead_id"]})
    assert [item["lead_id"] for item in found["data"]] == [data.leads["globex"]]


def test_paging_never_repeats_or_skips_while_leads_are_added(data: Data) -> None:
    seen: list[str] = []
    totals: list[int] = []
    cursor = None
    while True:
        page = data.search(lead_query(), _limit=2, include_counts=True, cursor=cursor)
        totals.append(page["count"]["total"])
        seen += [item["id"] for item in page["data"]]
        if len(totals) == 1:
            # Newest first: a lead added now sorts before the cursor and is not on later pages.
            data.add("late", "Late Arrival", "Potential", None, None, None)
        cursor = page["cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == {data.leads[k] for k in ALL}
    assert totals == [5, 6, 6]


def test_results_limit_and_sort(data: Data) -> None:
    seats = {"type": "custom_field", "custom_field_id": data.seats}
    first = data.search(
        lead_query(), sort=[{"direction": "desc", "field": seats}], results_limit=2, _limit=1
    )
    second = data.search(
        lead_query(),
        sort=[{"direction": "desc", "field": seats}],
        results_limit=2,
        _limit=1,
        cursor=first["cursor"],
    )
    assert [first["data"][0]["id"], second["data"][0]["id"]] == [
        data.leads["globex"],
        data.leads["acmesub"],
    ]
    assert second["cursor"] is None
    counted = data.search(lead_query(), results_limit=0, include_counts=True)
    assert counted == {"data": [], "cursor": None, "count": {"total": 5}}
    by_name = data.search(
        lead_query(),
        sort=[
            {
                "direction": "asc",
                "field": {"type": "regular_field", "object_type": "lead", "field_name": "name"},
            }
        ],
    )
    names = [data.leads[k] for k in ("acmesub", "acme", "globex", "initech", "noname")]
    assert [item["id"] for item in by_name["data"]] == names


def test_fields_of_leads(data: Data) -> None:
    found = data.search(
        lead_query(field("name", text("initech"))),
        _fields={"lead": ["display_name", "status_label", "custom"]},
    )["data"]
    assert found == [
        {
            "__object_type": "lead",
            "id": data.leads["initech"],
            "display_name": "Initech",
            "status_label": "Qualified",
        }
    ]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"query": {"type": "nope"}}, "query"),
        (
            {"query": lead_query({"type": "and", "queries": [{"type": "bogus"}]})},
            "query.queries[1].queries[0]",
        ),
        (
            {"query": lead_query(field("name", text("x", "exact")))},
            "query.queries[1].condition.mode",
        ),
        ({"query": lead_query(field("nope", text("x")))}, "query.queries[1].field.field_name"),
        (
            {"query": lead_query(field("num_calls", {"type": "number_range", "gt": 0}))},
            "query.queries[1].field.field_name",
        ),
        (
            {"query": lead_query(field("email", text("x"), "contact_email"))},
            "query.queries[1].field.object_type",
        ),
        (
            {"query": lead_query(field("name", {"type": "number_range", "gt": 1}))},
            "query.queries[1].condition",
        ),
        ({"query": lead_query(), "_limit": 201}, "_limit"),
        ({"query": lead_query(), "cursor": "garbage!"}, "cursor"),
        (
            {"query": lead_query({"type": "saved_search", "saved_search_id": "save_nope"})},
            "query.queries[1].saved_search_id",
        ),
        (
            {
                "query": lead_query(
                    {
                        "type": "has_related",
                        "related_object_type": "opportunity",
                        "related_query": {"type": "match_all"},
                    }
                )
            },
            "query.queries[1].related_object_type",
        ),
        ({"query": lead_query(), "unknown": 1}, "unknown"),
    ],
)
def test_bad_queries_name_the_node(data: Data, body: dict[str, Any], path: str) -> None:
    error = data.error(body)
    assert path in error["field-errors"], error


def test_cursor_of_another_query_is_refused(data: Data) -> None:
    page = data.search(lead_query(), _limit=1)
    error = data.error(
        {"query": lead_query(field("name", text("acme"))), "_limit": 1, "cursor": page["cursor"]}
    )
    assert "different search" in error["field-errors"]["cursor"]


def test_other_organizations_see_nothing(data: Data, client: TestClient, other_org: Org) -> None:
    response = client.post(
        URL, json={"query": lead_query(), "include_counts": True}, auth=other_org.auth
    )
    assert response.json() == {"data": [], "cursor": None, "count": {"total": 0}}
    seats = {"type": "custom_field", "custom_field_id": data.seats}
    body = {
        "query": lead_query(
            {"type": "field_condition", "field": seats, "condition": {"type": "exists"}}
        )
    }
    response = client.post(URL, json=body, auth=other_org.auth)
    assert response.status_code == 400
    assert "Unknown custom field" in str(response.json())


def view(data: Data, name: str, query: dict[str, Any], kind: str = "lead") -> str:
    body = {"name": name, "type": kind, "s_query": {"query": query}}
    view_id: str = data.post("/api/v1/saved_search/", body)["id"]
    return view_id


def test_smart_views_in_queries(data: Data, client: TestClient, org: Org) -> None:
    acme = view(data, "Acme", lead_query(field("name", text("acme"))))
    node = {"type": "saved_search", "saved_search_id": acme}
    assert data.keys(node) == {"acme", "acmesub"}
    assert data.keys(lead_query({**node, "negate": True})) == ALL - {"acme", "acmesub"}
    everything = view(data, "All Leads", {"type": "match_all"})
    assert data.keys({"type": "saved_search", "saved_search_id": everything}) == ALL
    # A contact view names no leads, even with a bare match_all.
    contacts = view(data, "All Contacts", {"type": "match_all"}, kind="contact")
    assert data.keys(lead_query({"type": "saved_search", "saved_search_id": contacts})) == set()
    # The text language reaches views by name.
    response = client.get("/api/v1/lead/", params={"query": 'in:"acme" not sub'}, auth=org.auth)
    assert [lead["id"] for lead in response.json()["data"]] == [data.leads["acme"]]


def test_smart_views_may_not_form_a_cycle(data: Data, client: TestClient, org: Org) -> None:
    first = view(data, "First", lead_query())
    second = view(data, "Second", lead_query({"type": "saved_search", "saved_search_id": first}))
    back = {"s_query": {"query": lead_query({"type": "saved_search", "saved_search_id": second})}}
    response = client.put(f"/api/v1/saved_search/{first}/", json=back, auth=org.auth)
    assert response.status_code == 400, response.text
    assert f"{first} → {second} → {first}" in response.json()["field-errors"]["s_query.query"]
    itself = {"s_query": {"query": {"type": "saved_search", "saved_search_id": first}}}
    response = client.put(f"/api/v1/saved_search/{first}/", json=itself, auth=org.auth)
    assert response.status_code == 400
    # A cycle through a text query is caught when the search runs.
    text_view = data.post("/api/v1/saved_search/", {"name": "Loop", "query": 'in:"Loop"'})["id"]
    error = data.error({"query": {"type": "saved_search", "saved_search_id": text_view}})
    assert "cycle" in str(error)
