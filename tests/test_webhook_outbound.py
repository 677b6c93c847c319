"""Outbound webhook safety: which URLs are refused, and requests to real servers on loopback
(plain HTTP, and HTTPS with a certificate made here) through the pinned connection path."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clove.webhook.outbound import UnsafeTarget, _parse, _pinned_request, check_url, post

OPERATOR_HINT = "CLOVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true"
LOOPBACK = ipaddress.ip_address("127.0.0.1")


@dataclass
class Received:
    path: str
    host: str | None
    body: bytes


@dataclass
class Receiver:
    """A real HTTP(S) server on 127.0.0.1 that records what reaches it."""

    port: int
    received: list[Received] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)  # TLS SNI, per handshake


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep connections open unless the client closes them

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.received.append(Received(self.path, self.headers.get("Host"), body))
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{receiver.port}/elsewhere")
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _serve(ssl_context: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    receiver = Receiver(port=0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve()


@dataclass
class Tls:
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    """A CA and a server certificate for `receiver.test` only, made with cryptography."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clove test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "receiver.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("receiver.test")]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file = tmp_path / "receiver.pem"
    key_file = tmp_path / "receiver.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(
        cadata=ca.public_bytes(serialization.Encoding.PEM).decode()
    )
    return Tls(server_context, client_context)


@pytest.fixture
def tls_receiver(tls: Tls) -> Iterator[Receiver]:
    names: list[str | None] = []

    def remember_name(_sock: object, name: str | None, _context: object) -> None:
        names.append(name)

    tls.server_context.sni_callback = remember_name
    for receiver in _serve(tls.server_context):
        receiver.server_names = names
        yield receiver


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, trust_env=False) as client:
        yield client


# --- check_url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://127.255.0.9/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://10.255.255.255:8080/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://172.31.255.254/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/", "loopback"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        ("http://[fd12:3456::1]/", "private"),
        ("http://[::ffff:127.0.0.1]/", "loopback address (127.0.0.1) written as IPv6"),
        ("http://[::ffff:10.1.2.3]/", "private address (10.1.2.3) written as IPv6"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local address (169.254.169.254) written as IPv6"),
        ("http://[2002:c0a8:101::1]/", "private address (192.168.1.1) written as IPv6"),
        ("http://100.64.0.1/", "shared address space"),
        ("http://100.127.255.254/", "shared address space"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.251/", "multicast"),
        ("http://239.1.2.3/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://[ff0e::1]/", "multicast"),
        ("http://255.255.255.255/", "private"),
        ("http://240.0.0.1/", "private"),
        ("http://[fec0::1]/", "site-local"),
        ("http://192.0.2.10/", "private"),  # documentation range
        ("https://198.18.0.1/", "private"),  # benchmarking range
    ],
)
def test_non_global_literals_are_refused_unless_allowed(url: str, reason: str) -> None:
    message = check_url(url, allow_private=False)

    assert message is not None
    assert reason in message
    assert OPERATOR_HINT in message
    assert check_url(url, allow_private=True) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/hook",
        "https://93.184.216.34:8443/hook?a=1",
        "https://[2606:4700::1111]/hook",
        "http://[::ffff:93.184.216.34]/",  # judged by the IPv4 address it carries
        "https://8.8.8.8/",
    ],
)
def test_public_literals_are_accepted(url: str) -> None:
    assert check_url(url, allow_private=False) is None


@pytest.mark.parametrize(
    "url", ["http://localhost/", "http://LOCALHOST.:8080/x", "https://api.localhost/hook"]
)
def test_localhost_names_are_refused_without_a_lookup(url: str) -> None:
    message = check_url(url, allow_private=False)

    assert message is not None
    assert "localhost is this machine" in message
    assert OPERATOR_HINT in message
    assert check_url(url, allow_private=True) is None


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1"])
def test_names_that_resolve_to_loopback_are_refused(host: str) -> None:
    # The resolver reads these old numeric forms as 127.0.0.1, so they go through the name path.
    message = check_url(f"http://{host}/hook", allow_private=False)

    assert message is not None
    assert f"{host} resolves to 127.0.0.1, a loopback address" in message


def test_a_name_that_does_not_resolve_is_accepted_until_connect_time() -> None:
    assert check_url("https://hooks.clove-test.invalid/close", allow_private=False) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/hook", "must start with http:// or https://"),
        ("example.com/hook", "must start with http:// or https://"),
        ("http:///hook", "has no host"),
        ("http://exa mple.com/", "not a valid host name"),
        ("http://a..b/", "not a valid host name"),
        ("http://example.com:99999/", "out of range"),
        ("http://example.com:0/", "out of range"),
        ("http://[::1/", "Invalid webhook URL"),
    ],
)
def test_badly_shaped_urls_are_refused_even_when_private_targets_are_allowed(
    url: str, message: str
) -> None:
    for allow_private in (False, True):
        error = check_url(url, allow_private=allow_private)
        assert error is not None
        assert message in error


# --- post against a real server ------------------------------------------------------------


def test_post_reaches_a_private_receiver_when_allowed(
    receiver: Receiver, client: httpx.Client
) -> None:
    url = f"http://127.0.0.1:{receiver.port}/hook?x=1"

    response = post(client, url, content=b'{"a":1}', headers={"X-Test": "1"}, allow_private=True)

    assert response.status_code == 200
    assert receiver.received == [Received("/hook?x=1", f"127.0.0.1:{receiver.port}", b'{"a":1}')]


def test_post_refuses_a_private_literal_and_sends_nothing(
    receiver: Receiver, client: httpx.Client
) -> None:
    url = f"http://127.0.0.1:{receiver.port}/hook"

    with pytest.raises(UnsafeTarget, match=r"127\.0\.0\.1 is a loopback address") as refused:
        post(client, url, content=b"x", headers={}, allow_private=False)

    assert OPERATOR_HINT in str(refused.value)
    assert receiver.received == []


