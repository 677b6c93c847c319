"""OAuth2 at the root: /oauth2/authorize/, /oauth2/token/, /oauth2/revoke/."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
