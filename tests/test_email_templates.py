from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.email_template.render import render_template, to_jinja
from clove.errors import ValidationFailed
from clove.models import Event
from tests.conftest import Org

URL = "/api/v1/email_template/"
NOT_FOUND = {"error": "Empty query: EmailTemplate matching query does not exist."}
FIELDS = {
    "id",
    "organization_id",
    "name",
    "subject",
    "body",
    "attachments",
    "is_shared",
    "is_archived",
    "created_by",
    "updated_by",
    "date_created",
    "date_updated",
    "used_by_sequences",
}
ATTACHMENT = {
    "url": "https://example.com/files/deck.pdf",
    "filename": "deck.pdf",
    "size": 1234,
    "content_type": "application/pdf",
    "content_id": None,
    "inline_only": False,
}


def create(client: TestClient, org: Org, **body: Any) -> dict[str, Any]:
    payload = {"name": "Intro", "subject": "Hi {{ contact.first_name }}", "body": "Hello", **body}
    response = client.post(URL, json=payload, auth=org.auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def events(session_factory: sessionmaker[Session], object_id: str) -> list[Event]:
    with session_factory() as session:
        query = select(Event).where(Event.object_id == object_id).order_by(Event.date_created)
        return list(session.scalars(query))


def names(client: TestClient, org: Org, **params: str) -> list[str]:
    response = client.get(URL, params=params, auth=org.auth)
    assert response.status_code == 200, response.text
    return [t["name"] for t in response.json()["data"]]


# --- CRUD ----------------------------------------------------------------------------------------


def test_create_get_update_delete(client: TestClient, org: Org) -> None:
    template = create(client, org, attachments=[ATTACHMENT], is_shared=True)
    assert set(template) == FIELDS
    assert template["id"].startswith("tmpl_")
    assert template["organization_id"] == org.id
    assert template["name"] == "Intro" and template["subject"] == "Hi {{ contact.first_name }}"
    assert template["attachments"] == [ATTACHMENT]
    assert template["is_shared"] is True and template["is_archived"] is False
    assert template["created_by"] == template["updated_by"] == org.user_id
    assert template["date_created"].endswith("+00:00")
    assert template["used_by_sequences"] == []

    url = f"{URL}{template['id']}/"
    assert client.get(url, auth=org.auth).json() == template
    assert client.get(url, params={"_fields": "id,name"}, auth=org.auth).json() == {
        "id": template["id"],
        "name": "Intro",
    }

    updated = client.put(url, json={"body": "Changed", "is_archived": True}, auth=org.auth)
    assert updated.status_code == 200, updated.text
    assert updated.json()["body"] == "Changed" and updated.json()["is_archived"] is True
    # Partial: the rest is unchanged.
    assert updated.json()["subject"] == template["subject"]
    assert updated.json()["attachments"] == [ATTACHMENT]

    assert client.delete(url, auth=org.auth).json() == {}
    assert client.get(url, auth=org.auth).json() == NOT_FOUND
    assert client.delete(url, auth=org.auth).status_code == 404


def test_defaults_and_read_only_fields_dropped(client: TestClient, org: Org) -> None:
    template = client.post(URL, json={"name": "Bare"}, auth=org.auth).json()
    assert (template["subject"], template["body"], template["attachments"]) == ("", "", [])
    assert template["is_shared"] is False and template["is_archived"] is False
    # A template sent back whole (a copy script) is accepted; the read-only fields are ignored.
    copy = {**template, "name": "Copy"}
    again = client.post(URL, json=copy, auth=org.auth)
    assert again.status_code == 200, again.text
    assert again.json()["id"] != template["id"]
    put = client.put(f"{URL}{template['id']}/", json={**template, "name": "Re"}, auth=org.auth)
    assert put.status_code == 200 and put.json()["name"] == "Re"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "A", "is_shared": "yes"}, "is_shared"),
        ({"name": "A", "attachments": [{"filename": "a.pdf"}]}, "attachments.0.url"),
        ({"name": "A", "attachments": [{**ATTACHMENT, "size": -1}]}, "attachments.0.size"),
        ({"name": "A", "attachments": [{**ATTACHMENT, "what": 1}]}, "attachments.0.what"),
        ({"name": "A", "attachments": "deck.pdf"}, "attachments"),
        ({"name": "A", "unknown": 1}, "unknown"),
    ],
)
def test_create_validation(client: TestClient, org: Org, body: dict[str, Any], field: str) -> None:
    response = client.post(URL, json=body, auth=org.auth)
    assert response.status_code == 400, response.text
    assert field in response.json()["field-errors"], response.json()