def test_post_refuses_the_name_localhost_at_connect_time(
    receiver: Receiver, client: httpx.Client
) -> None:
    url = f"http://localhost:{receiver.port}/hook"

    with pytest.raises(UnsafeTarget, match="localhost is this machine"):
        post(client, url, content=b"x", headers={}, allow_private=False)
    assert receiver.received == []

    # The same URL does reach the server when allowed, so the refusal is what stopped it.
    post(client, url, content=b"y", headers={}, allow_private=True)
    assert [r.body for r in receiver.received] == [b"y"]


def test_post_resolves_names_and_refuses_a_loopback_answer(
    receiver: Receiver, client: httpx.Client
) -> None:
    url = f"http://2130706433:{receiver.port}/hook"

    with pytest.raises(UnsafeTarget, match=r"resolves to 127\.0\.0\.1, a loopback address"):
        post(client, url, content=b"x", headers={}, allow_private=False)

    assert receiver.received == []


def test_post_to_a_name_that_does_not_resolve_is_a_connect_error(client: httpx.Client) -> None:
    with pytest.raises(httpx.ConnectError, match=r"hooks\.clove-test\.invalid") as failed:
        post(
            client,
            "https://hooks.clove-test.invalid/close",
            content=b"x",
            headers={},
            allow_private=False,
        )

    assert failed.value.request.url.host == "hooks.clove-test.invalid"


def test_post_refuses_a_badly_shaped_url(client: httpx.Client) -> None:
    with pytest.raises(UnsafeTarget, match="must start with http"):
        post(client, "file:///etc/passwd", content=b"x", headers={}, allow_private=True)


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.port}/redirect"

    # Even a client configured to follow redirects does not, through post().
    with httpx.Client(timeout=5, trust_env=False, follow_redirects=True) as client:
        response = post(client, url, content=b"x", headers={}, allow_private=True)

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/elsewhere")
    assert [r.path for r in receiver.received] == ["/redirect"]


# --- the pinned path -------------------------------------------------------------------------


def test_pinned_request_keeps_the_name_for_host_and_tls(client: httpx.Client) -> None:
    target = _parse("https://Hooks.Example.com:8443/close/hook?token=a%20b&x=1")
    address = ipaddress.ip_address("93.184.216.34")

    request = _pinned_request(
        client, target, address, content=b"{}", headers={"Host": "evil.test", "X-Sig": "abc"}
    )

    assert str(request.url) == "https://93.184.216.34:8443/close/hook?token=a%20b&x=1"
    assert request.headers["Host"] == "hooks.example.com:8443"
    assert request.headers.get_list("Host") == ["hooks.example.com:8443"]
    assert request.headers["X-Sig"] == "abc"
    assert request.headers["Connection"] == "close"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.method == "POST"
    assert request.read() == b"{}"


def test_pinned_request_brackets_ipv6_and_leaves_default_ports_out(client: httpx.Client) -> None:
    target = _parse("https://hooks.example.com./hook")
    address = ipaddress.ip_address("2606:4700::1111")

    request = _pinned_request(client, target, address, content=b"", headers={})

    assert str(request.url) == "https://[2606:4700::1111]/hook"
    assert request.headers["Host"] == "hooks.example.com."
    assert request.extensions["sni_hostname"] == "hooks.example.com"


def test_pinned_request_uses_the_idna_name_and_no_sni_for_http(client: httpx.Client) -> None:
    target = _parse("http://bücher.example:8080/hook")
    address = ipaddress.ip_address("93.184.216.34")

    request = _pinned_request(client, target, address, content=b"", headers={})

    assert str(request.url) == "http://93.184.216.34:8080/hook"
    assert request.headers["Host"] == "xn--bcher-kva.example:8080"
    assert "sni_hostname" not in request.extensions
    assert request.headers["Connection"] == "keep-alive"  # plain HTTP connections are kept


def test_pinned_http_request_reaches_the_address_with_the_original_host(
    receiver: Receiver, client: httpx.Client
) -> None:
    # The name does not resolve anywhere: only the pinned address can have carried the request.
    target = _parse(f"http://receiver.clove-test.invalid:{receiver.port}/hook?x=1")

    request = _pinned_request(client, target, LOOPBACK, content=b"payload", headers={})
    response = client.send(request)

    assert response.status_code == 200
    assert receiver.received == [
        Received("/hook?x=1", f"receiver.clove-test.invalid:{receiver.port}", b"payload")
    ]


def test_pinned_https_request_uses_the_real_name_for_sni_and_the_certificate(
    tls: Tls, tls_receiver: Receiver
) -> None:
    port = tls_receiver.port
    with httpx.Client(verify=tls.client_context, timeout=5, trust_env=False) as client:
        request = _pinned_request(
            client, _parse(f"https://receiver.test:{port}/hook"), LOOPBACK, content=b"a", headers={}
        )
        assert client.send(request).status_code == 200

        # Same IP and port, a name the certificate does not cover: the pinned TLS connection
        # above was not kept, so a new handshake checks this name and fails.
        other = _pinned_request(
            client, _parse(f"https://other.test:{port}/hook"), LOOPBACK, content=b"b", headers={}
        )
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            client.send(other)

        # Without the pinned name, the certificate is checked against the IP and fails too.
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            client.post(f"https://127.0.0.1:{port}/hook", content=b"c")

    assert tls_receiver.received == [Received("/hook", f"receiver.test:{port}", b"a")]
    assert tls_receiver.server_names[:2] == ["receiver.test", "other.test"]
