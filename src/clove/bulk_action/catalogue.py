"""The kinds of bulk action, by the path segment under `/bulk_action/`."""

from __future__ import annotations

from clove.bulk_action.delete import BulkDelete
from clove.bulk_action.edit import BulkEdit
from clove.bulk_action.email import BulkEmail
from clove.bulk_action.kinds import Kind
from clove.bulk_action.sequence_subscription import BulkSequenceSubscription

KINDS: dict[str, Kind] = {
    kind.name: kind for kind in (BulkSequenceSubscription(), BulkEmail(), BulkEdit(), BulkDelete())
}
