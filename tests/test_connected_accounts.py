"""Connected email accounts: Close's shape, passwords encrypted and never returned, SMTP login
checked against a real server on loopback, tenancy, deletion and `clove account`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from clove.cli import app as cli
from clove.config import get_settings
from clove.connected_account.service import smtp_config
from clove.db import make_engine, make_session_factory
from clove.kit.secrets import decrypt
from clove.models import ConnectedAccount
from tests.compat.test_spec_schemas import CONNECTED_ACCOUNT
from tests.conftest import Org, free_port
from tests.test_membership import add_member

URL = "/api/v1/connected_account/"
NOT_FOUND = {"error": "Empty query: ConnectedAccount matching query does not exist."}
USERNAME, PASSWORD = "mailer", "s3cret-Passw0rd"


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
    """Accepts exactly one username and password."""
    ok = (
        isinstance(auth, LoginPassword)
        and auth.login == USERNAME.encode()
        and auth.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535


@pytest.fixture(scope="module")
def smtp_port() -> Iterator[int]:
    """A real SMTP server on loopback that advertises AUTH without TLS."""
    port = free_port()
    controller = Controller(
        Sink(),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    yield port
    controller.stop()


@pytest.fixture(autouse=True)
def secret_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test encrypts with a fresh key file of its own (created on first use)."""
    path = tmp_path / "clove.key"
    monkeypatch.delenv("CLOVE_SECRET_KEY", raising=False)
    monkeypatch.setenv("CLOVE_SECRET_KEY_FILE", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def account_body(port: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": "ada@example.com",
        "smtp": {
            "host": "127.0.0.1",
            "port": port,
            "username": USERNAME,
            "password": PASSWORD,
            "security": "none",
        },
    }
    body.update(overrides)
    return body


def create(client: TestClient, auth: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(URL, json=body, auth=auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def account_row(session_factory: sessionmaker[Session], account_id: str) -> ConnectedAccount:
    with session_factory() as session:
        row = session.get(ConnectedAccount, account_id)
        assert row is not None
        session.expunge(row)
        return row


def count_accounts(session_factory: sessionmaker[Session], org: Org) -> int:
    with session_factory() as session:
        query = select(func.count()).where(ConnectedAccount.organization_id == org.id)
        return int(session.scalar(query) or 0)


# --- Creating, reading ---------------------------------------------------------------------------


def test_create_verifies_the_login_and_returns_closes_shape(
    client: TestClient, org: Org, smtp_port: int, session_factory: sessionmaker[Session]
) -> None:
    account = create(client, org.auth, account_body(smtp_port))
    assert set(account) == CONNECTED_ACCOUNT
    assert account["id"].startswith("emailacct_") and len(account["id"]) == 10 + 43
    assert account["_type"] == "custom_email"
    assert account["user_id"] == org.user_id and account["organization_id"] == org.id
    assert account["email"] == "ada@example.com"
    identity = {"email": "ada@example.com", "name": "Ada Admin"}
    assert account["identities"] == [identity] and account["default_identity"] == identity
    assert account["smtp"] == {
        "host": "127.0.0.1",
        "port": smtp_port,
        "use_ssl": False,
        "username": USERNAME,
    }
    assert account["imap"] is None
    assert account["send_status"] == "ok" and account["latest_send_error"] is None
    assert account["synced_calendars"] == [] and account["date_created"].endswith("+00:00")

    fetched = client.get(f"{URL}{account['id']}/", auth=org.auth)
    assert fetched.status_code == 200 and fetched.json() == account
    listed = client.get(URL, auth=org.auth).json()
    assert listed == {"data": [account], "has_more": False}
    narrowed = client.get(f"{URL}{account['id']}/", params={"_fields": "id,email"}, auth=org.auth)
    assert narrowed.json() == {"id": account["id"], "email": "ada@example.com"}


def test_passwords_are_encrypted_at_rest_and_never_returned(
    client: TestClient, org: Org, smtp_port: int, session_factory: sessionmaker[Session]
) -> None:
    imap = {"host": "imap.example.com", "port": 993, "username": "ada", "password": "imap-pw"}
    body = account_body(smtp_port, imap={**imap, "security": "ssl"})
    response = client.post(URL, json=body, auth=org.auth)
    assert response.status_code == 200, response.text
    assert PASSWORD not in response.text and "imap-pw" not in response.text
    assert "password" not in response.text
    account = response.json()
    assert account["imap"] == {
        "host": "imap.example.com",
        "port": 993,
        "use_ssl": True,
        "username": "ada",
    }
    listed = client.get(URL, auth=org.auth)
    assert PASSWORD not in listed.text and "password" not in listed.text

    row = account_row(session_factory, account["id"])
    assert row.smtp_password and PASSWORD not in row.smtp_password
    assert row.imap_password and "imap-pw" not in row.imap_password
    assert "password" not in row.smtp and row.imap is not None and "password" not in row.imap
    assert decrypt(row.smtp_password) == PASSWORD
    assert decrypt(row.imap_password) == "imap-pw"

    config = smtp_config(row)
    assert (config.host, config.port, config.username) == ("127.0.0.1", smtp_port, USERNAME)
    assert config.password == PASSWORD and config.security == "none"


def test_wrong_password_is_a_400_with_the_servers_reason_and_writes_nothing(
    client: TestClient, org: Org, smtp_port: int, session_factory: sessionmaker[Session]
) -> None:
    before = count_accounts(session_factory, org)
    body = account_body(smtp_port)
    body["smtp"]["password"] = "wrong"
    response = client.post(URL, json=body, auth=org.auth)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("SMTP login failed: 535"), error
    assert "Authentication credentials invalid" in error
    assert count_accounts(session_factory, org) == before


def test_unreachable_server_is_a_400_and_no_verify_skips_the_check(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    closed = free_port()
    refused = client.post(URL, json=account_body(closed), auth=org.auth)
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("SMTP login failed: Connection failed")
    assert count_accounts(session_factory, org) == 0

    body = account_body(closed, verify=False, identities=[{"email": "ada@example.com"}])
    body["smtp"]["security"] = "ssl"
    account = create(client, org.auth, body)
    assert account["smtp"]["use_ssl"] is True
    assert account["identities"] == [{"email": "ada@example.com", "name": ""}]
    assert count_accounts(session_factory, org) == 1


def test_identities_given_are_kept_in_order(client: TestClient, org: Org, smtp_port: int) -> None:
    identities = [
        {"email": "sales@example.com", "name": "Sales"},
        {"email": "ada@example.com", "name": "Ada"},
    ]
    account = create(client, org.auth, account_body(smtp_port, identities=identities))
    assert account["identities"] == identities
    assert account["default_identity"] == identities[0]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"smtp": None}, "smtp"),
        ({"identities": []}, "identities"),
        ({"identities": [{"email": "x"}]}, "identities.0.email"),
        ({"verify": "yes"}, "verify"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_bodies_are_400_field_errors(
    client: TestClient,
    org: Org,
    smtp_port: int,
    session_factory: sessionmaker[Session],
    change: dict[str, Any],
    field: str,
) -> None:
    response = client.post(URL, json=account_body(smtp_port, **change), auth=org.auth)
    assert response.status_code == 400, response.text
    assert field in response.json()["field-errors"], response.json()
    assert count_accounts(session_factory, org) == 0


@pytest.mark.parametrize(
    ("smtp_change", "field"),
    [
        ({"security": "tls"}, "smtp.security"),
        ({"port": 0}, "smtp.port"),
        ({"port": 70000}, "smtp.port"),
        ({"host": ""}, "smtp.host"),
    ],
)
def test_bad_smtp_settings_are_400(
    client: TestClient, org: Org, smtp_port: int, smtp_change: dict[str, Any], field: str
) -> None:
    body = account_body(smtp_port)
    body["smtp"].update(smtp_change)
    response = client.post(URL, json=body, auth=org.auth)
    assert response.status_code == 400
    assert field in response.json()["field-errors"], response.json()


def test_list_filters_by_user_and_pages(
    client: TestClient, org: Org, smtp_port: int, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user", first_name="Bob")
    mine = [create(client, org.auth, account_body(smtp_port))["id"] for _ in range(2)]
    theirs = create(client, member.auth, account_body(smtp_port, email="bob@example.com"))
    assert theirs["user_id"] == member.user_id
    assert theirs["identities"] == [{"email": "bob@example.com", "name": "Bob"}]

    def ids(**params: Any) -> list[str]:
        response = client.get(URL, params=params, auth=org.auth)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["data"]]

    assert ids() == [*mine, theirs["id"]]
    assert ids(user_id=org.user_id) == mine
    assert ids(user_id=member.user_id) == [theirs["id"]]
    first = client.get(URL, params={"_limit": 2}, auth=org.auth).json()
    assert [a["id"] for a in first["data"]] == mine and first["has_more"] is True
    assert ids(_skip=2) == [theirs["id"]]
    assert client.get(URL, params={"_limit": 101}, auth=org.auth).status_code == 400


def test_other_organizations_accounts_are_404_and_unlisted(
    client: TestClient, org: Org, other_org: Org, smtp_port: int
) -> None:
    theirs = create(client, other_org.auth, account_body(smtp_port))
    url = f"{URL}{theirs['id']}/"
    assert client.get(url, auth=org.auth).json() == NOT_FOUND
    deleted = client.delete(url, auth=org.auth)
    assert deleted.status_code == 404 and deleted.json() == NOT_FOUND
    assert client.get(URL, auth=org.auth).json()["data"] == []
    assert client.get(URL, params={"user_id": other_org.user_id}, auth=org.auth).json() == {
        "data": [],
        "has_more": False,
    }
    assert client.get(url, auth=other_org.auth).status_code == 200


def test_delete_by_owner_or_admin_only(
    client: TestClient, org: Org, smtp_port: int, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    other = add_member(session_factory, org, "user")
    admins = create(client, org.auth, account_body(smtp_port))
    members = create(client, member.auth, account_body(smtp_port))

    refused = client.delete(f"{URL}{admins['id']}/", auth=member.auth)
    assert refused.status_code == 403 and "error" in refused.json()
    assert client.delete(f"{URL}{members['id']}/", auth=other.auth).status_code == 403
    assert count_accounts(session_factory, org) == 2

    own = client.delete(f"{URL}{members['id']}/", auth=member.auth)
    assert own.status_code == 200 and own.json() == {}
    assert client.get(f"{URL}{members['id']}/", auth=org.auth).json() == NOT_FOUND
    again = create(client, member.auth, account_body(smtp_port))
    by_admin = client.delete(f"{URL}{again['id']}/", auth=org.auth)
    assert by_admin.status_code == 200
    assert count_accounts(session_factory, org) == 1


# --- `clove account` -----------------------------------------------------------------------------


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("CLOVE_DATABASE_URL", raising=False)
    yield f"sqlite:///{tmp_path / 'cli.db'}"
    get_settings.cache_clear()


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def add_args(db: str, port: int, *extra: str, user: str = "Boss@Example.com") -> list[str]:
    return [
        "account",
        "add",
        "--email",
        "boss@example.com",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(port),
        "--smtp-username",
        USERNAME,
        "--security",
        "none",
        "--user-email",
        user,
        "--database-url",
        db,
        *extra,
    ]


def cli_rows(db: str) -> list[ConnectedAccount]:
    engine = make_engine(db)
    try:
        with make_session_factory(engine)() as session:
            rows = list(session.scalars(select(ConnectedAccount)))
            session.expunge_all()
            return rows
    finally:
        engine.dispose()


def test_cli_add_with_password_on_stdin(cli_db: str, smtp_port: int, secret_key_file: Path) -> None:
    init = run("init", "--org", "Initech", "--email", "boss@example.com", "--database-url", cli_db)
    assert init.exit_code == 0, init.output
    result = run(
        *add_args(cli_db, smtp_port, "--smtp-password-stdin", "--name", "The Boss"),
        stdin=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    account_id = result.stdout.strip().splitlines()[-1]
    assert account_id.startswith("emailacct_") and result.stdout.strip() == account_id
    assert secret_key_file.exists()

    [row] = cli_rows(cli_db)
    assert row.id == account_id and row.email == "boss@example.com"
    assert row.identities == [{"email": "boss@example.com", "name": "The Boss"}]
    assert PASSWORD not in row.smtp_password and smtp_config(row).password == PASSWORD

    listed = run("account", "list", "--database-url", cli_db)
    assert listed.exit_code == 0, listed.output
    assert account_id in listed.stdout and f"127.0.0.1:{smtp_port}" in listed.stdout
    assert PASSWORD not in listed.stdout


def test_cli_add_refuses_a_wrong_password_with_exit_code_2(cli_db: str, smtp_port: int) -> None:
    run("init", "--org", "Initech", "--email", "boss@example.com", "--database-url", cli_db)
    result = run(*add_args(cli_db, smtp_port, "--smtp-password", "wrong"))
    assert result.exit_code == 2
    assert "SMTP login failed: 535" in result.stderr and "--no-verify" in result.stderr
    assert result.stdout == ""
    assert cli_rows(cli_db) == []

    skipped = run(*add_args(cli_db, smtp_port, "--smtp-password", "wrong", "--no-verify"))
    assert skipped.exit_code == 0, skipped.output
    assert len(cli_rows(cli_db)) == 1


def test_cli_add_explains_bad_options(cli_db: str, smtp_port: int) -> None:
    run("init", "--org", "Initech", "--email", "boss@example.com", "--database-url", cli_db)
    unknown = run(
        *add_args(cli_db, smtp_port, "--smtp-password", PASSWORD, user="nobody@example.com")
    )
    assert unknown.exit_code == 2 and "No active member" in unknown.stderr

    bad = run(*add_args(cli_db, smtp_port, "--smtp-password", PASSWORD, "--security", "tls"))
    assert bad.exit_code == 2 and "security" in bad.stderr

    both = run(
        *add_args(cli_db, smtp_port, "--smtp-password", PASSWORD, "--smtp-password-stdin"),
        stdin="x\n",
    )
    assert both.exit_code == 2 and "either" in both.stderr
    assert cli_rows(cli_db) == []
