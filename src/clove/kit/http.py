"""Request-edge helpers: the transaction-owning route class, responses, `_fields`, paging."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from clove.auth.service import AuthContext
from clove.errors import APIError, BadRequest
from clove.event.service import Actor

DEFAULT_LIMIT = 100
MAX_LIMIT = 100
MAX_SKIP = 100_000


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def error_response(exc: APIError) -> JSON:
    return JSON(exc.body(), status_code=exc.status_code, headers=exc.headers)


class TransactionRoute(APIRoute):
    """The route owns the transaction: commit after the handler, before the response goes out.

    Services only flush. A failed commit therefore becomes an error response, never a 2xx
    followed by a lost write; any exception rolls everything back. For plain `def` endpoints
    the commit and close run in the endpoint's own worker thread, so that a request never
    waits for a second thread while holding a database connection.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _finishing(endpoint)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            succeeded = False
            try:
                response = await handler(request)
                succeeded = True
                return response
            finally:
                session: Session | None = request.state._state.pop("db", None)
                if session is not None and not session.info.get("finished"):
                    # Only sessions that a sync endpoint did not finish (errors before it ran).
                    await run_in_threadpool(finish, session, succeeded)

        return route


def _finishing(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps a sync endpoint so that its sessions are committed (or rolled back) and closed in
    the same thread call. `functools.wraps` keeps the signature FastAPI reads dependencies from."""

    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        sessions = [v for v in kwargs.values() if isinstance(v, Session)]
        succeeded = False
        try:
            result = endpoint(*args, **kwargs)
            succeeded = True
            return result
        finally:
            for session in sessions:
                finish(session, succeeded)

    return run


def finish(session: Session, commit: bool) -> None:
    """Commits (or rolls back) and closes; after a commit, runs the `after_commit` callbacks."""
    session.info["finished"] = True
    try:
        if commit:
            session.commit()
            for callback in session.info.pop("after_commit", []):
                callback()
    finally:
        session.close()


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Runs `callback` once the request's transaction has committed (e.g. dropping caches:
    done earlier, a concurrent request could cache the old state again)."""
    session.info.setdefault("after_commit", []).append(callback)


# Both dependencies are `async` although they do no I/O: FastAPI would run a plain `def`
# dependency in the thread pool, a thread hop per dependency per request.
async def get_db(request: Request) -> Session:
    """The request's session; no connection is taken until the first query. TransactionRoute
    commits and closes it."""
    session: Session | None = request.state._state.get("db")
    if session is None:
        reads_only = request.method in ("GET", "HEAD", "OPTIONS")
        state = request.app.state
        session = state.session_factory() if reads_only else state.writing_session_factory()
        request.state.db = session
    return session


async def get_auth(request: Request) -> AuthContext:
    return request.state.auth  # set by the ApiEdge middleware for every /api/v1/ request


async def get_actor(request: Request) -> Actor:
    """The caller and this request's id, method and path, for the events a change records."""
    return Actor(
        request.state.auth,
        request.state._state.get("request_id"),
        request.method,
        request.url.path,
    )


def respond(body: Any, request: Request | None = None, status_code: int = 200) -> JSON:
    """A JSON response, narrowed by the request's `_fields` when present."""
    if request is not None:
        fields = parse_fields(request)
        if fields is not None:
            body = apply_fields(body, fields)
    return JSON(body, status_code=status_code)


def parse_fields(request: Request) -> list[str] | None:
    raw = request.query_params.get("_fields")
    if raw is None or not raw.strip():
        return None
    return [f.strip() for f in raw.split(",") if f.strip()]


def apply_fields(body: Any, fields: list[str]) -> Any:
    """Keep only `fields` of an object, or of each object under a list envelope's `data`
    (offset-paged `has_more` or cursor-paged `cursor_next`)."""
    envelope = isinstance(body, dict) and ("has_more" in body or "cursor_next" in body)
    if envelope and isinstance(body.get("data"), list):
        return {**body, "data": [pick_fields(item, fields) for item in body["data"]]}
    return pick_fields(body, fields)


def pick_fields(obj: Any, fields: list[str]) -> Any:
    """`custom` stands for every `custom.cf_*` key and `_all` for everything, as in Close."""
    if not isinstance(obj, dict) or "_all" in fields:
        return obj
    picked = {f: obj[f] for f in fields if f in obj}
    if "custom" in fields:
        picked.update((k, v) for k, v in obj.items() if k.startswith("custom."))
    return picked


def int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if value < low:
        raise BadRequest(f"{name} must be greater than or equal to {low}")
    if value > high:
        raise BadRequest(f"{name} must be less than or equal to {high}")
    return value


def page_params(
    request: Request, *, max_limit: int = MAX_LIMIT, max_skip: int = MAX_SKIP
) -> tuple[int, int]:
    """(`_skip`, `_limit`) with Close's 400 when either is out of range."""
    skip = int_param(request, "_skip", 0, low=0, high=max_skip)
    limit = int_param(request, "_limit", min(DEFAULT_LIMIT, max_limit), low=0, high=max_limit)
    return skip, limit


def page(items: Iterable[Any], limit: int, **extra: Any) -> dict[str, Any]:
    """`{"data": [...], "has_more": ...}` from up to `limit + 1` fetched items."""
    rows = list(items)
    return {"data": rows[:limit], "has_more": len(rows) > limit, **extra}


def id_list_param(request: Request, name: str) -> list[str] | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    return [v.strip() for v in raw.split(",") if v.strip()]
