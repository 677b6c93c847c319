"""Outbound webhook requests that cannot be aimed at Clove's own network.

A URL is checked when a subscription is created or changed (`check_url`) and again on every
delivery (`post`): the host is resolved once, every address must be public, and the request goes
to the checked address with the original Host header and TLS server name, so a DNS answer that
changes between the check and the connection (DNS rebinding) is never used. Redirects are never
followed. The operator turns all of this off with CLOVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_HINT = (
    "Clove sends webhooks only to public addresses; the server operator can allow private "
    "targets by setting CLOVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true"
)


class UnsafeTarget(Exception):
    """The URL's host is, or resolves to, an address Clove will not send to; str() says why and
    what the operator can do (CLOVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true)."""


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    host: str  # ASCII (IDNA) form, lower case, as it goes on the wire
    port: int
    address: IPAddress | None  # set when the host is an IP literal


def check_url(url: str, *, allow_private: bool) -> str | None:
    """At create/update: an error message when the URL is unsafe, else None.

    Unsafe: an IP literal that is not global, `localhost`/`*.localhost`, or a name that resolves
    (partly) to non-global addresses. A name that does not resolve (yet) is accepted: the
    connect-time check covers it. With allow_private=True only the scheme/host shape is checked.
    Resolving the name blocks for as long as the system resolver takes.
    """
    try:
        target = _parse(url)
        if allow_private:
            return None
        _refuse_by_name(target)
        if target.address is None:
            try:
                _resolve_checked(target)
            except socket.gaierror:
                return None
    except UnsafeTarget as exc:
        return str(exc)
    return None


def post(
    client: httpx.Client,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    allow_private: bool,
) -> httpx.Response:
    """POSTs `content` to `url` without following redirects.

    Unless allow_private, resolves the host, raises UnsafeTarget if any address is not global,
    and sends to the first address with the original Host header and, for https, the
    `sni_hostname` request extension so the TLS handshake and certificate check use the real
    name. A name that does not resolve raises httpx.ConnectError, like any unreachable host.
    """
    target = _parse(url)
    if allow_private:
        request = client.build_request("POST", target.url, content=content, headers=headers)
        return _send(client, request)
    _refuse_by_name(target)
    if target.address is not None:
        # An IP literal needs no lookup, so there is nothing to pin.
        request = client.build_request("POST", target.url, content=content, headers=headers)
        return _send(client, request)
    try:
        addresses = _resolve_checked(target)
    except socket.gaierror as exc:
        request = client.build_request("POST", target.url, content=content, headers=headers)
        raise httpx.ConnectError(
            f"Could not resolve {target.host}: {exc.strerror or exc}", request=request
        ) from exc
    request = _pinned_request(client, target, addresses[0], content=content, headers=headers)
    return _send(client, request)


def _send(client: httpx.Client, request: httpx.Request) -> httpx.Response:
    # Only the status matters: the body is never read, so a receiver cannot make us hold a
    # large answer in memory or wait while it trickles one out.
    response = client.send(request, follow_redirects=False, stream=True)
    response.close()
    return response


def _parse(url: str) -> _Target:
    """The URL's scheme, host and port, or UnsafeTarget saying what is wrong with its shape."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UnsafeTarget(f"Invalid webhook URL: {exc}") from exc
    if parsed.scheme not in SCHEMES:
        raise UnsafeTarget("Webhook URL must start with http:// or https://")
    try:
        host = parsed.raw_host.decode("ascii").lower()
    except UnicodeDecodeError as exc:  # httpx encodes names with IDNA, so this is defensive
        raise UnsafeTarget("Invalid webhook URL: the host name is not valid") from exc
    if not host:
        raise UnsafeTarget("Invalid webhook URL: it has no host")
    address = _ip_literal(host)
    if address is None and not _is_host_name(host):
        raise UnsafeTarget(f"Invalid webhook URL: {host!r} is not a valid host name")
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[parsed.scheme]
    if not 0 < port < 65536:
        raise UnsafeTarget(f"Invalid webhook URL: port {port} is out of range")
    return _Target(url=parsed, host=host, port=port, address=address)


def _ip_literal(host: str) -> IPAddress | None:
    # httpx keeps an IPv6 zone as "%25zone"; ipaddress wants "%zone".
    try:
        return ipaddress.ip_address(host.replace("%25", "%"))
    except ValueError:
        return None


def _is_host_name(host: str) -> bool:
    name = host.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def _refuse_by_name(target: _Target) -> None:
    """Raises UnsafeTarget for a non-global IP literal or a `localhost` name, before any lookup."""
    if target.address is not None:
        reason = _refusal_reason(target.address)
        if reason is not None:
            raise UnsafeTarget(f"Webhook URL refused: {target.host} is {reason}. {_HINT}.")
        return
    name = target.host.removesuffix(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise UnsafeTarget(f"Webhook URL refused: {name} is this machine. {_HINT}.")


def _resolve_checked(target: _Target) -> list[IPAddress]:
    """Every address the host name resolves to, in the resolver's order, or UnsafeTarget if any
    is not public. Raises socket.gaierror when the name does not resolve."""
    infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = _ip_literal(str(sockaddr[0]))
        if address is None:  # not an internet address (no such family is asked for)
            raise UnsafeTarget(f"Webhook URL refused: {target.host} did not resolve to an IP")
        reason = _refusal_reason(address)
        if reason is not None:
            raise UnsafeTarget(
                f"Webhook URL refused: {target.host} resolves to {address}, {reason}. {_HINT}."
            )
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, "no addresses")
    return addresses


def _refusal_reason(address: IPAddress) -> str | None:
    """Why Clove will not send to `address` (as "a ... address"), or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        # Addresses that carry an IPv4 address are judged by it: ::ffff:127.0.0.1 is loopback.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = _refusal_reason(embedded)
            return None if reason is None else f"{reason} ({embedded}) written as IPv6"
        if address.is_site_local:
            return "a site-local address"
    # The order matters only for the message: the most specific name first.
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _SHARED_ADDRESS_SPACE:
        return "a shared address space (100.64.0.0/10) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "a non-public address"
    return None


def _pinned_request(
    client: httpx.Client,
    target: _Target,
    address: IPAddress,
    *,
    content: bytes,
    headers: dict[str, str],
) -> httpx.Request:
    """A POST to `address` that the receiver sees as one to `target` (Host header, TLS name)."""
    url = target.url.copy_with(host=str(address))
    pinned_headers = httpx.Headers(headers)
    # What httpx would have sent for the original URL: the port only when it is not the default.
    pinned_headers["Host"] = target.url.netloc.decode("ascii").rpartition("@")[2]
    extensions: dict[str, str] = {}
    if target.url.scheme == "https":
        extensions["sni_hostname"] = target.host.removesuffix(".")
        # The connection pool keys connections by scheme, IP and port, not by TLS name: a kept
        # connection, verified for one name, would carry the next request for another name on
        # the same IP without checking that name's certificate. So no pinned TLS connection is
        # kept.
        pinned_headers["Connection"] = "close"
    return client.build_request(
        "POST", url, content=content, headers=pinned_headers, extensions=extensions
    )
