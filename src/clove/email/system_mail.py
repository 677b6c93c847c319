"""Clove's own mail to its users (bulk action done emails), through the system SMTP server of
the settings (`CLOVE_SMTP_*`), or into the log when none is configured."""

from __future__ import annotations

from email.utils import make_msgid
from typing import Any

import structlog

from clove.config import Settings
from clove.email import smtp
from clove.email.message import build_message
from clove.kit.dates import utcnow

log = structlog.get_logger(__name__)

TITLES = {
    "sequence_subscription": "Bulk sequence subscription",
    "email": "Bulk email",
    "edit": "Bulk edit",
    "delete": "Bulk delete",
}


def done_message(kind: str, data: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of the email saying a bulk action ended."""
    title = TITLES.get(kind, "Bulk action")
    subject = f"{title} {data['status']}: {data['n_objects_processed']} objects processed"
    lines = [
        f"{title} {data['id']} is {data['status']}.",
        "",
        f"Leads: {data['n_leads_processed']} of {data['n_leads']}",
        f"Objects: {data['n_objects_processed']} of {data['n_objects']}",
    ]
    for reason, count in sorted((data.get("skipped") or {}).items()):
        lines.append(f"Skipped ({reason}): {count}")
    return subject, "\n".join(lines) + "\n"


def send_bulk_action_done(settings: Settings, to: str, kind: str, data: dict[str, Any]) -> None:
    """Sends (or logs) the done email; a failure is logged, never raised: the action is done."""
    subject, body = done_message(kind, data)
    if not settings.smtp_host:
        log.info("bulk_action_done_email", to=to, subject=subject, sent=False)
        return
    config = smtp.SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        security=settings.smtp_security,
    )
    message = build_message(
        sender=settings.smtp_from,
        recipient=to,
        subject=subject,
        body=body,
        message_id=make_msgid(domain=settings.smtp_from.rpartition("@")[2] or "localhost"),
        references=[],
        date=utcnow(),
    )
    try:
        client = smtp.connect(config)
        try:
            smtp.send(client, settings.smtp_from, [to], message)
        finally:
            smtp.close(client)
    except smtp.SmtpFailure as exc:
        log.warning("bulk_action_done_email_failed", to=to, error=exc.message)
        return
    log.info("bulk_action_done_email", to=to, subject=subject, sent=True)
