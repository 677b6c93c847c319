"""create_app(): routers, error handlers and the API edge middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from clove.activity.endpoints import router as activity_router
from clove.api_key.endpoints import router as api_key_router
from clove.auth.service import Authenticator
from clove.bulk_action.endpoints import router as bulk_action_router
from clove.config import Settings, get_settings
from clove.connected_account.endpoints import router as connected_account_router
from clove.contact.endpoints import router as contact_router
from clove.custom_field.endpoints import router as custom_field_router
from clove.db import make_engine, make_session_factory, writing_session_factory
from clove.email_template.endpoints import router as email_template_router
from clove.errors import APIError, MethodNotAllowed, NotFound, ValidationFailed
from clove.event.endpoints import router as event_router
from clove.kit.http import error_response
from clove.lead.endpoints import router as lead_router
from clove.lead_status.endpoints import router as lead_status_router
from clove.membership.endpoints import router as membership_router
from clove.middleware import ApiEdge
from clove.organization.endpoints import router as organization_router
from clove.phone_number.endpoints import router as phone_number_router
from clove.ratelimit import Limiter, MemoryLimiter, RedisLimiter
from clove.role.endpoints import router as role_router
from clove.saved_search.endpoints import router as saved_search_router
from clove.search.endpoints import router as search_router
from clove.send_as.endpoints import router as send_as_router
from clove.sequence.endpoints import router as sequence_router
from clove.task.endpoints import router as task_router
from clove.unsubscribe.endpoints import router as unsubscribe_router
from clove.user.endpoints import router as user_router
from clove.webhook.endpoints import router as webhook_router

log = structlog.get_logger(__name__)

API_ROUTERS = [
    user_router,
    organization_router,
    membership_router,
    role_router,
    api_key_router,
    lead_status_router,
    custom_field_router,
    lead_router,
    contact_router,
    event_router,
    saved_search_router,
    search_router,
    email_template_router,
    unsubscribe_router,
    connected_account_router,
    send_as_router,
    phone_number_router,
    sequence_router,
    activity_router,
    task_router,
    bulk_action_router,
    webhook_router,
]


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine or make_engine(settings.database_url)
    session_factory = make_session_factory(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        if not settings.embedded_worker:
            yield
            return
        from clove.worker.runner import start_in_thread

        thread, stop = start_in_thread(writing_session_factory(engine), settings)
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)

    app = FastAPI(
        lifespan=lifespan,
        title="Clove",
        summary="A self-hosted server for the Close CRM REST API",
        version="0.1.0",
        redirect_slashes=False,  # the edge adds the trailing slash instead of redirecting
        openapi_url="/api/v1/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.writing_session_factory = writing_session_factory(engine)
    app.state.authenticator = Authenticator(session_factory, settings.auth_cache_seconds)

    for router in API_ROUTERS:
        app.include_router(router, prefix="/api/v1")
    from clove.oauth.endpoints import router as oauth_router

    app.include_router(oauth_router)

    _install_error_handlers(app)
    app.add_middleware(
        ApiEdge,
        authenticator=app.state.authenticator,
        limiter=make_limiter(settings),
        per_key_limit=settings.rate_limit_per_key,
        org_multiplier=settings.rate_limit_org_multiplier,
        public_paths=(app.openapi_url or "",),  # /docs fetches it without credentials
    )
    return app


def make_limiter(settings: Settings) -> Limiter | None:
    if not settings.rate_limit_enabled:
        return None
    if settings.redis_url:
        return RedisLimiter(settings.redis_url, settings.rate_limit_window)
    return MemoryLimiter(settings.rate_limit_window)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_request: Request, exc: APIError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        return error_response(validation_failure(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(NotFound())
        if exc.status_code == 405:
            return error_response(MethodNotAllowed())
        if exc.status_code == 400:  # FastAPI could not decode the body (e.g. not UTF-8)
            return error_response(ValidationFailed(["Malformed JSON in request body."]))
        return error_response(APIError(str(exc.detail)))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("request.failed", path=request.url.path, method=request.method)
        failure = APIError("Internal server error. The failure was logged; please report it.")
        failure.status_code = 500
        return error_response(failure)


MESSAGES = {
    "missing": "This field is required.",
    "extra_forbidden": "Unknown field.",
}


def validation_failure(errors: Any) -> ValidationFailed:
    """FastAPI's validation errors in Close's 400 shape."""
    general: list[str] = []
    fields: dict[str, str] = {}
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        kind = err.get("type", "")
        if kind == "json_invalid":
            general.append("Malformed JSON in request body.")
            continue
        if not loc and kind == "null":
            fields[err.get("ctx", {}).get("field", "")] = "This field may not be null."
            continue
        if loc and loc[0] in ("query", "path", "header"):
            loc = loc[1:]
        message = MESSAGES.get(kind) or str(err.get("msg", "Invalid value."))
        message = message.removeprefix("Value error, ")
        if not loc:
            if kind == "missing":
                message = "A JSON request body is required."
            elif kind in ("model_attributes_type", "dict_type", "model_type"):
                message = "The request body must be a JSON object."
            general.append(message)
        else:
            fields.setdefault(".".join(loc), message)
    return ValidationFailed(general, fields)
