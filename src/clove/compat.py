"""How much of Close's REST API Clove serves, measured against Close's own OpenAPI document.

    python -m clove.compat [--spec PATH] [--json]

Every operation (method + path) of the spec is looked up among the routes of the FastAPI app
under `/api/v1`. Paths match by shape: parameter names do not matter, so Close's
`/user/{id}/` is served by Clove's `/user/{user_id}/`. The spec is read at run time and never
shipped with Clove; by default it is looked for at `../shared/close-api/close-openapi.yml`,
relative to the current directory and then to the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from rich.console import Console

API_PREFIX = "/api/v1"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
SPEC_ENV = "CLOVE_CLOSE_SPEC"
SPEC_RELATIVE = Path("..") / "shared" / "close-api" / "close-openapi.yml"
REPO_ROOT = Path(__file__).resolve().parents[2]
TAG_PREFIX = "subpackage_"
UNTYPED = ("Empty response body", "Any type")
_PARAM = re.compile(r"\{[^}]*\}")


class SpecError(Exception):
    """The spec cannot be found or read; the message says why."""


@dataclass(frozen=True)
class Operation:
    """One operation of Close's spec; `path` is relative to the API root (`/user/{id}/`)."""

    method: str  # upper case
    path: str
    tag: str
    operation_id: str = ""
    summary: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, normalize_path(self.path))

    @property
    def group(self) -> str:
        return self.tag.removeprefix(TAG_PREFIX)


@dataclass(frozen=True)
class OperationStatus:
    operation: Operation
    implemented: bool
    typed_response: bool = False


@dataclass
class Coverage:
    operations: list[OperationStatus]
    extra_routes: list[tuple[str, str]] = field(default_factory=list)
    spec_path: str | None = None

    @property
    def total(self) -> int:
        return len(self.operations)

    @property
    def implemented(self) -> int:
        return sum(1 for s in self.operations if s.implemented)

    @property
    def percent(self) -> float:
        return round(100.0 * self.implemented / self.total, 1) if self.total else 0.0

    def implemented_operations(self) -> list[Operation]:
        return [s.operation for s in self.operations if s.implemented]

    def by_tag(self) -> dict[str, list[OperationStatus]]:
        """Operations grouped by spec tag, tags in order of first appearance."""
        groups: dict[str, list[OperationStatus]] = {}
        for status in self.operations:
            groups.setdefault(status.operation.tag, []).append(status)
        return groups

    def totals_line(self) -> str:
        return (
            f"Implemented: {self.implemented} / {self.total} operations of Close's API "
            f"({self.percent:.1f}%)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec_path,
            "total": self.total,
            "implemented": self.implemented,
            "percent": self.percent,
            "tags": [
                {
                    "tag": tag,
                    "total": len(statuses),
                    "implemented": sum(1 for s in statuses if s.implemented),
                }
                for tag, statuses in self.by_tag().items()
            ],
            "operations": [
                {
                    "tag": s.operation.tag,
                    "method": s.operation.method,
                    "path": s.operation.path,
                    "operation_id": s.operation.operation_id,
                    "summary": s.operation.summary,
                    "implemented": s.implemented,
                    "typed_response": s.typed_response,
                }
                for s in self.operations
            ],
            "extra_routes": [{"method": m, "path": p} for m, p in self.extra_routes],
        }


def normalize_path(path: str) -> str:
    """`/user/{user_id}/` and `/user/{id}/` both become `/user/{}/`."""
    return _PARAM.sub("{}", path)


# -- the spec ----------------------------------------------------------------------------------


def spec_candidates(cwd: Path | None = None) -> list[Path]:
    """Where the spec is looked for when no path is given, in order."""
    found: list[Path] = []
    env = os.environ.get(SPEC_ENV)
    if env:
        found.append(Path(env))
    found.append((cwd or Path.cwd()) / SPEC_RELATIVE)
    found.append(REPO_ROOT / SPEC_RELATIVE)
    return found


def find_spec(explicit: str | Path | None = None, cwd: Path | None = None) -> Path:
    candidates = [Path(explicit)] if explicit is not None else spec_candidates(cwd)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = "\n".join(f"  {c}" for c in candidates)
    raise SpecError(
        "Close's OpenAPI spec was not found. Looked at:\n"
        f"{tried}\n"
        f"Pass --spec PATH (or set {SPEC_ENV}) to the close-openapi.yml file."
    )


def load_spec(path: str | Path) -> dict[str, Any]:
    """The spec as a dict, from YAML or JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"Cannot read {path}: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            spec = json.loads(text)
        else:
            import yaml

            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            spec = yaml.load(text, Loader=loader)  # a safe loader
    except Exception as exc:  # YAML and JSON errors alike
        raise SpecError(f"{path} is not valid YAML/JSON: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("paths"), dict):
        raise SpecError(f"{path} is not an OpenAPI document (no `paths`).")
    return spec


def spec_operations(spec: dict[str, Any]) -> list[Operation]:
    """Every operation of the spec, in document order."""
    operations = []
    for path, item in spec["paths"].items():
        if not isinstance(item, dict):
            continue
        for method, op in item.items():
            if method not in HTTP_METHODS or not isinstance(op, dict):
                continue
            tags = op.get("tags") or ["untagged"]
            operations.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    tag=str(tags[0]),
                    operation_id=str(op.get("operationId", "")),
                    summary=str(op.get("summary", "")),
                )
            )
    return operations


def find_operation(spec: dict[str, Any], operation: Operation) -> dict[str, Any]:
    op: dict[str, Any] = spec["paths"][operation.path][operation.method.lower()]
    return op


def resolve(spec: dict[str, Any], schema: Any) -> Any:
    """Follow local `$ref`s (`#/components/...`) until a schema that is not a reference."""
    seen: set[str] = set()
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        if not ref.startswith("#/") or ref in seen:
            break
        seen.add(ref)
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        schema = target
    return schema


def success_response(spec: dict[str, Any], operation: Operation) -> tuple[int, Any]:
    """(status code, JSON schema or None) of the operation's documented success response."""
    responses = {str(c): r for c, r in find_operation(spec, operation).get("responses", {}).items()}
    for code in sorted(responses):
        if code.startswith("2") and code.isdigit():
            content = (responses[code] or {}).get("content") or {}
            media = content.get("application/json") or {}
            return int(code), media.get("schema")
    return 200, None


