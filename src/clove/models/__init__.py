"""ORM tables, one module per area. Importing this package registers them all."""

from clove.models.auth import ApiKey, OAuthApp, OAuthCode, OAuthToken
from clove.models.base import Base
from clove.models.organization import Membership, Organization, User

__all__ = [
    "ApiKey",
    "Base",
    "Membership",
    "OAuthApp",
    "OAuthCode",
    "OAuthToken",
    "Organization",
    "User",
]
