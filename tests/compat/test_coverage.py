"""`clove.compat`: Clove's coverage of Close's API, measured against Close's own spec."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from starlette.testclient import TestClient

from clove import compat
from tests.conftest import SPEC, Org

needs_spec = pytest.mark.skipif(
    not SPEC.is_file(),
    reason=f"Close's OpenAPI spec is not at {SPEC} (set CLOVE_CLOSE_SPEC to its path)",
)

# Operations that exist in Clove today; coverage may grow, never lose these.
KNOWN = [
    ("GET", "/me/"),
    ("GET", "/user/"),
    ("GET", "/user/{id}/"),
    ("GET", "/organization/{id}/"),
    ("PUT", "/organization/{id}/"),
    ("POST", "/membership/"),
    ("PUT", "/membership/"),
    ("PUT", "/membership/{id}/"),
    ("GET", "/membership/{id}/pinned_views/"),
    ("PUT", "/membership/{id}/pinned_views/"),
    ("GET", "/role/"),
    ("GET", "/role/{id}/"),
    ("GET", "/activity/"),
    ("GET", "/activity/email/"),
    ("POST", "/activity/email/"),
    ("GET", "/activity/email/{id}/"),
    ("PUT", "/activity/email/{id}/"),
    ("DELETE", "/activity/email/{id}/"),
    ("GET", "/task/"),
    ("POST", "/task/"),
    ("GET", "/task/{id}/"),
    ("PUT", "/task/{id}/"),
    ("DELETE", "/task/{id}/"),
    ("GET", "/bulk_action/sequence_subscription/"),
    ("POST", "/bulk_action/sequence_subscription/"),
    ("GET", "/bulk_action/sequence_subscription/{id}/"),
    ("GET", "/bulk_action/email/"),
    ("POST", "/bulk_action/email/"),
    ("GET", "/bulk_action/email/{id}/"),
    ("GET", "/bulk_action/edit/"),
    ("POST", "/bulk_action/edit/"),
    ("GET", "/bulk_action/edit/{id}/"),
    ("GET", "/bulk_action/delete/"),
    ("POST", "/bulk_action/delete/"),
    ("GET", "/bulk_action/delete/{id}/"),
    ("GET", "/webhook/"),
    ("POST", "/webhook/"),
    ("GET", "/webhook/{id}/"),
    ("PUT", "/webhook/{id}/"),
    ("DELETE", "/webhook/{id}/"),
]
TOTALS = re.compile(
    r"^Implemented: (\d+) / (\d+) operations of Close's API \((\d+\.\d)%\)$", re.MULTILINE
)
ROUTER_MISS = {"error": "Not found"}  # the router's own 404, unlike "Empty query: ..." 404s


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPEC.is_file():
        pytest.skip(f"Close's OpenAPI spec is not at {SPEC} (set CLOVE_CLOSE_SPEC to its path)")
    return compat.load_spec(SPEC)


@pytest.fixture(scope="module")
def result(spec: dict[str, Any], app: FastAPI) -> compat.Coverage:
    return compat.coverage(spec, app, spec_path=SPEC)


def test_normalize_path_ignores_parameter_names() -> None:
    assert compat.normalize_path("/user/{user_id}/") == compat.normalize_path("/user/{id}/")
    assert compat.normalize_path("/a/{x}/b/{y}/") == "/a/{}/b/{}/"
    assert compat.normalize_path("/user/{id}/") != compat.normalize_path("/user/{id}/x/")


@needs_spec
def test_totals_are_consistent(result: compat.Coverage) -> None:
    assert result.total == 286
    flags = [s.implemented for s in result.operations]
    assert result.implemented == flags.count(True)
    assert result.percent == round(100 * result.implemented / 286, 1)
    groups = result.by_tag()
    assert len(groups) == 62
    assert all(tag.startswith("subpackage_") for tag in groups)
    assert sum(len(ops) for ops in groups.values()) == 286
    keys = [s.operation.key for s in result.operations]
    assert len(set(keys)) == 286, "two spec operations collapsed into one key"
    # Clove-only routes are never counted as Close operations.
    assert not {(m, compat.normalize_path(p)) for m, p in result.extra_routes} & set(keys)


@needs_spec
def test_known_operations_are_implemented(result: compat.Coverage) -> None:
    implemented = {s.operation.key for s in result.operations if s.implemented}
    missing = [f"{m} {p}" for m, p in KNOWN if (m, compat.normalize_path(p)) not in implemented]
    assert not missing, f"not counted as implemented: {missing}"
    assert result.implemented >= len(KNOWN)


@needs_spec
def test_every_documented_clove_route_is_seen(app: FastAPI) -> None:
    """Route discovery agrees with the app's own OpenAPI document (no route goes unseen)."""
    documented = {
        (method.upper(), compat.normalize_path(path.removeprefix(compat.API_PREFIX)))
        for path, item in app.openapi()["paths"].items()
        if path.startswith(compat.API_PREFIX + "/")
        for method in item
        if method in compat.HTTP_METHODS
    }
    assert documented, "the app documents no /api/v1 route"
    assert documented <= compat.app_routes(app)


