"""A real SMTP server on loopback (aiosmtpd) that records what it accepts, for tests and the
benchmark. Recipients can be told to refuse (`refuse[address] = "550 ..."`)."""

from __future__ import annotations

import email
import socket
import threading
from email.message import Message
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.messages: list[Message] = []
        self.count = 0
        self.connections = 0
        self.refuse: dict[str, str] = {}
        self.lock = threading.Lock()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.connections += 1
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self.refuse.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.count += 1
            if self.keep:
                self.messages.append(email.message_from_bytes(envelope.content, policy=default))
        return "250 Message accepted"


class SmtpSink:
    def __init__(self, keep: bool = True) -> None:
        self.recorder = Recorder(keep)
        with socket.socket() as probe:  # aiosmtpd needs a concrete port to check it started
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[Message]:
        return self.recorder.messages
