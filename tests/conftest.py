"""Shared fixtures: a real database (SQLite, or PostgreSQL via CLOVE_TEST_DATABASE_URL),
the app, organizations with keys, and a live uvicorn server for wire-level clients."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.app import create_app
from clove.auth.service import hash_secret
from clove.config import Settings
from clove.db import make_engine, make_session_factory, normalize_url
from clove.kit.dates import utcnow
from clove.migrate import upgrade
from clove.models import OAuthToken
from clove.oauth.service import register_app
from clove.organization.service import create_organization

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "close-api" / "close-openapi.yml"
SPEC = Path(os.environ.get("CLOVE_CLOSE_SPEC", SPEC_PATH))


def pytest_report_header() -> str:
    url = os.environ.get("CLOVE_TEST_DATABASE_URL")
    return f"clove database: {'PostgreSQL ' + url if url else 'SQLite (temporary file)'}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database for this test session (and this xdist worker)."""
    base = os.environ.get("CLOVE_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'clove.db'}"
        return
    name = f"clove_test_{secrets.token_hex(4)}"
    admin = create_engine(normalize_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(normalize_url(base)).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def secret_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Stored SMTP passwords are encrypted with a key file of the test session, never with
    (or creating) ./clove.key in the working directory."""
    from clove.config import get_settings

    previous = os.environ.get("CLOVE_SECRET_KEY_FILE")
    os.environ["CLOVE_SECRET_KEY_FILE"] = str(tmp_path_factory.mktemp("secrets") / "clove.key")
    get_settings.cache_clear()
    yield
    if previous is None:
        os.environ.pop("CLOVE_SECRET_KEY_FILE", None)
    else:
        os.environ["CLOVE_SECRET_KEY_FILE"] = previous
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def test_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "rate_limit_per_key": 100_000,
        "auth_cache_seconds": 0.0,
        # Webhook receivers in tests listen on loopback.
        "webhooks_allow_private_targets": True,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def app(database_url: str, engine: Engine) -> FastAPI:
    return create_app(test_settings(database_url), engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@dataclass
class Org:
    """An organization with its admin and an API key, ready for requests."""

    id: str
    user_id: str
    membership_id: str
    key: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.key, "")


def new_org(session_factory: sessionmaker[Session], name: str = "Acme") -> Org:
    email = f"admin-{secrets.token_hex(6)}@example.com"
    with session_factory.begin() as session:
        org, user, _key, secret = create_organization(session, name, email, "Ada", "Admin")
        from sqlalchemy import select

        from clove.models import Membership

        membership_id = session.scalar(
            select(Membership.id).where(Membership.organization_id == org.id)
        )
        assert membership_id is not None
        return Org(org.id, user.id, membership_id, secret)


@pytest.fixture
def org(session_factory: sessionmaker[Session]) -> Org:
    return new_org(session_factory, "Org A")


@pytest.fixture
def other_org(session_factory: sessionmaker[Session]) -> Org:
    return new_org(session_factory, "Org B")


def bearer_token(session_factory: sessionmaker[Session], org: Org) -> str:
    """An OAuth access token of the org's admin, as if /oauth2/token/ had issued it."""
    token = "tok_" + secrets.token_urlsafe(24)
    with session_factory.begin() as session:
        client_id, _secret = register_app(session, "Test app", ["https://example.com/cb"])
        session.add(
            OAuthToken(
                access_hash=hash_secret(token),
                refresh_hash=None,
                client_id=client_id,
                organization_id=org.id,
                user_id=org.user_id,
                scope="all.full_access",
                expires_at=utcnow() + timedelta(hours=1),
                revoked=False,
                date_created=utcnow(),
            )
        )
    return token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server on loopback, in a thread of the test process."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 10 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server
