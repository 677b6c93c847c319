"""`/email_template/`: email templates and their rendering."""

from __future__ import annotations

from fastapi import APIRouter

from clove.kit.http import TransactionRoute

router = APIRouter(route_class=TransactionRoute)
