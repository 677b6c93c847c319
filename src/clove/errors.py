"""One error hierarchy that renders Close's error bodies (close-api.md §2.8)."""

from __future__ import annotations

from typing import Any

UNAUTHORIZED_MESSAGE = (
    "The server could not verify that you are authorized to access the URL requested.  "
    "You either supplied the wrong credentials (e.g. a bad password), or your browser "
    "doesn't understand how to supply the credentials required."
)


class APIError(Exception):
    """An expected failure; rendered as `{"error": message}` with `status_code`."""

    status_code = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.message}


class BadRequest(APIError):
    status_code = 400


class ValidationFailed(APIError):
    """Bad input: 400 with `errors` (general) and `field-errors` (per field)."""

    status_code = 400

    def __init__(
        self, errors: list[str] | None = None, field_errors: dict[str, str] | None = None
    ) -> None:
        self.errors = errors or []
        self.field_errors = field_errors or {}
        first = (
            self.errors[0]
            if self.errors
            else "; ".join(f"{k}: {v}" for k, v in self.field_errors.items())
        )
        super().__init__(first or "Invalid request")

    def body(self) -> dict[str, Any]:
        return {"errors": self.errors, "field-errors": self.field_errors}


def field_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(field_errors={field: message})


class Unauthorized(APIError):
    status_code = 401

    def __init__(self, message: str = UNAUTHORIZED_MESSAGE) -> None:
        super().__init__(message)


class Forbidden(APIError):
    status_code = 403


class NotFound(APIError):
    status_code = 404

    def __init__(self, message: str = "Not found") -> None:
        super().__init__(message)


def object_not_found(model_name: str) -> NotFound:
    """Close's wording for an unknown or foreign id."""
    return NotFound(f"Empty query: {model_name} matching query does not exist.")


class MethodNotAllowed(APIError):
    status_code = 405

    def __init__(self, message: str = "Method not allowed") -> None:
        super().__init__(message)


class UnsupportedMediaType(APIError):
    status_code = 415

    def __init__(self, message: str = "Unsupported media type: send application/json") -> None:
        super().__init__(message)


class RateLimited(APIError):
    """429 with the rate fields both at the top level and under `error` (clients read either)."""

    status_code = 429

    def __init__(
        self,
        *,
        limit: int,
        window: float,
        reset: float,
        limit_type: str,
        group: str,
        headers: dict[str, str],
    ) -> None:
        super().__init__("API call count exceeded for this period", headers=headers)
        self.fields = {
            "message": self.message,
            "rate_reset": round(reset, 3),
            "rate_limit": limit,
            "rate_window": window,
            "rate_limit_type": limit_type,
            "rate_endpoint_group": group,
        }

    def body(self) -> dict[str, Any]:
        return {**self.fields, "error": dict(self.fields)}
