"""Email templates: named subject/body pairs with variables (close-api.md §5.9)."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clove.email_template.render import (
    check_template,
    first_contact_of,
    first_email,
    render_template,
    template_context,
)
from clove.email_template.schemas import (
    EmailTemplateCreate,
    EmailTemplateUpdate,
    serialize_email_template,
)
from clove.errors import ValidationFailed, object_not_found
from clove.event.service import Actor, record_creation, record_deletion, record_update
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.models import Contact, ContactEmail, EmailTemplate
from clove.search.service import matching_ids, text_search

OBJECT_TYPE = "email_template"

# --- Reading -------------------------------------------------------------------------------------


def list_email_templates(
    session: Session,
    organization_id: str,
    *,
    is_archived: bool | None,
    is_shared: bool | None,
    skip: int,
    limit: int,
) -> list[EmailTemplate]:
    """Up to `limit + 1` templates, oldest first."""
    query = select(EmailTemplate).where(EmailTemplate.organization_id == organization_id)
    if is_archived is not None:
        query = query.where(EmailTemplate.is_archived == is_archived)
    if is_shared is not None:
        query = query.where(EmailTemplate.is_shared == is_shared)
    query = (
        query.order_by(EmailTemplate.date_created, EmailTemplate.id).offset(skip).limit(limit + 1)
    )
    return list(session.scalars(query))


def get_email_template(session: Session, organization_id: str, template_id: str) -> EmailTemplate:
    template = session.scalars(
        select(EmailTemplate).where(
            EmailTemplate.id == template_id, EmailTemplate.organization_id == organization_id
        )
    ).first()
    if template is None:
        raise object_not_found("EmailTemplate")
    return template


# --- Writing -------------------------------------------------------------------------------------


def create_email_template(
    session: Session, actor: Actor, body: EmailTemplateCreate
) -> EmailTemplate:
    """Flushes a new template (its subject and body must be valid templates), with its event."""
    name = _clean_name(body.name)
    check_template(body.subject, body.body)
    template = EmailTemplate(
        id=new_id("tmpl"),
        organization_id=actor.organization_id,
        name=name,
        subject=body.subject,
        body=body.body,
        attachments=[a.model_dump() for a in body.attachments],
        is_shared=body.is_shared,
        is_archived=body.is_archived,
        created_by=actor.user_id,
        updated_by=actor.user_id,
    )
    session.add(template)
    session.flush()
    record_creation(
        session,
        actor,
        object_type=OBJECT_TYPE,
        data=serialize_email_template(template),
        lead_id=None,
    )
    return template


def update_email_template(
    session: Session, actor: Actor, template: EmailTemplate, body: EmailTemplateUpdate
) -> None:
    """A partial update; an update that changes nothing records no event."""
    values = body.changes()
    if "name" in values:
        values["name"] = _clean_name(values["name"])
    if "subject" in values or "body" in values:
        check_template(values.get("subject", template.subject), values.get("body", template.body))
    if "attachments" in values:
        values["attachments"] = [a.model_dump() for a in body.attachments or []]
    before = serialize_email_template(template)
    for key, value in values.items():
        setattr(template, key, value)
    if serialize_email_template(template) == before:
        return
    template.updated_by = actor.user_id
    template.date_updated = utcnow()
    session.flush()
    record_update(
        session,
        actor,
        object_type=OBJECT_TYPE,
        before=before,
        after=serialize_email_template(template),
        lead_id=None,
    )


def delete_email_template(session: Session, actor: Actor, template: EmailTemplate) -> None:
    data = serialize_email_template(template)
    session.delete(template)
    session.flush()
    record_deletion(session, actor, object_type=OBJECT_TYPE, previous=data, lead_id=None)


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationFailed(field_errors={"name": "This field may not be blank."})
    return name


# --- Rendering -----------------------------------------------------------------------------------


def render_for(
    session: Session, actor: Actor, template: EmailTemplate, lead_id: str, contact_id: str
) -> dict[str, Any]:
    """The template rendered for one contact of one lead, by the calling user."""
    context = template_context(session, actor.organization_id, lead_id, contact_id, actor.user_id)
    subject, body = render_template(template.subject, template.body, context)
    lead, contact = context["lead"], context["contact"]
    email = contact.get("email") or None
    return {
        "subject": subject,
        "body": body,
        "email": email,
        "contact_id": contact["id"],
        "contact_display_name": contact.get("name") or email or "",
        "lead_id": lead["id"],
        "lead_display_name": lead.get("display_name", ""),
    }


def render_entry(
    session: Session,
    actor: Actor,
    tz: tzinfo,
    template: EmailTemplate,
    text: str,
    entry: int,
    mode: str,
) -> dict[str, Any]:
    """The template rendered for the `entry`-th match of a text query: in `contact` mode the
    entry-th matching contact with an email address, in `lead` mode the first contact (with an
    email address) of the entry-th matching lead that has one; `{}` past the last entry."""
    search = text_search(session, actor, tz, text, mode)
    table = search.kind.table
    has_email = select(ContactEmail.contact_id if mode == "contact" else ContactEmail.lead_id)
    ids = matching_ids(search).where(table.c.id.in_(has_email)).offset(entry).limit(1)
    found = session.scalars(ids).first()
    if found is None:
        return {}
    if mode == "contact":
        contact = session.get(Contact, found)
    else:
        contact = _first_contact_with_email(session, found) or first_contact_of(session, found)
    if contact is None:  # pragma: no cover - a lead with an email has a contact
        return {}
    return render_for(session, actor, template, contact.lead_id, contact.id)


def _first_contact_with_email(session: Session, lead_id: str) -> Contact | None:
    for contact in session.scalars(
        select(Contact).where(Contact.lead_id == lead_id).order_by(Contact.date_created, Contact.id)
    ):
        if first_email(session, contact.id):
            return contact
    return None
