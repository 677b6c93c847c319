from __future__ import annotations

from typing import Any

from pydantic import Field

from clove.kit.schemas import Body, PatchBody
from clove.models import LeadStatus


def serialize_status(status: LeadStatus) -> dict[str, Any]:
    return {"id": status.id, "label": status.label}


class StatusCreate(Body):
    label: str = Field(min_length=1, max_length=200)


class StatusUpdate(PatchBody):
    label: str | None = Field(default=None, min_length=1, max_length=200)
