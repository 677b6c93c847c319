"""`/unsubscribe/email/`: addresses never mailed by sequences or bulk email."""

from __future__ import annotations

from fastapi import APIRouter

from clove.kit.http import TransactionRoute

router = APIRouter(route_class=TransactionRoute)
