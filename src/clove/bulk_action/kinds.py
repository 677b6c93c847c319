"""What each of the four kinds of bulk action (sequence subscription, email, edit, delete)
supplies to the shared lifecycle in `service` and `tasks`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from pydantic import Field
from sqlalchemy import Select
from sqlalchemy.orm import Session

from clove.event.service import Actor
from clove.kit.schemas import Body
from clove.models import BulkAction


class BulkActionBody(Body):
    """The fields every bulk action request has (close-api.md §3.1), plus Clove's `dry_run`."""

    s_query: dict[str, Any] | None = None
    query: str | None = Field(default=None, max_length=10_000)
    sort: list[Any] = Field(default_factory=list, max_length=20)
    results_limit: int | None = Field(default=None, ge=0, le=2**31 - 1)
    send_done_email: bool = True
    # Clove extension: count and sample what the action would do, and do nothing.
    dry_run: bool = False


@dataclass
class Progress:
    """What one chunk (or a dry run) did: objects handled, and those skipped by reason."""

    objects: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    # Leads the chunk covered, when they are not the chunk's items (contact deletes).
    leads: int | None = None
    # Side effects for after the chunk's commit (sending the emails it staged).
    after_commit: list[Callable[[], None]] = field(default_factory=list)


class Kind(Protocol):
    """One kind of bulk action. `items` is always a one-column SELECT of the ids the action
    works on (of `result_type`): a chunk of the resolved query, or the whole query in a dry run."""

    name: ClassVar[str]  # the path segment: /bulk_action/<name>/
    prefix: ClassVar[str]  # id prefix
    body: ClassVar[type[BulkActionBody]]

    def validate(self, session: Session, actor: Actor, body: Any) -> dict[str, Any]:
        """The kind's request fields as stored in `params`; a 400 naming the field if bad."""

    def result_type(self, params: dict[str, Any]) -> str:
        """The object type the query must select (`lead` for all but some deletes)."""

    def wire(self, action: BulkAction) -> dict[str, Any]:
        """The kind's own fields of the API object."""

    def count_objects(self, session: Session, action: BulkAction, items: Select[Any]) -> int:
        """`n_objects`: how many objects the selected items amount to."""

    def process(
        self, session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
    ) -> Progress:
        """Acts on `items` with set-based SQL in the caller's transaction."""

    def preview(
        self, session: Session, action: BulkAction, items: Select[Any], limit: int
    ) -> tuple[Progress, list[dict[str, Any]]]:
        """A dry run: what `process` would do to `items`, and up to `limit` examples."""
