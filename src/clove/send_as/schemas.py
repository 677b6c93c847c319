"""Request bodies and the wire shape of Send As associations (close-api.md §5.6)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from clove.kit.schemas import Body
from clove.models import SendAs

MAX_BULK = 1000


def serialize_send_as(association: SendAs) -> dict[str, Any]:
    return {
        "id": association.id,
        "allowing_user_id": association.allowing_user_id,
        "allowed_user_id": association.allowed_user_id,
        "organization_id": association.organization_id,
    }


class SendAsCreate(Body):
    allowing_user_id: str = Field(max_length=64)
    allowed_user_id: str = Field(max_length=64)


class SendAsBulk(Body):
    allowed_user_ids: list[str] = Field(default_factory=list, max_length=MAX_BULK)
    disallowed_user_ids: list[str] = Field(default_factory=list, max_length=MAX_BULK)
