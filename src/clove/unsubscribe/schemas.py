"""Request bodies of `/unsubscribe/email/`."""

from __future__ import annotations

from pydantic import field_validator

from clove.contact.schemas import EMAIL
from clove.kit.schemas import Body


class Unsubscribe(Body):
    email: str

    @field_validator("email")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip()
        if len(value) > 254 or not EMAIL.fullmatch(value):
            raise ValueError("Enter a valid email address.")
        return value