def is_typed(spec: dict[str, Any], schema: Any) -> bool:
    """False for the spec's placeholders ("Empty response body", "Any type") and no schema."""
    target = resolve(spec, schema)
    if not isinstance(target, dict) or not target:
        return False
    structural = ("properties", "items", "allOf", "anyOf", "oneOf", "additionalProperties", "enum")
    if any(target.get(k) for k in structural):
        return True
    if target.get("description") in UNTYPED:
        return False
    return target.get("type") not in (None, "object")


# -- the app -----------------------------------------------------------------------------------


def throwaway_app() -> FastAPI:
    """Clove's app on an unused in-memory SQLite database: enough to list its routes."""
    from clove.app import create_app
    from clove.config import Settings
    from clove.db import make_engine

    settings = Settings(database_url="sqlite://", rate_limit_enabled=False, redis_url=None)
    return create_app(settings, make_engine(settings.database_url))


def app_routes(app: FastAPI, prefix: str = API_PREFIX) -> set[tuple[str, str]]:
    """(METHOD, normalised path) of every route under `prefix`, the path taken without it."""
    return set(app_route_paths(app, prefix))


def app_route_paths(app: FastAPI, prefix: str = API_PREFIX) -> dict[tuple[str, str], str]:
    """(METHOD, normalised path) -> the route's own path (without `prefix`), for every route
    under `prefix`. The app's OpenAPI document route is left out: it is not an API operation.
    """
    routes: dict[tuple[str, str], str] = {}
    for path, methods in _flat_routes(app):
        if path == app.openapi_url or not path.startswith(prefix + "/"):
            continue
        for method in methods:
            if method.upper() == "HEAD" and "GET" in methods:
                continue  # Starlette's implicit HEAD next to a GET
            own = path[len(prefix) :]
            routes[(method.upper(), normalize_path(own))] = own
    return routes


def _flat_routes(app: FastAPI) -> list[tuple[str, set[str]]]:
    """(path, methods) of every HTTP route, looking inside included routers.

    Recent FastAPI versions keep included routers as nested objects in `app.routes`; their
    `iter_route_contexts` flattens them. Older versions copy every route into `app.routes`.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: the routes are already flat
        candidates: list[Any] = list(app.routes)
    else:
        candidates = list(iter_route_contexts(app.routes))
    flat = []
    for route in candidates:
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if isinstance(path, str) and methods:
            flat.append((path, {str(m) for m in methods}))
    return flat


def coverage(
    spec: dict[str, Any], app: FastAPI | None = None, spec_path: str | Path | None = None
) -> Coverage:
    """Which operations of `spec` the app serves; without `app`, a throwaway Clove app."""
    if app is None:
        app = throwaway_app()
        try:
            routes = app_route_paths(app)
        finally:
            app.state.engine.dispose()
    else:
        routes = app_route_paths(app)
    operations = spec_operations(spec)
    statuses = [
        OperationStatus(op, op.key in routes, is_typed(spec, success_response(spec, op)[1]))
        for op in operations
    ]
    known = {op.key for op in operations}
    extra = sorted(
        ((key[0], own) for key, own in routes.items() if key not in known),
        key=lambda r: (r[1], r[0]),
    )
    return Coverage(statuses, extra, str(spec_path) if spec_path is not None else None)


# -- the command -------------------------------------------------------------------------------


def render(result: Coverage, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Clove's coverage of Close's REST API", title_justify="left")
    table.add_column("Group (spec tag)", no_wrap=True)
    table.add_column("Method", no_wrap=True)
    table.add_column("Path", no_wrap=True)
    table.add_column("Clove", no_wrap=True)
    for index, (tag, statuses) in enumerate(result.by_tag().items()):
        if index:
            table.add_section()
        done = sum(1 for s in statuses if s.implemented)
        label = f"{tag.removeprefix(TAG_PREFIX)} {done}/{len(statuses)}"
        for row, status in enumerate(statuses):
            table.add_row(
                Text(label, style="bold" if done else "") if row == 0 else Text(""),
                Text(status.operation.method),
                Text(status.operation.path),
                Text("yes", style="green") if status.implemented else Text("no", style="dim"),
            )
    console.print(table)
    if result.extra_routes:
        console.print(
            "Clove routes outside Close's spec: "
            + ", ".join(f"{m} {p}" for m, p in result.extra_routes),
            markup=False,
            highlight=False,
        )
    console.print(result.totals_line(), markup=False, highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clove.compat",
        description="Show which operations of Close's REST API Clove implements.",
    )
    parser.add_argument(
        "--spec",
        metavar="PATH",
        help=(
            "Close's OpenAPI document (YAML or JSON); default "
            f"${SPEC_ENV}, then {SPEC_RELATIVE} from the current directory, "
            "then from the repository root"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    try:
        path = find_spec(args.spec)
        spec = load_spec(path)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = coverage(spec, spec_path=path)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0

    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 120)
    render(result, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
