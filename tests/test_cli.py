"""The `clove` command on a temporary SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from clove.app import create_app
from clove.cli import app as cli
from clove.config import get_settings
from clove.db import make_engine
from clove.migrate import is_current
from tests.conftest import test_settings as settings_for


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # The CLI exports CLOVE_DATABASE_URL for the processes it starts; undo that afterwards.
    monkeypatch.delenv("CLOVE_DATABASE_URL", raising=False)
    monkeypatch.delenv("CLOVE_SECRET_KEY", raising=False)
    monkeypatch.setenv("CLOVE_SECRET_KEY_FILE", str(tmp_path / "clove.key"))
    get_settings.cache_clear()
    yield f"sqlite:///{tmp_path / 'cli.db'}"
    get_settings.cache_clear()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def last_line(result: Result) -> str:
    lines = result.stdout.strip().splitlines()
    assert lines, result.stdout
    return lines[-1]


def get_me(db_url: str, key: str) -> dict[str, object]:
    engine = make_engine(db_url)
    try:
        with TestClient(create_app(settings_for(db_url), engine)) as client:
            response = client.get("/api/v1/me/", auth=(key, ""))
            assert response.status_code == 200, response.text
            return dict(response.json())
    finally:
        engine.dispose()


def test_init_prints_a_working_key_alone_on_the_last_line(db_url: str) -> None:
    result = run(
        "init",
        "--org",
        "Initech",
        "--email",
        "Boss@Example.com",
        "--first-name",
        "Bill",
        "--database-url",
        db_url,
    )
    assert result.exit_code == 0, result.output
    key = last_line(result)
    assert key == key.strip() and " " not in key and len(key) >= 40
    assert result.stdout.strip() == key  # nothing else on stdout: `KEY=$(clove init ...)` works
    assert "Initech" in result.stderr

    me = get_me(db_url, key)
    assert me["email"] == "Boss@Example.com"
    assert me["first_name"] == "Bill"
    organizations = me["organizations"]
    assert isinstance(organizations, list)
    assert organizations[0]["name"] == "Initech"
    assert me["memberships"][0]["role_id"] == "admin"  # type: ignore[index]


def test_apikey_create_issues_another_key(db_url: str) -> None:
    first = last_line(
        run("init", "--org", "O", "--email", "a@example.com", "--database-url", db_url)
    )
    result = run(
        "apikey", "create", "--email", "A@EXAMPLE.COM", "--name", "ci", "--database-url", db_url
    )
    assert result.exit_code == 0, result.output
    second = last_line(result)
    assert second != first
    assert get_me(db_url, second)["id"] == get_me(db_url, first)["id"]


def test_apikey_create_needs_org_id_when_the_user_has_several(db_url: str) -> None:
    run("init", "--org", "One", "--email", "a@example.com", "--database-url", db_url)
    run("init", "--org", "Two", "--email", "a@example.com", "--database-url", db_url)
    ambiguous = run("apikey", "create", "--email", "a@example.com", "--database-url", db_url)
    assert ambiguous.exit_code == 2
    assert "--org-id" in ambiguous.stderr
    assert ambiguous.stdout == ""


def test_unknown_email_is_a_clear_error_with_exit_code_2(db_url: str) -> None:
    run("db", "upgrade", "--database-url", db_url)
    result = run("apikey", "create", "--email", "nobody@example.com", "--database-url", db_url)
    assert result.exit_code == 2
    assert "nobody@example.com" in result.stderr
    assert "No active member" in result.stderr
    assert result.stdout == ""  # no key-looking line for scripts to pick up


def test_db_upgrade_is_idempotent(db_url: str) -> None:
    for _ in range(2):
        result = run("db", "upgrade", "--database-url", db_url)
        assert result.exit_code == 0, result.output
        assert "up to date" in result.stderr
    engine = make_engine(db_url)
    try:
        assert is_current(engine)
    finally:
        engine.dispose()


def test_init_rejects_a_bad_email(db_url: str) -> None:
    result = run("init", "--org", "O", "--email", "not-an-email", "--database-url", db_url)
    assert result.exit_code == 2
    assert "not-an-email" in result.stderr
    assert result.stdout == ""


def test_unreachable_database_is_exit_code_2(tmp_path: Path, db_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    result = run("db", "upgrade", "--database-url", url)
    assert result.exit_code == 2
    assert "Cannot prepare the database" in result.stderr


def test_init_creates_the_secret_key_file_once_readable_only_by_its_owner(
    db_url: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "clove.key"
    first = run("init", "--org", "A", "--email", "a@example.com", "--database-url", db_url)
    assert first.exit_code == 0 and "Created" in first.stderr
    key = key_file.read_bytes()
    assert len(key.strip()) == 44  # a Fernet key
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = run("init", "--org", "B", "--email", "b@example.com", "--database-url", db_url)
    assert again.exit_code == 0 and "Created" not in again.stderr
    assert key_file.read_bytes() == key  # never replaced: stored passwords need the same key


def test_worker_once_runs_what_is_due_and_exits(db_url: str) -> None:
    result = run("worker", "--once", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    assert "Worked through 0 due item(s)." in result.stderr
