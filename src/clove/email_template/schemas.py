"""Request bodies and the wire shape of email templates (close-api.md §5.9)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from clove.kit.dates import iso_utc
from clove.kit.schemas import Body, PatchBody, TolerantBody
from clove.models import EmailTemplate

# What a template's response carries that a client cannot set: dropped when a client sends a
# template back (a copy or restore script), instead of refused.
READ_ONLY = frozenset(
    {
        "id",
        "organization_id",
        "created_by",
        "updated_by",
        "date_created",
        "date_updated",
        "used_by_sequences",
    }
)
MAX_ATTACHMENTS = 100


def serialize_email_template(template: EmailTemplate) -> dict[str, Any]:
    return {
        "id": template.id,
        "organization_id": template.organization_id,
        "name": template.name,
        "subject": template.subject,
        "body": template.body,
        "attachments": list(template.attachments or []),
        "is_shared": template.is_shared,
        "is_archived": template.is_archived,
        "created_by": template.created_by,
        "updated_by": template.updated_by,
        "date_created": iso_utc(template.date_created),
        "date_updated": iso_utc(template.date_updated),
        # Sequences do not exist yet, so no template is used by one.
        "used_by_sequences": [],
    }


class Attachment(Body):
    """One attached file, as Close's `attachments` items: a file already uploaded elsewhere
    (`url`) and how to present it. Only the shape is checked; the file is never fetched."""

    url: str = Field(min_length=1, max_length=2000)
    filename: str = Field(min_length=1, max_length=1000)
    size: int | None = Field(default=None, ge=0)
    content_type: str | None = Field(default=None, max_length=255)
    content_id: str | None = Field(default=None, max_length=255)
    inline_only: bool = False


class EmailTemplateCreate(TolerantBody):
    read_only: ClassVar[frozenset[str]] = READ_ONLY

    name: str = Field(max_length=200)
    subject: str = ""
    body: str = ""
    attachments: list[Attachment] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    is_shared: bool = False
    is_archived: bool = False


class EmailTemplateUpdate(TolerantBody, PatchBody):
    read_only: ClassVar[frozenset[str]] = READ_ONLY

    name: str | None = Field(default=None, max_length=200)
    subject: str | None = None
    body: str | None = None
    attachments: list[Attachment] | None = Field(default=None, max_length=MAX_ATTACHMENTS)
    is_shared: bool | None = None
    is_archived: bool | None = None
