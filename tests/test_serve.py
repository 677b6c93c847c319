"""`clove serve` as a user starts it: the API and its embedded worker send a sequence's email."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.smtp_sink import SmtpSink


def test_clove_serve_sends_a_subscribed_contact_its_email_within_a_second(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOVE_")}
    env["CLOVE_SECRET_KEY_FILE"] = str(tmp_path / "clove.key")
    command = [sys.executable, "-m", "clove", "serve", "--port", str(port)]
    command += ["--database-url", f"sqlite:///{tmp_path / 'clove.db'}"]
    with SmtpSink() as sink:
        server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        try:
            key = _printed_key(server)
            api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", auth=(key, ""))
            _wait_until_up(api)
            smtp = {"host": "127.0.0.1", "port": sink.port, "username": "", "password": ""}
            account = api.post(
                "/connected_account/",
                json={"email": "sam@example.com", "smtp": {**smtp, "security": "none"}},
            ).json()
            template = api.post(
                "/email_template/", json={"name": "Intro", "subject": "Hi {{ contact.first_name }}"}
            ).json()
            steps = [{"delay": 0, "email_template_id": template["id"]}]
            sequence = api.post("/sequence/", json={"name": "Outreach", "steps": steps}).json()
            contact = {"name": "Jane Doe", "emails": [{"email": "jane@acme.test"}]}
            lead = api.post("/lead/", json={"name": "Acme", "contacts": [contact]}).json()
            subscribed = api.post(
                "/sequence_subscription/",
                json={
                    "sequence_id": sequence["id"],
                    "contact_id": lead["contacts"][0]["id"],
                    "sender_account_id": account["id"],
                },
            )
            assert subscribed.status_code == 201, subscribed.text
            started = time.monotonic()
            while not sink.messages and time.monotonic() - started < 5:
                time.sleep(0.02)
            assert [m["Subject"] for m in sink.messages] == ["Hi Jane"]
            assert time.monotonic() - started < 1.0
        finally:
            server.terminate()
            server.wait(timeout=10)
    assert (tmp_path / "clove.key").exists()


def _printed_key(server: subprocess.Popen[str]) -> str:
    assert server.stdout is not None
    for line in server.stdout:
        found = re.fullmatch(r"\s+([A-Za-z0-9_-]{30,})\s*", line)
        if found:
            return found.group(1)
    raise AssertionError("clove serve printed no API key")


def _wait_until_up(api: httpx.Client) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if api.get("/me/").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("clove serve did not answer within 15 s")