def test_update_validation(client: TestClient, org: Org) -> None:
    url = f"{URL}{create(client, org)['id']}/"
    for body, field in [
        ({"name": None}, "name"),
        ({"name": " "}, "name"),
        ({"subject": None}, "subject"),
        ({"body": "{% for x in y %}{% endfor %}"}, "body"),
    ]:
        response = client.put(url, json=body, auth=org.auth)
        assert response.status_code == 400, (body, response.text)
        assert field in str(response.json()), (body, response.json())


def test_list_filters_and_paging(client: TestClient, org: Org, other_org: Org) -> None:
    create(client, org, name="plain")
    create(client, org, name="shared", is_shared=True)
    create(client, org, name="archived", is_archived=True)
    create(client, other_org, name="theirs")
    assert names(client, org) == ["plain", "shared", "archived"]
    assert names(client, org, is_shared="true") == ["shared"]
    assert names(client, org, is_shared="false") == ["plain", "archived"]
    assert names(client, org, is_archived="true") == ["archived"]
    assert names(client, org, is_archived="false", is_shared="false") == ["plain"]
    first = client.get(URL, params={"_limit": 2}, auth=org.auth).json()
    assert [t["name"] for t in first["data"]] == ["plain", "shared"] and first["has_more"]
    rest = client.get(URL, params={"_skip": 2, "_limit": 2}, auth=org.auth).json()
    assert [t["name"] for t in rest["data"]] == ["archived"] and not rest["has_more"]
    bad = client.get(URL, params={"is_shared": "maybe"}, auth=org.auth)
    assert bad.status_code == 400 and "is_shared" in bad.json()["error"]
    assert client.get(URL, params={"_limit": 101}, auth=org.auth).status_code == 400


