"""Sending over SMTP: log in, send, and say what a failure means for the sender.

A failure is one of three kinds, because the engine treats them differently:
`bounce` (the server refused this message or recipient for good: 5xx after login),
`account` (the server refused our login: 5xx on AUTH), and `temporary` (4xx, timeouts,
refused or dropped connections), which are worth retrying.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from typing import Literal

SECURITY = ("none", "starttls", "ssl")
Kind = Literal["bounce", "account", "temporary"]


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str
    password: str
    security: str = "starttls"
    timeout: float = 30.0


class SmtpFailure(Exception):
    def __init__(self, kind: Kind, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message


def _reply_text(error: bytes | str) -> str:
    return error.decode(errors="replace") if isinstance(error, bytes) else str(error)


def _classify(exc: Exception, *, logging_in: bool) -> SmtpFailure:
    if isinstance(exc, SmtpFailure):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()))
        kind: Kind = "bounce" if code >= 500 else "temporary"
        return SmtpFailure(kind, f"{code} {_reply_text(reply)}", code)
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        text = f"{code} {_reply_text(exc.smtp_error)}"
        if code < 500:
            return SmtpFailure("temporary", text, code)
        return SmtpFailure("account" if logging_in else "bounce", text, code)
    if isinstance(exc, smtplib.SMTPNotSupportedError | smtplib.SMTPAuthenticationError):
        return SmtpFailure("account", str(exc))
    if isinstance(exc, ssl.SSLError):
        return SmtpFailure("account" if logging_in else "temporary", f"TLS error: {exc}")
    if isinstance(exc, OSError | smtplib.SMTPException):  # refused, reset, timeout, disconnected
        return SmtpFailure("temporary", f"Connection failed: {exc or type(exc).__name__}")
    raise exc


def connect(config: SmtpConfig) -> smtplib.SMTP:
    """An SMTP connection, logged in when a username is set. Raises SmtpFailure."""
    client: smtplib.SMTP | None = None
    try:
        if config.security == "ssl":
            client = smtplib.SMTP_SSL(
                config.host,
                config.port,
                timeout=config.timeout,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            if config.security == "starttls":
                client.starttls(context=ssl.create_default_context())
        if config.username:
            client.login(config.username, config.password)
        return client
    except Exception as exc:
        if client is not None:
            close(client)
        raise _classify(exc, logging_in=True) from exc


def verify(config: SmtpConfig) -> None:
    """Logs in and out; raises SmtpFailure with the server's reason when that fails."""
    client = connect(config)
    close(client)


def send(client: smtplib.SMTP, sender: str, recipients: list[str], message: bytes) -> None:
    """Sends one message on an open connection. Raises SmtpFailure."""
    try:
        client.sendmail(sender, recipients, message)
    except Exception as exc:
        raise _classify(exc, logging_in=False) from exc


def close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        try:
            client.close()
        except OSError:
            pass


class ConnectionPool:
    """One open connection per sender account, reused across messages (not thread-safe)."""

    def __init__(self) -> None:
        self._open: dict[str, smtplib.SMTP] = {}

    def get(self, account_id: str, config: SmtpConfig) -> smtplib.SMTP:
        client = self._open.get(account_id)
        if client is None:
            client = self._open[account_id] = connect(config)
        return client

    def discard(self, account_id: str) -> None:
        client = self._open.pop(account_id, None)
        if client is not None:
            close(client)

    def close_all(self) -> None:
        for account_id in list(self._open):
            self.discard(account_id)

    def send(
        self, account_id: str, config: SmtpConfig, sender: str, recipient: str, message: bytes
    ) -> None:
        """Sends over the account's open connection. A reused connection that the server has
        closed meanwhile (servers drop idle ones) is replaced once, at once, rather than
        counting as a failed attempt. Raises SmtpFailure."""
        reused = account_id in self._open
        try:
            send(self.get(account_id, config), sender, [recipient], message)
        except SmtpFailure as failure:
            if failure.kind == "bounce":
                raise
            self.discard(account_id)
            if not (reused and failure.code is None):
                raise
            send(self.get(account_id, config), sender, [recipient], message)

    def __len__(self) -> int:
        return len(self._open)
