"""RFC 5322 messages, written directly: the standard library's `EmailMessage` costs about 2 ms
of CPU per message (its header registry), which would dominate sending a sequence step.

Headers that are not ASCII are RFC 2047 encoded; bodies are 7bit when they can be, else
quoted-printable UTF-8. An HTML body is sent with a plain-text alternative.
"""

from __future__ import annotations

import binascii
import hashlib
import html
import re
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime

_TAGS = re.compile(r"<[^>]+>")
_BREAKS = re.compile(r"<\s*(br|/p|/div|/li|/h\d)\s*/?\s*>", re.IGNORECASE)
_HTML_TAG = re.compile(r"<[A-Za-z][^>]*>")
_NEWLINES = re.compile(r"\r\n|\r|\n")
# 7bit bodies must keep lines under 998 octets (RFC 5322); quoted-printable has no such limit.
MAX_7BIT_LINE = 900


def looks_like_html(text: str) -> bool:
    return bool(_HTML_TAG.search(text))


def html_to_text(body: str) -> str:
    """A plain-text alternative of an HTML body (line breaks kept, tags dropped)."""
    return html.unescape(_TAGS.sub("", _BREAKS.sub("\n", body))).strip()


def header_text(value: str) -> str:
    """A header value on one line, RFC 2047 encoded when it is not ASCII."""
    value = _NEWLINES.sub(" ", value)
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(maxlinelen=998)


def address(name: str, email: str) -> str:
    """`Name <email>` with the name quoted or encoded as needed; the bare address if no name."""
    name = _NEWLINES.sub(" ", name).strip()
    if not name:
        return email
    if not name.isascii():
        return f"{Header(name, 'utf-8').encode(maxlinelen=998)} <{email}>"
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{email}>'


def _part(content_type: str, text: str) -> bytes:
    lines = _NEWLINES.split(text)
    if text.isascii() and all(len(line) <= MAX_7BIT_LINE for line in lines):
        encoding, payload = "7bit", "\r\n".join(lines).encode()
    else:
        encoding = "quoted-printable"
        qp = binascii.b2a_qp("\n".join(lines).encode(), istext=True)
        payload = b"\r\n".join(qp.split(b"\n"))
    head = (
        f'Content-Type: {content_type}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return head.encode() + payload + b"\r\n"


def build_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    body: str,
    message_id: str,
    references: list[str],
    date: datetime,
) -> bytes:
    """The message as bytes for SMTP. `sender` is already an address header (see `address`)."""
    headers = [
        f"From: {sender}",
        f"To: {recipient}",
        f"Subject: {header_text(subject)}",
        f"Date: {format_datetime(date.replace(tzinfo=UTC))}",
        f"Message-ID: {message_id}",
    ]
    if references:
        headers.append(f"In-Reply-To: {references[-1]}")
        headers.append(f"References: {' '.join(references)}")
    headers.append("MIME-Version: 1.0")
    head = ("\r\n".join(headers) + "\r\n").encode()
    if not looks_like_html(body):
        return head + _part("text/plain", body)
    boundary = "=_clove_" + hashlib.sha1(message_id.encode()).hexdigest()[:24]
    return (
        head
        + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode()
        + f"--{boundary}\r\n".encode()
        + _part("text/plain", html_to_text(body))
        + f"--{boundary}\r\n".encode()
        + _part("text/html", body)
        + f"--{boundary}--\r\n".encode()
    )