def test_events_record_create_update_delete(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    template = create(client, org)
    url = f"{URL}{template['id']}/"
    client.put(url, json={"name": "Renamed"}, auth=org.auth)
    client.put(url, json={"name": "Renamed"}, auth=org.auth)  # no change, no event
    client.delete(url, auth=org.auth)

    created, updated, deleted = events(session_factory, template["id"])
    assert (created.object_type, created.action) == ("email_template", "created")
    assert created.data == template and created.previous_data == {} and created.lead_id is None
    assert created.user_id == org.user_id
    assert updated.action == "updated"
    assert updated.changed_fields == ["date_updated", "name"]
    assert updated.previous_data == {"name": "Intro", "date_updated": template["date_updated"]}
    assert deleted.action == "deleted" and deleted.data is None
    assert deleted.previous_data == updated.data


def test_other_organization_gets_404(client: TestClient, org: Org, other_org: Org) -> None:
    template = create(client, org)
    url = f"{URL}{template['id']}/"
    assert client.get(url, auth=other_org.auth).json() == NOT_FOUND
    assert client.put(url, json={"name": "Mine"}, auth=other_org.auth).status_code == 404
    assert client.delete(url, auth=other_org.auth).status_code == 404
    assert client.get(f"{url}render/", auth=other_org.auth).status_code == 404
    assert names(client, other_org) == []
    assert client.get(url, auth=org.auth).json()["name"] == "Intro"


# --- Rendering -----------------------------------------------------------------------------------


def make_lead(client: TestClient, org: Org, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "Bluth Company",
        "url": "https://bluth.example",
        "description": "Banana stand",
        "contacts": [
            {"name": "George Oscar Bluth", "title": "Magician", "emails": [{"email": "gob@b.com"}]},
            {"name": "Buster", "emails": [{"email": "buster@b.com"}]},
        ],
        **extra,
    }
    response = client.post("/api/v1/lead/", json=body, auth=org.auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def render(client: TestClient, org: Org, template_id: str, **params: Any) -> Any:
    return client.get(f"{URL}{template_id}/render/", params=params, auth=org.auth)


def test_render_variables_fallbacks_and_custom_fields(client: TestClient, org: Org) -> None:
    industry = client.post(
        "/api/v1/custom_field/lead/", json={"name": "Industry", "type": "text"}, auth=org.auth
    ).json()
    size = client.post(
        "/api/v1/custom_field/contact/", json={"name": "Shoe size", "type": "number"}, auth=org.auth
    ).json()
    lead = make_lead(client, org, **{f"custom.{industry['id']}": "Real estate"})
    gob, buster = lead["contacts"]
    put = client.put(
        f"/api/v1/contact/{gob['id']}/", json={f"custom.{size['id']}": 11}, auth=org.auth
    )
    assert put.status_code == 200, put.text
    template = create(
        client,
        org,
        subject='{{ lead.display_name }}: hi {{ contact.first_name|default:"there" }}',
        body=(
            "{{ contact.first_name }}|{{ contact.last_name }}|{{ contact.name }}|"
            "{{ contact.title }}|{{ lead.name }}|{{ lead.url }}|{{ lead.description }}|"
            "{{ user.first_name }}|{{ user.last_name }}|{{ user.full_name }}|{{ user.email }}|"
            "{{ organization.name }}|{{ lead.custom.Industry }}|"
            '{{ contact.custom["Shoe size"] }}|{{ contact.title|default("none") }}|'
            "{{ lead.custom.Missing|default:'n/a' }}|{{ no.such.thing }}|"
            "{% if contact.title %}titled{% else %}untitled{% endif %}"
        ),
    )
    response = render(client, org, template["id"], lead_id=lead["id"], contact_id=gob["id"])
    assert response.status_code == 200, response.text
    me = client.get("/api/v1/me/", auth=org.auth).json()
    result = response.json()
    assert result == {
        "subject": "Bluth Company: hi George",
        "body": (
            f"George|Oscar Bluth|George Oscar Bluth|Magician|Bluth Company|"
            f"https://bluth.example|Banana stand|Ada|Admin|Ada Admin|{me['email']}|Org A|"
            f"Real estate|11|Magician|n/a||titled"
        ),
        "email": "gob@b.com",
        "contact_id": gob["id"],
        "contact_display_name": "George Oscar Bluth",
        "lead_id": lead["id"],
        "lead_display_name": "Bluth Company",
    }
    # Buster has one name and no title: the fallbacks apply.
    other = render(client, org, template["id"], lead_id=lead["id"], contact_id=buster["id"])
    assert other.json()["body"].startswith("Buster||Buster||Bluth Company|")
    assert "|none|n/a||untitled" in other.json()["body"]


def test_render_fallback_on_empty_first_name(client: TestClient, org: Org) -> None:
    lead = client.post(
        "/api/v1/lead/",
        json={"contacts": [{"emails": [{"email": "anon@example.com"}]}]},
        auth=org.auth,
    ).json()
    contact = lead["contacts"][0]
    template = create(client, org, subject='Hi {{ contact.first_name|default:"there" }}!')
    result = render(client, org, template["id"], lead_id=lead["id"], contact_id=contact["id"])
    assert result.json()["subject"] == "Hi there!"
    assert result.json()["contact_display_name"] == "anon@example.com"
    assert result.json()["lead_display_name"] == ""


def test_render_html_body_escapes_values(client: TestClient, org: Org) -> None:
    lead = make_lead(client, org, name="<b>Tom & Jerry</b>")
    contact = lead["contacts"][0]
    template = create(client, org, subject="{{ lead.name }}", body="<p>Dear {{ lead.name }}</p>")
    result = render(client, org, template["id"], lead_id=lead["id"], contact_id=contact["id"])
    assert result.json()["subject"] == "<b>Tom & Jerry</b>"
    assert result.json()["body"] == "<p>Dear &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"


def test_render_requires_both_ids_and_tenancy(client: TestClient, org: Org, other_org: Org) -> None:
    template = create(client, org)
    mine = make_lead(client, org)
    theirs = make_lead(client, other_org)
    contact = mine["contacts"][0]
    only_lead = render(client, org, template["id"], lead_id=mine["id"])
    assert only_lead.status_code == 400 and "contact_id" in only_lead.json()["field-errors"]
    nothing = render(client, org, template["id"])
    assert nothing.status_code == 400
    foreign_lead = render(
        client, org, template["id"], lead_id=theirs["id"], contact_id=contact["id"]
    )
    assert foreign_lead.status_code == 404
    foreign_contact = render(
        client, org, template["id"], lead_id=mine["id"], contact_id=theirs["contacts"][0]["id"]
    )
    assert foreign_contact.json() == {
        "error": "Empty query: Contact matching query does not exist."
    }
    other_lead = make_lead(client, org, name="Other")
    mismatch = render(
        client, org, template["id"], lead_id=other_lead["id"], contact_id=contact["id"]
    )
    assert mismatch.status_code == 400 and "contact_id" in mismatch.json()["field-errors"]


def test_render_query_mode(client: TestClient, org: Org) -> None:
    template = create(client, org, subject="{{ lead.display_name }}/{{ contact.name }}")
    first = make_lead(client, org, name="Alpha Query")
    second = make_lead(client, org, name="Beta Query")
    client.post("/api/v1/lead/", json={"name": "Gamma Query"}, auth=org.auth)  # no emails
    query = "name:Query sort:name"
    entries = [render(client, org, template["id"], query=query, entry=i).json() for i in range(3)]
    assert [e.get("subject") for e in entries[:2]] == [
        "Alpha Query/George Oscar Bluth",
        "Beta Query/George Oscar Bluth",
    ]
    assert entries[0]["lead_id"] == first["id"] and entries[1]["lead_id"] == second["id"]
    assert entries[2] == {}  # Gamma has no email address
    contacts = [
        render(client, org, template["id"], query="*", mode="contact", entry=i).json()
        for i in range(5)
    ]
    assert len([c for c in contacts if c]) == 4 and contacts[4] == {}
    assert {c["contact_id"] for c in contacts if c} == {
        c["id"] for lead in (first, second) for c in lead["contacts"]
    }
    too_far = render(client, org, template["id"], query=query, entry=100)
    assert too_far.status_code == 400
    bad_mode = render(client, org, template["id"], query=query, mode="opportunity")
    assert bad_mode.status_code == 400
    s_query = render(client, org, template["id"], s_query="{}")
    assert s_query.status_code == 400 and "not supported" in s_query.json()["error"]


def test_template_syntax_errors_are_400s_naming_the_field(client: TestClient, org: Org) -> None:
    bad_subject = client.post(URL, json={"name": "X", "subject": "Hi {{ contact"}, auth=org.auth)
    assert bad_subject.status_code == 400
    errors = bad_subject.json()["field-errors"]
    assert set(errors) == {"subject"} and errors["subject"].startswith("Template syntax error")
    bad_both = client.post(
        URL, json={"name": "X", "subject": "{% if %}", "body": "{{ }}"}, auth=org.auth
    )
    assert set(bad_both.json()["field-errors"]) == {"subject", "body"}
    with pytest.raises(ValidationFailed) as raised:
        render_template("ok", "{% endif %}", {})
    assert set(raised.value.field_errors) == {"body"}


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(10) %}x{% endfor %}",
        "{% set x = 1 %}",
        "{{ 'a' * 1000000000 }}",
        "{{ 9 ** 999999 }}",
        "{{ lipsum(100000) }}",
        "{{ contact.name.upper() }}",
        "{{ contact|attr('__class__') }}",
        "{{ contact.name|center(1000000000) }}",
        "{% include 'x' %}",
        "{% macro m() %}{% endmacro %}",
    ],
)
def test_unsafe_or_unsupported_syntax_is_refused(source: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        render_template(source, "", {"contact": {"name": "Ann"}})
    assert set(raised.value.field_errors) == {"subject"}


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ contact.__class__ }}",
        "{{ contact.name.__class__.__base__ }}",
        "{{ contact['__class__'] }}",
        "{{ contact.items }}",
        "{{ config }}{{ self }}{{ range }}{{ cycler }}{{ namespace }}",
    ],
)
def test_sandbox_escapes_render_nothing(source: str) -> None:
    """Attribute access reaches only dict keys: anything else is empty text."""
    assert render_template(source, source, {"contact": {"name": "Ann"}}) == ("", "")


