"""close-search.md Part E, end to end: each real-world text query (T1-T10) and structured
query (S1-S11) runs against a small CRM through the API and returns the right objects, or a
400 naming what Clove does not track yet."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import Org

Raw = dict[str, Any]


class Crm:
    """Three leads: Bluth (2 contacts, 2 addresses), Sitwell and Austero (one contact each)."""

    def __init__(self, client: TestClient, org: Org) -> None:
        self.client = client
        self.org = org
        fields = {
            name: self.post("/api/v1/custom_field/lead/", {"name": name, "type": "text"})["id"]
            for name in ("my_custom_field", "Source CRM", "Migration completed")
        }
        self.fields = fields
        self.bluth = self.lead(
            "Bluth Company",
            "Potential",
            [
                {"name": "George Bluth", "title": "CEO", "emails": [{"email": "george@bluth.com"}]},
                {
                    "name": "Gob Bluth",
                    "title": "Magician",
                    "emails": [{"email": "gob@bluth.com"}, {"email": "gob@magic.com"}],
                },
            ],
            addresses=[{"city": "Newport Beach"}, {"city": "Orange County"}],
            custom={"my_custom_field": "some_value", "Source CRM": "Salesforce"},
        )
        self.sitwell = self.lead(
            "Sitwell Enterprises",
            "Potential",
            [{"name": "Stan Sitwell", "title": "CEO", "emails": [{"email": "a@x.com"}]}],
            custom={
                "my_custom_field": "other",
                "Source CRM": "HubSpot",
                "Migration completed": "yes",
            },
        )
        self.austero = self.lead(
            "Austero Bluth",
            "Bad Fit",
            [
                {
                    "name": "Lucille Austero",
                    "title": "Congresswoman",
                    "emails": [{"email": "b@y.com"}],
                }
            ],
        )

    def post(self, url: str, body: Raw) -> Raw:
        response = self.client.post(url, json=body, auth=self.org.auth)
        assert response.status_code == 200, response.text
        result: Raw = response.json()
        return result

    def lead(
        self,
        name: str,
        status: str,
        contacts: list[Raw],
        addresses: list[Raw] | None = None,
        custom: dict[str, str] | None = None,
    ) -> str:
        body: Raw = {"name": name, "status": status, "contacts": contacts}
        if addresses:
            body["addresses"] = addresses
        for field_name, value in (custom or {}).items():
            body[f"custom.{self.fields[field_name]}"] = value
        lead_id: str = self.post("/api/v1/lead/", body)["id"]
        return lead_id

    def text(self, query: str, **params: Any) -> list[str]:
        response = self.client.get(
            "/api/v1/lead/", params={"query": query, **params}, auth=self.org.auth
        )
        assert response.status_code == 200, response.text
        return [lead["id"] for lead in response.json()["data"]]

    def text_error(self, query: str) -> str:
        response = self.client.get("/api/v1/lead/", params={"query": query}, auth=self.org.auth)
        assert response.status_code == 400, response.text
        message: str = response.json()["field-errors"]["query"]
        return message

    def search(self, body: Raw) -> Raw:
        return self.post("/api/v1/data/search/", body)

    def search_error(self, body: Raw) -> str:
        response = self.client.post("/api/v1/data/search/", json=body, auth=self.org.auth)
        assert response.status_code == 400, response.text
        return str(response.json())


@pytest.fixture
def crm(client: TestClient, org: Org) -> Crm:
    return Crm(client, org)


def rf(object_type: str, field_name: str) -> Raw:
    return {"type": "regular_field", "object_type": object_type, "field_name": field_name}


def fc(field: Raw, condition: Raw, negate: bool = False) -> Raw:
    return {"type": "field_condition", "field": field, "condition": condition, "negate": negate}


def text(value: str, mode: str = "full_words") -> Raw:
    return {"type": "text", "mode": mode, "value": value}


def related(this: str, other: str, query: Raw, negate: bool = False) -> Raw:
    return {
        "type": "has_related",
        "this_object_type": this,
        "related_object_type": other,
        "related_query": query,
        "negate": negate,
    }


def of_type(object_type: str, *queries: Raw) -> Raw:
    return {
        "type": "and",
        "queries": [{"type": "object_type", "object_type": object_type}, *queries],
    }


def ids(page: Raw) -> list[str]:
    return [item["id"] for item in page["data"]]


# --- Text queries ---------------------------------------------------------------------------------


def test_t1_custom_field_and_status(crm: Crm) -> None:
    query = 'custom.my_custom_field:"some_value" status:"Potential" sort:updated'
    assert crm.text(query) == [crm.bluth]


def test_t2_one_custom_field_set_and_another_empty(crm: Crm) -> None:
    query = '"custom.Source CRM":* not "custom.Migration completed":* sort:created'
    assert crm.text(query) == [crm.bluth]


def test_t3_contact_counts_with_slices(crm: Crm, client: TestClient, org: Org) -> None:
    assert crm.text("sort:created slice:0/1 contacts > 1") == [crm.bluth]
    parts = [crm.text(f"sort:created slice:{i}/2") for i in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted([crm.bluth, crm.sitwell, crm.austero])
    response = client.get(
        "/api/v1/lead/", params={"query": "sort:created contacts > 1", "_limit": 0}, auth=org.auth
    )
    assert response.json()["total_results"] == 1


def test_t4_addresses_count_and_activity_sort(crm: Crm) -> None:
    assert crm.text("addresses > 1") == [crm.bluth]
    assert "activities" in crm.text_error("addresses > 1 sort:activities")


@pytest.mark.parametrize(
    "query",
    [
        "has:calls",
        'call( date >= "2024-01-01" date < "2024-02-01")',
        'sms( date >= "2024-01-01" date < "2024-02-01" status:inbox  direction:inbound ) in:"X"',
        "sms_messages > 0",
        'call((recording_duration > 0 or voicemail_duration > 0) date >= "A" date <= "B")',
        "sort:-opportunities,date_created",
        'assigned_to:"user_x" sort:date_created',
        'user_id:"user_x"',
    ],
)
def test_t5_t6_t8_t9_t10_need_what_clove_does_not_track(crm: Crm, query: str) -> None:
    assert "not track" in crm.text_error(query)


def test_t7_sequence_subscriptions_through_contacts(crm: Crm) -> None:
    # Nobody in the dataset is subscribed to a sequence (subscriptions are searched end to end
    # in test_sequence_subscription_search.py).
    assert crm.text("contact(sequence_subscription(sequence:*)) ") == []


def test_t9_emails_in_a_list(crm: Crm) -> None:
    query = 'email in ("a@x.com", "B@y.com") sort:date_created'
    assert crm.text(query) == [crm.sitwell, crm.austero]


# --- Structured queries ---------------------------------------------------------------------------


def test_s1_contacts_by_title(crm: Crm) -> None:
    body = {"query": of_type("contact", fc(rf("contact", "title"), text("CEO")))}
    page = crm.search(body)
    assert len(page["data"]) == 2
    assert {item["__object_type"] for item in page["data"]} == {"contact"}
    assert page["cursor"] is None


def test_s2_contacts_by_any_of_several_emails_in_the_ui_shape(crm: Crm) -> None:
    emails = {
        "type": "or",
        "negate": False,
        "queries": [
            fc(rf("contact_email", "email"), text(email)) for email in ("gob@magic.com", "a@x.com")
        ],
    }
    body = {
        "limit": None,
        "query": {
            "negate": False,
            "type": "and",
            "queries": [
                {"negate": False, "type": "object_type", "object_type": "contact"},
                {
                    "negate": False,
                    "type": "and",
                    "queries": [related("contact", "contact_email", emails)],
                },
            ],
        },
        "results_limit": None,
        "sort": [],
        "_fields": {"contact": ["id", "name", "emails"]},
    }
    found = crm.search(body)["data"]
    assert sorted(item["name"] for item in found) == ["Gob Bluth", "Stan Sitwell"]
    assert all(set(item) == {"__object_type", "id", "name", "emails"} for item in found)


def test_s3_leads_by_contact_email_phrase_and_status_label(crm: Crm) -> None:
    by_email = related(
        "lead",
        "contact",
        related(
            "contact",
            "contact_email",
            fc(rf("contact_email", "email"), text("bluth com", "phrase")),
        ),
    )
    status = fc(rf("lead", "status_label"), text("Potential", "phrase"))
    body = {
        "query": of_type("lead", by_email, status),
        "_fields": {"lead": ["id", "display_name"], "contact": ["id"]},
        "_limit": 100,
    }
    page = crm.search(body)
    assert page["data"] == [
        {"__object_type": "lead", "id": crm.bluth, "display_name": "Bluth Company"}
    ]


def test_s4_lead_name_full_words(crm: Crm) -> None:
    body = {"query": of_type("lead", fc(rf("lead", "name"), text("bluth")))}
    assert sorted(ids(crm.search(body))) == sorted([crm.bluth, crm.austero])


def test_s5_exact_email_counts_and_local_dates(crm: Crm) -> None:
    exact = related(
        "lead", "contact_email", fc(rf("contact_email", "email"), text("b@y.com", "exact_value"))
    )
    counted = crm.search(
        {"query": of_type("lead", exact), "include_counts": True, "results_limit": 0}
    )
    assert counted == {"data": [], "cursor": None, "count": {"total": 1}}
    since = {
        "type": "moment_range",
        "on_or_after": {"type": "fixed_local_date", "value": "2020-01-01", "which": "start"},
        "before": {"type": "fixed_local_date", "value": "2999-12-31", "which": "end"},
    }
    dated = crm.search({"query": of_type("lead", fc(rf("lead", "date_created"), since))})
    assert len(dated["data"]) == 3
    activities = related("lead", "activity.custom_activity", {"type": "match_all"})
    assert "activity.custom_activity" in crm.search_error({"query": of_type("lead", activities)})


@pytest.mark.parametrize(
    ("query", "named"),
    [
        (
            of_type(
                "opportunity",
                fc(rf("opportunity", "status_type"), {"type": "term", "values": ["active"]}),
            ),
            "opportunity",
        ),
        (
            of_type(
                "contact",
                related(
                    "contact",
                    "lead",
                    fc(
                        rf("lead", "times_communicated"),
                        {"type": "number_range", "gte": 0, "lte": 0},
                    ),
                ),
            ),
            "times_communicated",
        ),
        (of_type("lead", related("lead", "opportunity", {"type": "match_all"})), "opportunity"),
        (of_type("activity.custom_activity"), "activity.custom_activity"),
        (
            of_type(
                "lead",
                {
                    "type": "or",
                    "queries": [
                        fc(rf("lead", f), {"type": "number_range", "gt": 0})
                        for f in ("num_emails", "num_calls", "num_notes", "num_tasks")
                    ],
                },
            ),
            "num_emails",
        ),
    ],
)
def test_s6_to_s10_name_what_clove_does_not_track(crm: Crm, query: Raw, named: str) -> None:
    assert named in crm.search_error({"query": query})


def test_s10_negated_exists_on_a_custom_field(crm: Crm) -> None:
    empty = fc(
        {"type": "custom_field", "custom_field_id": crm.fields["Migration completed"]},
        {"type": "exists"},
        negate=True,
    )
    assert sorted(
        ids(crm.search({"query": of_type("lead", empty), "results_limit": 10}))
    ) == sorted([crm.bluth, crm.austero])


def test_s11_keyset_walk_by_date_updated(crm: Crm) -> None:
    since = {
        "type": "moment_range",
        "on_or_after": {"type": "fixed_utc", "value": "2020-01-01T00:00:00+00:00"},
    }
    body = {
        "query": of_type("lead", fc(rf("lead", "date_updated"), since)),
        "sort": [{"direction": "asc", "field": rf("lead", "date_updated")}],
        "_fields": {"lead": ["id", "date_updated"]},
        "_limit": 1,
    }
    seen: list[Raw] = []
    cursor = None
    while True:
        page = crm.search({**body, "cursor": cursor})
        seen += page["data"]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert [item["id"] for item in seen] == [crm.bluth, crm.sitwell, crm.austero]
    assert [item["date_updated"] for item in seen] == sorted(item["date_updated"] for item in seen)
