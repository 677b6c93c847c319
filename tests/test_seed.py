"""`clove seed` on the session's database (SQLite, or PostgreSQL via CLOVE_TEST_DATABASE_URL)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

import clove.seed as seed_module
from clove.cli import app as cli
from clove.config import get_settings
from clove.db import is_sqlite
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.models import (
    Contact,
    ContactEmail,
    ContactPhone,
    ContactUrl,
    CustomField,
    Event,
    Lead,
    LeadAddress,
    LeadStatus,
    Membership,
)
from clove.seed import batch_ids
from tests.conftest import Org, new_org

E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The CLI exports CLOVE_DATABASE_URL for the processes it starts; undo that afterwards.
    monkeypatch.delenv("CLOVE_DATABASE_URL", raising=False)
    yield
    get_settings.cache_clear()


def seed(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["seed", *args, "--database-url", database_url])


def seeded(database_url: str, org: Org, *args: str) -> Result:
    result = seed(database_url, "--org-id", org.id, *args)
    assert result.exit_code == 0, result.output
    return result


def rows(session: Session, model: type, org: Org) -> list:  # type: ignore[type-arg]
    query = select(model).where(model.organization_id == org.id)  # type: ignore[attr-defined]
    return list(session.scalars(query))


def test_counts_and_shapes(database_url: str, session_factory: sessionmaker[Session]) -> None:
    org = new_org(session_factory)
    started = utcnow().replace(microsecond=0)
    # 300 leads in chunks of 128: two full chunks and a partial one.
    result = seeded(database_url, org, "--leads", "300", "--seed", "7", "--chunk-size", "128")

    with session_factory() as s:
        leads, contacts = rows(s, Lead, org), rows(s, Contact, org)
        emails, phones = rows(s, ContactEmail, org), rows(s, ContactPhone, org)
        urls, addresses = rows(s, ContactUrl, org), rows(s, LeadAddress, org)
        statuses = {st.id: st.label for st in rows(s, LeadStatus, org)}
        members = set(
            s.scalars(select(Membership.user_id).where(Membership.organization_id == org.id))
        )

    assert len(leads) == 300
    lead_ids = {lead.id for lead in leads}
    assert len(lead_ids) == 300 and all(re.fullmatch(r"lead_[A-Za-z0-9]{43}", i) for i in lead_ids)
    assert all(lead.name and lead.status_id in statuses for lead in leads)
    # Weighted toward the first statuses; every lead is in one of the org's.
    by_label = Counter(statuses[lead.status_id] for lead in leads)
    assert by_label["Potential"] > by_label["Customer"] > 0
    assert 0 < sum(1 for lead in leads if lead.url) < 300
    assert 0 < sum(1 for lead in leads if lead.description) < 300
    assert all(lead.custom == {} for lead in leads)  # the org has no custom fields

    per_lead = Counter(c.lead_id for c in contacts)
    assert set(per_lead) == lead_ids
    assert set(per_lead.values()) == {1, 2, 3}
    assert all(re.fullmatch(r"cont_[A-Za-z0-9]{43}", c.id) for c in contacts)
    assert len({c.id for c in contacts}) == len(contacts)
    assert all(c.name and " " in c.name for c in contacts)
    by_contact = {c.id: c for c in contacts}

    per_contact = Counter(e.contact_id for e in emails)
    assert set(per_contact) == set(by_contact) and set(per_contact.values()) <= {1, 2}
    assert all(e.email_lower == e.email.lower() and "@" in e.email for e in emails)
    assert any(e.email != e.email_lower for e in emails)  # some are mixed case
    assert all(e.lead_id == by_contact[e.contact_id].lead_id for e in emails)
    assert sorted(e.position for e in emails if e.contact_id == emails[0].contact_id)[0] == 0

    assert phones and Counter(p.contact_id for p in phones).most_common(1)[0][1] <= 2
    assert all(p.contact_id in by_contact for p in phones)
    for phone in phones:
        assert E164.match(phone.phone), phone.phone
        parsed = phonenumbers.parse(phone.phone)
        assert phonenumbers.is_valid_number(parsed), phone.phone
        assert phonenumbers.region_code_for_number(parsed) == phone.country
    assert all(u.url.startswith("https://") and u.contact_id in by_contact for u in urls)
    assert addresses and Counter(a.lead_id for a in addresses).most_common(1)[0][1] == 1
    assert all(
        a.lead_id in lead_ids and a.city and a.country in {"US", "GB", "DE"} for a in addresses
    )

    oldest = started - timedelta(days=731)
    for obj in [*leads, *contacts]:
        assert isinstance(obj.date_created, datetime)
        assert oldest <= obj.date_created <= obj.date_updated <= utcnow()
        assert obj.created_by in members and obj.updated_by in members
    created = sorted(lead.date_created for lead in leads)
    assert created[-1] - created[0] > timedelta(days=600)  # spread over the two years

    summary = result.stdout.strip().splitlines()[-1]
    assert f"Seeded 300 leads, {len(contacts)} contacts, {len(emails)} emails" in summary
    assert f"{len(phones)} phones" in summary and org.id in summary


def test_one_summary_event(database_url: str, session_factory: sessionmaker[Session]) -> None:
    org = new_org(session_factory)
    seeded(database_url, org, "--leads", "50")
    with session_factory() as s:
        events = rows(s, Event, org)
        counts = {
            "leads": len(rows(s, Lead, org)),
            "contacts": len(rows(s, Contact, org)),
            "emails": len(rows(s, ContactEmail, org)),
            "phones": len(rows(s, ContactPhone, org)),
            "urls": len(rows(s, ContactUrl, org)),
            "addresses": len(rows(s, LeadAddress, org)),
        }
    assert len(events) == 1
    event = events[0]
    assert (event.object_type, event.action) == ("import", "completed")
    assert event.user_id == org.user_id
    assert event.data is not None
    assert {k: event.data[k] for k in counts} == counts
    assert event.data["seed"] == 0


def test_fixed_contacts_per_lead(database_url: str, session_factory: sessionmaker[Session]) -> None:
    org = new_org(session_factory)
    seeded(database_url, org, "--leads", "40", "--contacts-per-lead", "2")
    with session_factory() as s:
        per_lead = Counter(c.lead_id for c in rows(s, Contact, org))
    assert len(per_lead) == 40 and set(per_lead.values()) == {2}


def content(session_factory: sessionmaker[Session], org: Org) -> list[tuple[object, ...]]:
    """Everything but ids and clock times, in creation order."""
    with session_factory() as s:
        labels = {st.id: st.label for st in rows(s, LeadStatus, org)}
        leads = s.scalars(
            select(Lead).where(Lead.organization_id == org.id).order_by(Lead.date_created)
        ).all()
        contacts: dict[str, list[tuple[object, ...]]] = {}
        for c in s.scalars(select(Contact).where(Contact.organization_id == org.id)):
            contacts.setdefault(c.lead_id, []).append((c.name, c.title))
        emails = Counter(e.email for e in rows(s, ContactEmail, org))
        phones = Counter(p.phone for p in rows(s, ContactPhone, org))
    return [
        *((lead.name, lead.description, lead.url, labels[lead.status_id]) for lead in leads),
        *(tuple(sorted(map(str, contacts[lead.id]))) for lead in leads),
        (tuple(sorted(emails.items())), tuple(sorted(phones.items()))),
    ]


def test_same_seed_same_content(database_url: str, session_factory: sessionmaker[Session]) -> None:
    one, two, other = (new_org(session_factory) for _ in range(3))
    for org in (one, two):
        seeded(database_url, org, "--leads", "120", "--seed", "42")
    seeded(database_url, other, "--leads", "120", "--seed", "43")
    first = content(session_factory, one)
    assert first == content(session_factory, two)
    assert first != content(session_factory, other)
    with session_factory() as s:  # ids are random: the second run did not collide
        assert not {lead.id for lead in rows(s, Lead, one)} & {
            lead.id for lead in rows(s, Lead, two)
        }


def test_fills_existing_custom_fields(
    database_url: str, session_factory: sessionmaker[Session]
) -> None:
    org = new_org(session_factory)
    tricky = 'Back\\slash "quoted"\ttab'  # must survive PostgreSQL's COPY text format
    fields = {
        "text": ("lead", "text", False, None),
        "number": ("lead", "number", False, None),
        "date": ("lead", "date", False, None),
        "datetime": ("lead", "datetime", False, None),
        "choices": ("lead", "choices", True, ["Plain", tricky]),
        "user": ("lead", "user", False, None),
        "contact_choice": ("contact", "choices", False, ["A", "B"]),
        "contact_ref": ("lead", "contact", False, None),  # needs other objects: left empty
    }
    ids = {}
    with session_factory.begin() as s:
        for position, (name, (object_type, kind, multi, choices)) in enumerate(fields.items()):
            ids[name] = new_id("cf")
            s.add(
                CustomField(
                    id=ids[name],
                    organization_id=org.id,
                    object_type=object_type,
                    name=name,
                    type=kind,
                    accepts_multiple_values=multi,
                    choices=choices,
                    position=position,
                )
            )
    seeded(database_url, org, "--leads", "200")
    with session_factory() as s:
        leads, contacts = rows(s, Lead, org), rows(s, Contact, org)
    values: dict[str, list[object]] = {name: [] for name in fields}
    for lead in leads:
        assert set(lead.custom) <= {ids[n] for n, f in fields.items() if f[0] == "lead"}
        for name in fields:
            if ids[name] in lead.custom:
                values[name].append(lead.custom[ids[name]])
    for contact in contacts:
        assert set(contact.custom) <= {ids["contact_choice"]}
        values["contact_choice"].extend(contact.custom.values())

    assert values["contact_ref"] == []
    for name in fields.keys() - {"contact_ref"}:
        assert 0.3 < len(values[name]) / (len(contacts) if name == "contact_choice" else 200) < 0.9
    assert all(isinstance(v, str) and v for v in values["text"])
    assert all(isinstance(v, int) for v in values["number"])
    assert all(isinstance(v, str) and datetime.strptime(v, "%Y-%m-%d") for v in values["date"])
    assert all(
        isinstance(v, str) and datetime.fromisoformat(v).utcoffset() == timedelta(0)
        for v in values["datetime"]
    )
    assert all(
        isinstance(v, list) and v and len(set(v)) == len(v) and set(v) <= {"Plain", tricky}
        for v in values["choices"]
    )
    assert any(tricky in v for v in values["choices"])  # type: ignore[operator]
    assert set(values["user"]) == {org.user_id}
    assert set(values["contact_choice"]) == {"A", "B"}


def test_no_orphans(database_url: str, session_factory: sessionmaker[Session]) -> None:
    """Every child row points at a parent of the same organization (checked or not on write)."""
    org = new_org(session_factory)
    seeded(database_url, org, "--leads", "150", "--chunk-size", "40")
    with session_factory() as s:
        lead_ids = select(Lead.id).where(Lead.organization_id == org.id)
        contact_ids = select(Contact.id).where(Contact.organization_id == org.id)
        for model, parent in (
            (Contact, Contact.lead_id.in_(lead_ids)),
            (ContactEmail, ContactEmail.contact_id.in_(contact_ids)),
            (ContactPhone, ContactPhone.contact_id.in_(contact_ids)),
            (ContactUrl, ContactUrl.contact_id.in_(contact_ids)),
            (LeadAddress, LeadAddress.lead_id.in_(lead_ids)),
        ):
            total = s.scalar(
                select(func.count()).select_from(model).where(model.organization_id == org.id)
            )
            linked = s.scalar(
                select(func.count())
                .select_from(model)
                .where(model.organization_id == org.id, parent)
            )
            assert total and linked == total, model


def test_several_organizations_need_org_id(
    database_url: str, session_factory: sessionmaker[Session]
) -> None:
    new_org(session_factory, "One")
    new_org(session_factory, "Two")
    with session_factory() as s:
        before = s.scalar(select(func.count()).select_from(Lead))
    result = seed(database_url, "--leads", "10")
    assert result.exit_code == 2
    assert "several organizations" in result.stderr and "--org-id" in result.stderr
    assert result.stdout == ""
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Lead)) == before


def test_unknown_org_id(database_url: str) -> None:
    result = seed(database_url, "--leads", "10", "--org-id", "orga_nope")
    assert result.exit_code == 2
    assert "orga_nope" in result.stderr


def test_no_organization_says_run_init(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = seed(url, "--leads", "10")
    assert result.exit_code == 2
    assert "clove init" in result.stderr
    assert result.stdout == ""


def test_the_only_organization_is_the_default(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    init = CliRunner().invoke(
        cli, ["init", "--org", "Solo", "--email", "solo@example.com", "--database-url", url]
    )
    assert init.exit_code == 0, init.output
    result = seed(url, "--leads", "25")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Seeded 25 leads")


def test_leads_must_be_positive(database_url: str, session_factory: sessionmaker[Session]) -> None:
    org = new_org(session_factory)
    result = seed(database_url, "--org-id", org.id, "--leads", "0")
    assert result.exit_code == 2
    assert "--leads" in result.stderr
    assert result.stdout == ""


def test_batch_ids() -> None:
    plain = batch_ids("lead", 2000)
    assert len(set(plain)) == 2000
    assert all(re.fullmatch(r"lead_[A-Za-z0-9]{43}", i) for i in plain)
    assert plain != sorted(plain)
    stamped = batch_ids("cont", 2000, "000000123")
    assert len(set(stamped)) == 2000 and stamped == sorted(stamped)
    assert all(re.fullmatch(r"cont_000000123[A-Za-z0-9]{34}", i) for i in stamped)
    assert max(stamped) < min(batch_ids("cont", 10, "000000124"))


def test_a_failed_write_stops_the_run(
    database_url: str, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(session_factory)
    lead_writes = 0
    for sink in (seed_module._SqliteSink, seed_module._PostgresSink):

        def write(self: Any, tables: list[Any], original: Any = sink.write) -> None:
            nonlocal lead_writes
            if any(t.name == "lead" for t in tables):
                lead_writes += 1
                if lead_writes == 2:
                    raise RuntimeError("disk on fire")
            original(self, tables)

        monkeypatch.setattr(sink, "write", write)
    result = seed(database_url, "--org-id", org.id, "--leads", "100", "--chunk-size", "30")
    assert result.exit_code == 1
    assert "Seeding failed after 30 leads" in result.stderr and "disk on fire" in result.stderr
    assert result.stdout == ""
    with session_factory() as s:
        assert len(rows(s, Lead, org)) == 30  # the first chunk stays, complete
        contacts = {c.id for c in rows(s, Contact, org)}
        assert contacts == {e.contact_id for e in rows(s, ContactEmail, org)}
        assert rows(s, Event, org) == []


def test_postgres_superuser_skips_foreign_key_triggers_unless_tables_have_triggers(
    database_url: str, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    if is_sqlite(database_url):
        pytest.skip("PostgreSQL only")
    org = new_org(session_factory)
    result = seeded(database_url, org, "--leads", "20")
    assert "Skipped the foreign-key triggers" in result.stderr
    with session_factory() as s:
        (event,) = rows(s, Event, org)
    assert event.data is not None and event.data["foreign_key_checks"] is False

    with engine.connect() as conn:
        assert seed_module._may_skip_foreign_key_checks(conn.connection.driver_connection)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION seed_test_noop() RETURNS trigger LANGUAGE plpgsql"
            " AS 'BEGIN RETURN NULL; END'"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER seed_test_noop AFTER INSERT ON contact_phone"
            " FOR EACH STATEMENT EXECUTE FUNCTION seed_test_noop()"
        )
    try:
        with engine.connect() as conn:
            assert not seed_module._may_skip_foreign_key_checks(conn.connection.driver_connection)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER seed_test_noop ON contact_phone")
            conn.exec_driver_sql("DROP FUNCTION seed_test_noop()")
