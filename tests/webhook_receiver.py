"""A real webhook receiver on loopback for tests: checks Close's signature, answers with
scripted statuses, can hold requests open, and keeps everything it was sent."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def event(self) -> dict[str, Any]:
        return dict(self.payload["event"])


class Receiver:
    """`keys` maps subscription ids to their signature keys (set after creating each one)."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.received: list[Received] = []
        self.statuses: deque[int] = deque()  # answers to give, in order; then 200
        self.hold: threading.Event | None = None  # when given, requests wait until it is set
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver._take(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _take(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.arrived:
            self.received.append(Received(handler.path, headers, body, self._signed(headers, body)))
            status = self.statuses.popleft() if self.statuses else 200
            hold = self.hold
            self.arrived.notify_all()
        if hold is not None:
            hold.wait(30)
        handler.send_response(status)
        handler.send_header("content-length", "0")
        handler.end_headers()

    def _signed(self, headers: dict[str, str], body: bytes) -> bool:
        try:
            key = self.keys[json.loads(body)["subscription_id"]]
        except (KeyError, ValueError):
            return False
        message = headers.get("close-sig-timestamp", "").encode() + body
        expected = hmac.new(bytes.fromhex(key), message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, headers.get("close-sig-hash", ""))

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        """Blocks until `count` requests have arrived (the test fails on timeout)."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{len(self.received)} of {count} requests arrived")
            return list(self.received)

    def events(self, subscription_id: str | None = None) -> list[tuple[str, str]]:
        """(object_type.action, object_id ... ) pairs received, in arrival order."""
        return [
            (f"{r.event['object_type']}.{r.event['action']}", r.event["object_id"])
            for r in self.received
            if subscription_id is None or r.payload["subscription_id"] == subscription_id
        ]

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()
