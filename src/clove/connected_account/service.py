"""Connected email accounts: adding an SMTP account (checked by logging in), reading, deleting."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clove.connected_account.schemas import ConnectedAccountCreate, MailServer
from clove.email.smtp import SmtpConfig, SmtpFailure, verify
from clove.errors import BadRequest, Forbidden, object_not_found
from clove.kit.ids import new_id
from clove.kit.secrets import decrypt, encrypt, ensure_key_file
from clove.models import ConnectedAccount, User
from clove.user.schemas import full_name


def list_connected_accounts(
    session: Session, organization_id: str, *, user_id: str | None, skip: int, limit: int
) -> list[ConnectedAccount]:
    """Up to `limit + 1` accounts, oldest first."""
    query = select(ConnectedAccount).where(ConnectedAccount.organization_id == organization_id)
    if user_id is not None:
        query = query.where(ConnectedAccount.user_id == user_id)
    query = query.order_by(ConnectedAccount.date_created, ConnectedAccount.id)
    return list(session.scalars(query.offset(skip).limit(limit + 1)))


def get_connected_account(
    session: Session, organization_id: str, account_id: str
) -> ConnectedAccount:
    account = session.scalars(
        select(ConnectedAccount).where(
            ConnectedAccount.id == account_id, ConnectedAccount.organization_id == organization_id
        )
    ).first()
    if account is None:
        raise object_not_found("ConnectedAccount")
    return account


def create_connected_account(
    session: Session, organization_id: str, user_id: str, body: ConnectedAccountCreate
) -> ConnectedAccount:
    """Flushes a `custom_email` account of the user. With `verify`, first logs in to the SMTP
    server (a network call, made before any query so that no connection is held meanwhile)
    and refuses the account, writing nothing, if that fails."""
    if body.verify:
        check_smtp_login(body.smtp)
    user = session.get(User, user_id)
    if user is None:
        raise object_not_found("User")
    ensure_key_file()  # a fresh install has no key yet; every later process reads this one
    identities = [i.model_dump() for i in body.identities or []] or [
        {"email": body.email, "name": full_name(user)}
    ]
    account = ConnectedAccount(
        id=new_id("emailacct"),
        organization_id=organization_id,
        user_id=user_id,
        type="custom_email",
        email=body.email,
        identities=identities,
        smtp=_settings(body.smtp),
        smtp_password=encrypt(body.smtp.password),
        imap=_settings(body.imap) if body.imap else None,
        imap_password=encrypt(body.imap.password) if body.imap else None,
        send_status="ok",
    )
    session.add(account)
    session.flush()
    return account


def check_smtp_login(server: MailServer) -> None:
    """400 with the server's reason when logging in with these details fails."""
    try:
        verify(_config(server.host, server.port, server.username, server.password, server.security))
    except SmtpFailure as exc:
        raise BadRequest(f"SMTP login failed: {exc.message}") from None


def delete_connected_account(
    session: Session, actor_user_id: str, is_admin: bool, account: ConnectedAccount
) -> None:
    """Only the account's owner or an admin may remove it."""
    if account.user_id != actor_user_id and not is_admin:
        raise Forbidden("Only the account's owner or an admin can delete it.")
    session.delete(account)
    session.flush()


def smtp_config(account: ConnectedAccount) -> SmtpConfig:
    """How to send from `account`, its password decrypted."""
    smtp = account.smtp or {}
    password = decrypt(account.smtp_password) if account.smtp_password else ""
    return _config(
        str(smtp.get("host", "")),
        int(smtp.get("port", 0)),
        str(smtp.get("username", "")),
        password,
        str(smtp.get("security", "starttls")),
    )


def _config(host: str, port: int, username: str, password: str, security: str) -> SmtpConfig:
    return SmtpConfig(host=host, port=port, username=username, password=password, security=security)


def _settings(server: MailServer) -> dict[str, Any]:
    """What is stored in the clear: everything but the password."""
    return server.model_dump(exclude={"password"})
