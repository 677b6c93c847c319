"""Helpers shared by the bulk action tests: an organization with a sender account, a
sequence, leads made through the API, and a worker to run jobs to their end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from clove.db import make_session_factory, writing_session_factory
from clove.kit.ids import new_id
from clove.models import (
    BulkAction,
    ConnectedAccount,
    EmailTemplate,
    Job,
    Sequence,
    SequenceStep,
)
from clove.worker.jobs import JobRunner
from clove.worker.runner import job_handlers
from tests.conftest import Org, test_settings

SENDER = {
    "sender_name": "Sam Sender",
    "sender_email": "sam@clove.test",
}
# Close's fields of every kind of bulk action (close-api.md §3.2), and Clove's additions.
COMMON_FIELDS = {
    "created_by",
    "date_created",
    "date_updated",
    "id",
    "n_leads",
    "n_leads_processed",
    "n_objects",
    "n_objects_processed",
    "organization_id",
    "query",
    "results_limit",
    "s_query",
    "send_done_email",
    "sort",
    "status",
    "updated_by",
}
EXTENSIONS = {"skipped"}
ALL_LEADS = {"type": "and", "queries": [{"type": "object_type", "object_type": "lead"}]}


def leads_named(name: str) -> dict[str, Any]:
    return {
        "type": "and",
        "queries": [
            {"type": "object_type", "object_type": "lead"},
            {
                "type": "field_condition",
                "field": {"type": "regular_field", "object_type": "lead", "field_name": "name"},
                "condition": {"type": "text", "mode": "full_words", "value": name},
            },
        ],
    }


@dataclass
class BulkWorld:
    org: Org
    client: TestClient
    engine: Engine
    database_url: str
    account_id: str
    template_id: str
    factory: sessionmaker[Session] = field(init=False)
    reader: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.factory = writing_session_factory(self.engine)
        self.reader = make_session_factory(self.engine)

    def sequence(self, steps: int = 1) -> str:
        with self.factory.begin() as session:
            seq = Sequence(
                id=new_id("seq"),
                organization_id=self.org.id,
                name="Outreach",
                status="active",
                timezone="UTC",
                created_by_id=self.org.user_id,
            )
            session.add(seq)
            for position in range(steps):
                session.add(
                    SequenceStep(
                        id=new_id("seqstep"),
                        organization_id=self.org.id,
                        sequence_id=seq.id,
                        position=position,
                        step_type="email",
                        delay=0,
                        email_template_id=self.template_id,
                        threading="old_thread",
                    )
                )
            return seq.id

    def lead(self, name: str, contacts: list[list[str]]) -> dict[str, Any]:
        """A lead with one contact per list of email addresses."""
        body = {
            "name": name,
            "contacts": [
                {"name": f"Contact {i}", "emails": [{"email": e} for e in emails]}
                for i, emails in enumerate(contacts)
            ],
        }
        response = self.client.post("/api/v1/lead/", json=body, auth=self.org.auth)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def post(self, kind: str, body: dict[str, Any]) -> Any:
        return self.client.post(f"/api/v1/bulk_action/{kind}/", json=body, auth=self.org.auth)

    def get(self, kind: str, action_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/bulk_action/{kind}/{action_id}/", auth=self.org.auth)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def subscribe_body(self, sequence_id: str, **values: Any) -> dict[str, Any]:
        return {
            "action_type": "subscribe",
            "sequence_id": sequence_id,
            "sender_account_id": self.account_id,
            "contact_preference": "contact",
            "s_query": ALL_LEADS,
            **SENDER,
            **values,
        }

    def runner(self, **settings: Any) -> JobRunner:
        config = test_settings(self.database_url, **{"bulk_chunk_size": 2, **settings})
        return JobRunner(
            self.factory,
            job_handlers(config),
            lease_seconds=60,
            slice_seconds=config.job_slice_seconds,
            organization_id=self.org.id,
        )

    def run_jobs(self, **settings: Any) -> int:
        return self.runner(**settings).run_until_idle()

    def bulk_rows(self) -> int:
        """Bulk actions and jobs in the database: a refused request adds none."""
        return self.count(BulkAction) + self.count(Job)

    def assert_refused(self, kind: str, body: dict[str, Any], field: str) -> None:
        """POSTs `body`: Close's 400 naming `field` (or a path under it), and nothing written."""
        before = self.bulk_rows()
        response = self.post(kind, body)
        assert response.status_code == 400, response.text
        errors = response.json()
        assert set(errors) == {"errors", "field-errors"}
        assert any(k == field or k.startswith(field) for k in errors["field-errors"]), errors
        assert self.bulk_rows() == before

    def count(self, model: Any, **filters: Any) -> int:
        with self.reader() as session:
            query = select(func.count()).select_from(model)
            for name, value in filters.items():
                query = query.where(getattr(model, name) == value)
            return int(session.scalar(query) or 0)


def make_world(client: TestClient, org: Org, engine: Engine, database_url: str) -> BulkWorld:
    factory = writing_session_factory(engine)
    with factory.begin() as session:
        account = ConnectedAccount(
            id=new_id("emailacct"),
            organization_id=org.id,
            user_id=org.user_id,
            email="sam@clove.test",
            identities=[{"email": "sam@clove.test", "name": "Sam Sender"}],
            smtp={"host": "127.0.0.1", "port": 25, "username": "", "security": "none"},
        )
        template = EmailTemplate(
            id=new_id("tmpl"),
            organization_id=org.id,
            name="Intro",
            subject="Hello {{ contact.first_name }}",
            body="Hi {{ contact.first_name|default:'there' }}.",
        )
        session.add_all([account, template])
        account_id, template_id = account.id, template.id
    return BulkWorld(org, client, engine, database_url, account_id, template_id)
