"""The API edge, as plain ASGI: path normalisation, auth, rate limits, method override.

It runs before routing so that every request under /api/v1/ is authenticated and
counted in one place, cheaply (no FastAPI dependency resolution on the hot path).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clove.auth.service import AuthContext, Authenticator, parse_authorization
from clove.errors import APIError, BadRequest, RateLimited, Unauthorized, UnsupportedMediaType
from clove.kit.dates import parse_tz_offset
from clove.kit.http import error_response
from clove.kit.ids import new_id
from clove.ratelimit import Budget, Limiter, MemoryLimiter, endpoint_group, group_hash

API_PREFIX = "/api/v1/"
SLASHED_PREFIXES = ("/api/v1", "/oauth2")
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MAX_BODY = 10 * 1024 * 1024


class ApiEdge:
    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        limiter: Limiter | None,
        per_key_limit: int,
        org_multiplier: int,
        public_paths: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.limiter = limiter
        self.per_key_limit = per_key_limit
        self.org_multiplier = org_multiplier
        self.public_paths = public_paths  # served as they are: no slash, no credentials
        # Redis is network I/O: keep it off the event loop. Memory counters are instant.
        self._limiter_blocks = limiter is not None and not isinstance(limiter, MemoryLimiter)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in self.public_paths:
            await self.app(scope, receive, send)
            return
        if path.startswith(SLASHED_PREFIXES) and not path.endswith("/"):
            # Close's paths end in a slash; some clients omit it on item paths.
            scope = {**scope, "path": path + "/", "raw_path": (path + "/").encode()}
            path = scope["path"]
        if not path.startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            scope, receive, rate_header = await self._admit(scope, receive)
        except APIError as exc:
            await error_response(exc)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and rate_header:
                message["headers"] = [*message.get("headers", []), (b"ratelimit", rate_header)]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _admit(self, scope: Scope, receive: Receive) -> tuple[Scope, Receive, bytes]:
        headers = _headers(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = new_id("req")
        try:
            state["tz_offset"] = parse_tz_offset(headers.get("x-tz-offset"))
        except ValueError:
            raise BadRequest(
                "Invalid X-TZ-Offset header: send hours from UTC as a number, e.g. -4 or 5.5"
            ) from None

        credential = parse_authorization(headers.get("authorization"))
        if credential is None:
            raise Unauthorized()
        hit, ctx = self.authenticator.cached(credential)
        if not hit:
            ctx = await anyio.to_thread.run_sync(self.authenticator.authenticate, credential)
        if ctx is None:
            raise Unauthorized()
        state["auth"] = ctx

        # Only a POST may stand for another method; it is counted as that method (GET: a read).
        override = headers.get("x-http-method-override") if scope["method"] == "POST" else None
        method = override.upper() if override else scope["method"]
        rate_header = await self._charge(ctx, method, scope["path"])

        try:
            if override:
                scope, receive = await _apply_method_override(scope, receive, method)
            elif scope["method"] in BODY_METHODS and _has_body(headers):
                content_type = headers.get("content-type", "").split(";")[0].strip().lower()
                if not content_type:
                    # Close's API speaks only JSON; a body sent without a type is read as JSON.
                    scope = {
                        **scope,
                        "headers": [*scope["headers"], (b"content-type", b"application/json")],
                    }
                elif content_type != "application/json":
                    raise UnsupportedMediaType()
            if _has_nul(scope):
                # PostgreSQL cannot compare text with NUL: refuse it on every database alike.
                raise BadRequest("Null characters are not allowed in the URL.")
        except APIError as exc:
            if rate_header:
                exc.headers.setdefault("RateLimit", rate_header.decode())
            raise
        return scope, receive, rate_header

    async def _charge(self, ctx: AuthContext, method: str, path: str) -> bytes:
        if self.limiter is None:
            return b""
        group = endpoint_group(method, path)
        budgets = [
            Budget(
                f"key:{ctx.api_key_id or ctx.oauth_client_id}:{ctx.user_id}:{group}",
                self.per_key_limit,
                "key",
            ),
            Budget(
                f"org:{ctx.organization_id}:{group}",
                self.per_key_limit * self.org_multiplier,
                "organization",
            ),
        ]
        if self._limiter_blocks:
            verdict = await anyio.to_thread.run_sync(self.limiter.charge, budgets)
        else:
            verdict = self.limiter.charge(budgets)
        header = verdict.header()
        if not verdict.allowed:
            raise RateLimited(
                limit=verdict.limit,
                window=self.limiter.window,
                reset=verdict.reset,
                limit_type=verdict.limit_type,
                group=group_hash(group),
                headers={
                    "RateLimit": header,
                    "Retry-After": str(max(1, round(verdict.reset + 0.5))),
                },
            )
        return header.encode()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def _has_nul(scope: Scope) -> bool:
    """A NUL in the path or the query (percent-encoded or not)."""
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope["path"] or b"\x00" in query or b"%00" in query


def _has_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in headers


async def _read_body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise BadRequest("Request body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _apply_method_override(
    scope: Scope, receive: Receive, method: str
) -> tuple[Scope, Receive]:
    """`POST` + `X-HTTP-Method-Override: GET` + `{"_params": {...}}` becomes a GET with a query."""
    if method != "GET":
        raise BadRequest("X-HTTP-Method-Override supports only GET")
    body = await _read_body(receive)
    try:
        payload: Any = json.loads(body or b"{}")
    except ValueError:
        raise BadRequest("Malformed JSON in request body") from None
    params = payload.get("_params", {}) if isinstance(payload, dict) else None
    if not isinstance(params, dict):
        raise BadRequest("_params must be an object of query parameters")
    pairs = []
    for name, value in params.items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif value is None:
            value = ""
        pairs.append((str(name), str(value)))
    try:
        encoded = urlencode(pairs)
    except UnicodeEncodeError:  # lone surrogates are valid JSON but not text
        raise BadRequest("_params must hold valid Unicode text") from None
    query = scope.get("query_string", b"").decode()
    merged = "&".join(q for q in (query, encoded) if q)
    new_scope = {**scope, "method": "GET", "query_string": merged.encode()}
    new_scope["headers"] = [
        (k, v) for k, v in scope["headers"] if k not in (b"content-length", b"content-type")
    ]

    async def empty_receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    return new_scope, empty_receive
