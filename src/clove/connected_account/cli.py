"""`clove account add|list`: connected (SMTP) email accounts from the command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

from clove.connected_account.schemas import ConnectedAccountCreate
from clove.db import make_session_factory
from clove.errors import APIError
from clove.kit.secrets import ensure_key_file
from clove.membership.service import active_members_by_email
from clove.models import ConnectedAccount, Membership, User

account_app = typer.Typer(help="Connected email accounts.", no_args_is_help=True)
err = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="CLOVE_DATABASE_URL",
        help="SQLAlchemy URL; default sqlite:///./clove.db",
    ),
]
OrgId = Annotated[
    str | None, typer.Option("--org-id", help="Needed if the member belongs to several")
]


def fail(message: str, hint: str) -> typer.Exit:
    err.print(f"[red]{message}[/red] {hint}")
    return typer.Exit(2)


@account_app.command("add")
def add(
    email: Annotated[str, typer.Option("--email", help="The account's email address")],
    smtp_host: Annotated[str, typer.Option("--smtp-host")],
    smtp_port: Annotated[int, typer.Option("--smtp-port")],
    user_email: Annotated[str, typer.Option("--user-email", help="The member it belongs to")],
    smtp_username: Annotated[str, typer.Option("--smtp-username")] = "",
    smtp_password: Annotated[
        str | None, typer.Option("--smtp-password", help="Visible to `ps`: prefer --stdin")
    ] = None,
    smtp_password_stdin: Annotated[
        bool, typer.Option("--smtp-password-stdin", help="Read the password from stdin")
    ] = False,
    security: Annotated[str, typer.Option("--security", help="none, starttls or ssl")] = (
        "starttls"
    ),
    name: Annotated[str | None, typer.Option("--name", help="Sender name")] = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Do not log in to check the details")
    ] = False,
    org_id: OrgId = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add an SMTP account for a member (checked by logging in); prints its id last."""
    from clove.cli import _engine
    from clove.connected_account.service import create_connected_account

    password = _password(smtp_password, smtp_password_stdin)
    body = _body(email, smtp_host, smtp_port, smtp_username, password, security, name, no_verify)
    ensure_key_file()
    engine = _engine(database_url)
    with make_session_factory(engine).begin() as session:
        membership = _member(session, user_email, org_id)
        try:
            account = create_connected_account(
                session, membership.organization_id, membership.user_id, body
            )
        except APIError as exc:
            raise fail(f"{exc.message}.", "Check the SMTP details, or pass --no-verify.") from None
        err.print(f"Added {account.email} for {user_email} ({membership.organization_id})")
        print(account.id)


@account_app.command("list")
def list_accounts(org_id: OrgId = None, database_url: DatabaseUrl = None) -> None:
    """One line per account: id, email, owner, SMTP server."""
    from clove.cli import _engine

    engine = _engine(database_url)
    with make_session_factory(engine)() as session:
        query = (
            select(ConnectedAccount, User.email)
            .join(User, User.id == ConnectedAccount.user_id)
            .order_by(ConnectedAccount.date_created, ConnectedAccount.id)
        )
        if org_id:
            query = query.where(ConnectedAccount.organization_id == org_id)
        for account, owner in session.execute(query):
            smtp = account.smtp or {}
            server = f"{smtp.get('host')}:{smtp.get('port')}"
            print(f"{account.id}\t{account.email}\t{owner}\t{server}\t{account.send_status}")


def _password(value: str | None, from_stdin: bool) -> str:
    if from_stdin and value is not None:
        raise fail("Pass either --smtp-password or --smtp-password-stdin.", "Not both.")
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return value or ""


def _body(
    email: str,
    host: str,
    port: int,
    username: str,
    password: str,
    security: str,
    name: str | None,
    no_verify: bool,
) -> ConnectedAccountCreate:
    data: dict[str, object] = {
        "email": email,
        "smtp": {
            "host": host,
            "port": port,
            "username": username,
            "password": password,
            "security": security,
        },
        "verify": not no_verify,
    }
    if name is not None:
        data["identities"] = [{"email": email, "name": name}]
    try:
        return ConnectedAccountCreate.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise fail(f"Invalid account details: {problems}.", "Fix the options above.") from None


def _member(session: Session, user_email: str, org_id: str | None) -> Membership:
    memberships = active_members_by_email(session, user_email, org_id)
    if not memberships:
        raise fail(
            f"No active member with email {user_email!r}.",
            "Add the user to the organization first (or check --org-id).",
        )
    if len(memberships) > 1:
        orgs = ", ".join(m.organization_id for m in memberships)
        raise fail(f"{user_email} belongs to several organizations ({orgs}).", "Pass --org-id.")
    return memberships[0]
