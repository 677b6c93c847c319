"""Memberships: role changes (single and bulk), the last-admin rule, deactivation, pinned views."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.api_key.service import create_api_key
from clove.app import create_app
from clove.errors import UNAUTHORIZED_MESSAGE
from clove.kit.ids import new_id
from clove.models import Membership
from clove.organization.service import get_or_create_user
from tests.conftest import Org
from tests.conftest import test_settings as settings_for


@dataclass
class Member:
    """A user added to an organization, with an API key of their own."""

    user_id: str
    membership_id: str
    key: str
    key_id: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.key, "")


def add_member(
    session_factory: sessionmaker[Session],
    org: Org,
    role: str = "user",
    *,
    first_name: str = "",
    last_name: str = "",
    email: str | None = None,
) -> Member:
    """Adds a (new or existing) user to `org` with `role` and issues them a key."""
    email = email or f"member-{secrets.token_hex(6)}@example.com"
    with session_factory.begin() as session:
        user = get_or_create_user(session, email, first_name, last_name)
        membership = Membership(
            id=new_id("memb"), organization_id=org.id, user_id=user.id, role_id=role
        )
        session.add(membership)
        session.flush()
        key, secret = create_api_key(session, org.id, user.id)
        return Member(user.id, membership.id, secret, key.id)


def membership_row(session_factory: sessionmaker[Session], membership_id: str) -> Membership:
    with session_factory() as session:
        row = session.get(Membership, membership_id)
        assert row is not None
        return row


def test_put_changes_the_role(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    response = client.put(
        f"/api/v1/membership/{member.membership_id}/", json={"role_id": "admin"}, auth=org.auth
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == member.membership_id
    assert body["role_id"] == "admin"
    assert "manage_organization" in body["permissions_granted"]
    assert membership_row(session_factory, member.membership_id).role_id == "admin"

    # The promoted member can now do admin things with their own key.
    promoted = client.put(
        f"/api/v1/organization/{org.id}/", json={"name": "Renamed"}, auth=member.auth
    )
    assert promoted.status_code == 200, promoted.text


def test_put_other_settings_is_a_partial_update(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    response = client.put(
        f"/api/v1/membership/{member.membership_id}",
        json={"track_email_opens": False, "auto_record_calls": "enabled"},
        auth=org.auth,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["track_email_opens"] is False
    assert body["auto_record_calls"] == "enabled"
    assert body["role_id"] == "user"  # untouched


def test_put_unknown_role_is_400(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    response = client.put(
        f"/api/v1/membership/{member.membership_id}/",
        json={"role_id": "emperor"},
        auth=org.auth,
    )
    assert response.status_code == 400
    assert "role_id" in response.json()["field-errors"]
    assert membership_row(session_factory, member.membership_id).role_id == "user"


def test_non_admin_cannot_change_roles(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    response = client.put(
        f"/api/v1/membership/{member.membership_id}/", json={"role_id": "admin"}, auth=member.auth
    )
    assert response.status_code == 403
    assert "error" in response.json()
    assert membership_row(session_factory, member.membership_id).role_id == "user"


def test_bulk_put_counts_only_the_callers_memberships(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    first = add_member(session_factory, org, "user")
    second = add_member(session_factory, org, "user")
    untouched = add_member(session_factory, org, "user")
    foreign = add_member(session_factory, other_org, "user")
    ids = [first.membership_id, second.membership_id, foreign.membership_id, "memb_nope"]

    response = client.put(
        "/api/v1/membership/",
        json={"_params": {"id__in": ",".join(ids)}, "track_email_opens": False},
        auth=org.auth,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"count": 2}
    assert membership_row(session_factory, first.membership_id).track_email_opens is False
    assert membership_row(session_factory, second.membership_id).track_email_opens is False
    assert membership_row(session_factory, untouched.membership_id).track_email_opens is True
    assert membership_row(session_factory, foreign.membership_id).track_email_opens is True

    # A list works as well as a comma-separated string.
    response = client.put(
        "/api/v1/membership/",
        json={
            "_params": {"id__in": [first.membership_id, foreign.membership_id]},
            "role_id": "admin",
        },
        auth=org.auth,
    )
    assert response.json() == {"count": 1}
    assert membership_row(session_factory, first.membership_id).role_id == "admin"
    assert membership_row(session_factory, foreign.membership_id).role_id == "user"


def test_bulk_put_needs_params(client: TestClient, org: Org) -> None:
    response = client.put("/api/v1/membership/", json={"role_id": "user"}, auth=org.auth)
    assert response.status_code == 400
    assert "_params" in response.json()["field-errors"]


def test_cannot_demote_the_last_admin(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    add_member(session_factory, org, "user")
    response = client.put(
        f"/api/v1/membership/{org.membership_id}/",
        json={"role_id": "user", "track_email_opens": False},
        auth=org.auth,
    )
    assert response.status_code == 400
    assert "admin" in response.json()["error"]
    row = membership_row(session_factory, org.membership_id)
    assert row.role_id == "admin"
    assert row.track_email_opens is True  # nothing of the failed PUT was written

    bulk = client.put(
        "/api/v1/membership/",
        json={"_params": {"id__in": org.membership_id}, "role_id": "user"},
        auth=org.auth,
    )
    assert bulk.status_code == 400
    assert membership_row(session_factory, org.membership_id).role_id == "admin"


def test_demoting_all_admins_at_once_is_refused(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    second_admin = add_member(session_factory, org, "admin")
    ids = f"{org.membership_id},{second_admin.membership_id}"
    response = client.put(
        "/api/v1/membership/", json={"_params": {"id__in": ids}, "role_id": "user"}, auth=org.auth
    )
    assert response.status_code == 400
    assert membership_row(session_factory, second_admin.membership_id).role_id == "admin"

    # One of two admins may step down.
    one = client.put(
        f"/api/v1/membership/{second_admin.membership_id}/",
        json={"role_id": "user"},
        auth=org.auth,
    )
    assert one.status_code == 200, one.text


def test_cannot_deactivate_the_last_admin(client: TestClient, org: Org) -> None:
    response = client.delete(f"/api/v1/membership/{org.membership_id}/", auth=org.auth)
    assert response.status_code == 400
    assert "error" in response.json()
    assert client.get("/api/v1/me/", auth=org.auth).status_code == 200


def test_delete_deactivates_the_member(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user", first_name="Gone", last_name="Soon")
    assert client.get("/api/v1/me/", auth=member.auth).status_code == 200

    response = client.delete(f"/api/v1/membership/{member.membership_id}/", auth=org.auth)
    assert response.status_code == 200, response.text
    assert response.json() == {}

    org_body = client.get(f"/api/v1/organization/{org.id}/", auth=org.auth).json()
    assert member.membership_id not in [m["id"] for m in org_body["memberships"]]
    inactive = [m for m in org_body["inactive_memberships"] if m["id"] == member.membership_id]
    assert len(inactive) == 1
    assert inactive[0]["user_id"] == member.user_id
    assert inactive[0]["user_full_name"] == "Gone Soon"
    assert inactive[0]["is_active"] is False

    refused = client.get("/api/v1/me/", auth=member.auth)
    assert refused.status_code == 401
    assert refused.json() == {"error": UNAUTHORIZED_MESSAGE}


def test_non_admin_cannot_deactivate(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    response = client.delete(f"/api/v1/membership/{org.membership_id}/", auth=member.auth)
    assert response.status_code == 403
    assert membership_row(session_factory, org.membership_id).is_active is True


def test_pinned_views_round_trip(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    url = f"/api/v1/membership/{org.membership_id}/pinned_views/"
    assert client.get(url, auth=org.auth).json() == {"saved_view_ids": []}

    views = ["save_" + "a" * 43, "save_" + "b" * 43]
    response = client.put(url, json={"saved_view_ids": [*views, views[0]]}, auth=org.auth)
    assert response.status_code == 200, response.text
    assert response.json() == {"saved_view_ids": views}  # order kept, duplicates dropped
    assert client.get(url.rstrip("/"), auth=org.auth).json() == {"saved_view_ids": views}

    bad = client.put(url, json={"saved_view_ids": "save_x"}, auth=org.auth)
    assert bad.status_code == 400
    assert "saved_view_ids" in bad.json()["field-errors"]
    assert client.get(url, auth=org.auth).json() == {"saved_view_ids": views}


def test_pinned_views_of_someone_else_need_admin(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    other = add_member(session_factory, org, "user")
    own = client.put(
        f"/api/v1/membership/{member.membership_id}/pinned_views/",
        json={"saved_view_ids": ["save_1"]},
        auth=member.auth,
    )
    assert own.status_code == 200
    theirs = client.put(
        f"/api/v1/membership/{other.membership_id}/pinned_views/",
        json={"saved_view_ids": ["save_1"]},
        auth=member.auth,
    )
    assert theirs.status_code == 403
    by_admin = client.put(
        f"/api/v1/membership/{other.membership_id}/pinned_views/",
        json={"saved_view_ids": ["save_2"]},
        auth=org.auth,
    )
    assert by_admin.json() == {"saved_view_ids": ["save_2"]}


def test_membership_create_is_oauth_only(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    email = f"invitee-{secrets.token_hex(4)}@example.com"
    response = client.post(
        "/api/v1/membership/", json={"email": email, "role_id": "user"}, auth=org.auth
    )
    assert response.status_code == 403
    assert "error" in response.json()
    with session_factory() as session:
        count = session.scalars(
            select(Membership).where(Membership.organization_id == org.id)
        ).all()
        assert len(count) == 1


def test_deactivation_and_demotion_apply_at_once_despite_the_auth_cache(
    database_url: str, engine: Engine, org: Org, session_factory: sessionmaker[Session]
) -> None:
    app = create_app(settings_for(database_url, auth_cache_seconds=0.5), engine)
    member = add_member(session_factory, org, "admin")
    with TestClient(app) as client:
        # Both keys are now trusted from the cache for half a second.
        assert client.get("/api/v1/me/", auth=member.auth).status_code == 200
        demote = client.put(
            f"/api/v1/membership/{member.membership_id}/", json={"role_id": "user"}, auth=org.auth
        )
        assert demote.status_code == 200
        refused = client.put(f"/api/v1/organization/{org.id}/", json={}, auth=member.auth)
        assert refused.status_code == 403

        gone = client.delete(f"/api/v1/membership/{member.membership_id}/", auth=org.auth)
        assert gone.status_code == 200
        assert client.get("/api/v1/me/", auth=member.auth).status_code == 401