@needs_spec
def test_implemented_operations_are_reachable_and_the_rest_are_not(
    result: compat.Coverage, client: TestClient, org: Org
) -> None:
    """Over HTTP, through the API edge: an implemented operation reaches a handler (never the
    router's bare 404 or a 405); an unimplemented one is a 404 or a 405 (a 404 from a handler
    when a parameter route captures it, as `/user/{id}/` does `/user/availability/`)."""
    wrong = []
    for status in result.operations:
        op = status.operation
        path = compat.API_PREFIX + re.sub(r"\{[^}]*\}", "nonexistent", op.path)
        body: dict[str, Any] | None = (
            {} if op.method in ("POST", "PUT", "PATCH", "DELETE") else None
        )
        response = client.request(op.method, path, auth=org.auth, json=body)
        missed = response.status_code == 405 or (
            response.status_code == 404 and response.json() == ROUTER_MISS
        )
        unimplemented_answered = response.status_code not in (404, 405)
        if (status.implemented and missed) or (not status.implemented and unimplemented_answered):
            wrong.append(f"{op.method} {op.path}: {response.status_code} {response.text[:80]}")
    assert not wrong, "\n".join(wrong)


def test_routes_match_by_shape_not_by_parameter_name(spec: dict[str, Any]) -> None:
    router = APIRouter()

    @router.get("/user/{whatever}/")
    def one(whatever: str) -> dict[str, str]:
        return {}

    @router.post("/lead/")
    def two() -> dict[str, str]:
        return {}

    @router.get("/not_in_close/")
    def three() -> dict[str, str]:
        return {}

    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    app.include_router(router, prefix="/elsewhere")  # outside /api/v1: ignored
    result = compat.coverage(spec, app)
    implemented = {
        (s.operation.method, s.operation.path) for s in result.operations if s.implemented
    }
    assert implemented == {("GET", "/user/{id}/"), ("POST", "/lead/")}
    assert result.implemented == 2
    assert result.extra_routes == [("GET", "/not_in_close/")]


def test_typed_and_untyped_responses_are_told_apart(spec: dict[str, Any]) -> None:
    ops = {(op.method, op.path): op for op in compat.spec_operations(spec)}
    lead = compat.success_response(spec, ops[("GET", "/lead/{id}/")])
    me = compat.success_response(spec, ops[("GET", "/me/")])
    role = compat.success_response(spec, ops[("POST", "/role/")])
    assert lead[0] == 200 and compat.is_typed(spec, lead[1])
    assert me[0] == 200 and not compat.is_typed(spec, me[1])
    assert role[0] == 201
    assert not compat.is_typed(spec, {"description": "Any type"})
    assert not compat.is_typed(spec, None)


@needs_spec
def test_cli_prints_a_table_grouped_by_tag_and_the_totals_line(
    capsys: pytest.CaptureFixture[str], result: compat.Coverage
) -> None:
    assert compat.main(["--spec", str(SPEC)]) == 0
    out = capsys.readouterr().out
    match = TOTALS.search(out)
    assert match, out[-500:]
    assert int(match[1]) == result.implemented and int(match[2]) == 286
    assert match[3] == f"{result.percent:.1f}"
    assert re.search(r"users \d+/4", out)
    assert re.search(r"memberships 5/5", out)
    assert "/user/{id}/" in out and "/lead/merge/" in out


@needs_spec
def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert compat.main(["--spec", str(SPEC), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"] == 286 == len(doc["operations"])
    assert doc["implemented"] == sum(op["implemented"] for op in doc["operations"])
    assert sum(t["total"] for t in doc["tags"]) == 286
    me = next(op for op in doc["operations"] if (op["method"], op["path"]) == ("GET", "/me/"))
    assert me == {**me, "tag": "subpackage_users", "implemented": True, "typed_response": False}
    assert {"method": "GET", "path": "/api_key/"} in doc["extra_routes"]


def test_cli_missing_spec_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yml"
    assert compat.main(["--spec", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and str(missing) in err and "--spec" in err


def test_cli_invalid_spec_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("just: [a, list\n")
    assert compat.main(["--spec", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    bad.write_text("openapi: 3.1.0\n")
    assert compat.main(["--spec", str(bad)]) == 2
    assert "no `paths`" in capsys.readouterr().err


def test_default_spec_path_is_relative_to_the_current_directory_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(compat.SPEC_ENV, raising=False)
    work = tmp_path / "work"
    (work / "shared" / "close-api").mkdir(parents=True)
    (work / "checkout").mkdir()
    spec_file = work / "shared" / "close-api" / "close-openapi.yml"
    spec_file.write_text("openapi: 3.1.0\npaths: {}\n")
    monkeypatch.chdir(work / "checkout")
    assert compat.find_spec() == spec_file.resolve()
    candidates = compat.spec_candidates()
    assert candidates[0] == Path.cwd() / "../shared/close-api/close-openapi.yml"
    assert candidates[1] == compat.REPO_ROOT / "../shared/close-api/close-openapi.yml"
    spec_file.unlink()
    monkeypatch.setattr(compat, "REPO_ROOT", tmp_path / "no-repo")
    with pytest.raises(compat.SpecError, match="not found"):
        compat.find_spec()


@needs_spec
def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "CLOVE_CLOSE_SPEC": str(SPEC)}
    run = subprocess.run(
        [sys.executable, "-m", "clove.compat", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the default path does not resolve from here; the variable does
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["total"] == 286
    missing = subprocess.run(
        [sys.executable, "-m", "clove.compat", "--spec", str(tmp_path / "x.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "not found" in missing.stderr