def test_django_default_spelling() -> None:
    assert to_jinja('{{ a|default:"x" }} |default:"y"') == '{{ a|default("x") }} |default:"y"'
    assert to_jinja("{{ a | default : 'x' }}") == "{{ a |default('x') }}"
    assert to_jinja("{{ a|default:lead.name }}") == "{{ a|default(lead.name) }}"
    html = "<p>{{ a|default:&quot;x&quot; }} &quot;b&quot;</p>"
    assert to_jinja(html) == '<p>{{ a|default("x") }} &quot;b&quot;</p>'
    context = {"contact": {"first_name": "", "last_name": "Lee"}, "lead": {"name": "Acme"}}
    subject, body = render_template(
        "{{ contact.first_name|default:contact.last_name }}",
        "{{ contact.first_name|default('x', true) }}{{ contact.nick|d('y') }}",
        context,
    )
    assert (subject, body) == ("Lee", "xy")


def test_rendered_text_is_capped() -> None:
    context = {"lead": {"description": "x" * 1_000_000}}
    source = "{{ lead.description }}" * 6
    with pytest.raises(ValidationFailed) as raised:
        render_template("", source, context)
    assert raised.value.field_errors == {"body": "The rendered body is too long."}
    assert len(render_template("", source[:-22], context)[1]) == 5_000_000
