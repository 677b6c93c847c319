"""Routes (being written)."""

from fastapi import APIRouter

from clove.kit.http import TransactionRoute

router = APIRouter(route_class=TransactionRoute)
