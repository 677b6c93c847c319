"""How much slower is Clove's GET /api/v1/me/ than a bare Starlette app sending the same bytes?

Starts Clove (`clove serve --no-worker`, one uvicorn process) on a fresh database and a bare
Starlette app (this file, `--serve-bare`) with the same uvicorn settings, loads both with the
same keep-alive client on loopback, and prints requests/s, their ratio, latency, server CPU
time per request, and how long a revoked API key keeps working under load.

    .venv/bin/python bench/api_overhead.py [--seconds 10] [--connections 32] [--rounds 3]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [--client auto|wrk|python]

With a PostgreSQL URL, a fresh database is created next to the one named and dropped at the
end. See bench/README.md for what is measured and the figures on the reference machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ME_PATH = "/api/v1/me/"
HOST = "127.0.0.1"
RATIO_GOAL = 0.4
REVOKE_GOAL_S = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Clove's default is 40 requests per second per key. Keep the limiter on (its cost is part of
# every request) but far out of reach, so that every request of the benchmark is served.
RATE_LIMIT_ENV = {"CLOVE_RATE_LIMIT_PER_KEY": "1000000000"}
Tick = Callable[[float], None]  # progress callback: fraction of the run done


# --------------------------------------------------------------------------- the bare app

_BARE_BODY = [b"{}"]  # replaced by Clove's /me/ body before serving


async def _bare_me(_request: Request) -> Response:
    return Response(_BARE_BODY[0], media_type="application/json")


bare_app = Starlette(routes=[Route(ME_PATH, _bare_me)])


def uvicorn_options() -> dict[str, Any]:
    """The options `clove serve` passes to uvicorn.run (loop and http stay "auto": uvloop and
    httptools when installed)."""
    return {"workers": 1, "access_log": False, "log_level": "warning", "proxy_headers": False}


def serve_bare(port: int, body_file: str) -> None:
    import uvicorn

    _BARE_BODY[0] = Path(body_file).read_bytes()
    uvicorn.run(bare_app, host=HOST, port=port, **uvicorn_options())


# --------------------------------------------------------------------------- python load client


class _WorkerState:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.request = (
            f"GET {spec['path']} HTTP/1.1\r\nHost: {HOST}:{spec['port']}\r\n"
            f"Authorization: {spec['auth']}\r\n\r\n"
        ).encode()
        self.port: int = spec["port"]
        self.deadline = time.perf_counter() + spec["seconds"]
        self.statuses: Counter[int] = Counter()
        self.latencies: list[int] = []  # microseconds
        self.errors = 0
        self.open = 0
        self.transports: set[asyncio.BaseTransport] = set()
        self.done: asyncio.Future[None] | None = None


class _Conn(asyncio.Protocol):
    """One keep-alive connection: one request in flight, the next sent on the full response."""

    def __init__(self, state: _WorkerState) -> None:
        self.state = state
        self.buf = b""
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.transports.add(transport)
        self.state.open += 1
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.waiting = True
        self.sent = time.perf_counter()
        self.transport.write(self.state.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        state = self.state
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:  # both servers always send Content-Length; anything else is an error
                state.errors += 1
                self._close()
                return
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop > 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                break
            now = time.perf_counter()
            state.statuses[int(buf[9:12])] += 1
            state.latencies.append(int((now - self.sent) * 1_000_000))
            buf = buf[total:]
            self.waiting = False
            if now >= state.deadline:
                self._close()
                return
            self._send()
        self.buf = buf

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.open -= 1
        if self.transport is not None:
            state.transports.discard(self.transport)
        if time.perf_counter() < state.deadline:  # closed early: reconnect
            if self.waiting:
                state.errors += 1  # dropped mid-request
            asyncio.get_running_loop().create_task(_connect(state))
        elif state.open == 0 and state.done is not None and not state.done.done():
            state.done.set_result(None)


async def _connect(state: _WorkerState) -> None:
    loop = asyncio.get_running_loop()
    while time.perf_counter() < state.deadline:
        try:
            await loop.create_connection(lambda: _Conn(state), HOST, state.port)
            return
        except OSError:
            state.errors += 1
            await asyncio.sleep(0.05)
    if state.open == 0 and state.done is not None and not state.done.done():
        state.done.set_result(None)


async def _load_main(spec: dict[str, Any]) -> dict[str, Any]:
    state = _WorkerState(spec)
    loop = asyncio.get_running_loop()
    state.done = loop.create_future()
    cpu0 = time.process_time()
    await asyncio.gather(*(_connect(state) for _ in range(spec["connections"])))
    try:  # every connection stops at the deadline; a stuck one is cut 2 s later
        await asyncio.wait_for(state.done, max(0.0, state.deadline - time.perf_counter()) + 2)
    except TimeoutError:
        for transport in list(state.transports):
            transport.abort()
    return {
        "statuses": {str(k): v for k, v in state.statuses.items()},
        "latencies": state.latencies,
        "errors": state.errors,
        "cpu": time.process_time() - cpu0,
    }


def load_worker(spec_json: str) -> None:
    """One client process (`--load-worker SPEC`): writes its counts as JSON to spec["out"]."""
    spec = json.loads(spec_json)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    result = asyncio.run(_load_main(spec))
    Path(spec["out"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------- load runners


@dataclass
class LoadResult:
    ok: int  # 200 responses
    non_200: dict[str, int]  # status (or "non-2xx/3xx" for wrk) -> count
    errors: int  # socket errors, timeouts, dropped connections
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    client_cpu_s: float = 0.0


class Processes:
    """Every child process the benchmark starts, so that all can be stopped on any exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []
        self.lock = threading.Lock()

    def start(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        # Own session: Ctrl-C reaches only this script, which then stops the children itself.
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        with self.lock:
            self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        with self.lock:
            if proc in self.procs:
                self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def _wait(proc: subprocess.Popen[Any], seconds: float, tick: Tick | None) -> None:
    """Wait for a load process that should end after `seconds`; kill it if it overstays."""
    start = time.monotonic()
    hard_stop = start + seconds + 15
    while proc.poll() is None:
        now = time.monotonic()
        if now > hard_stop:
            proc.kill()
            proc.wait(5)
            raise RuntimeError(f"load process {proc.args[0]} overran its time and was killed")
        if tick:
            tick(min(1.0, (now - start) / seconds))
        time.sleep(0.1)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class WrkClient:
    name = "wrk"

    def __init__(self, path: str, threads: int, processes: Processes) -> None:
        self.path, self.threads, self.processes = path, threads, processes

    def describe(self) -> str:
        return f"wrk ({self.threads} thread{'s' if self.threads > 1 else ''})"

    def run(
        self, port: int, auth: str, connections: int, seconds: float, tick: Tick | None = None
    ) -> LoadResult:
        secs = max(1, round(seconds))
        cmd = [
            self.path,
            *("-t", str(min(self.threads, connections)), "-c", str(connections)),
            *("-d", f"{secs}s", "--latency", "--timeout", "5s"),
            *("-H", f"Authorization: {auth}", f"http://{HOST}:{port}{ME_PATH}"),
        ]
        cpu0 = _children_cpu()
        proc = self.processes.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait(proc, secs, tick)
            out, errs = proc.communicate()
        finally:
            self.processes.stop(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {errs.strip() or out.strip()}")
        result = parse_wrk(out)
        result.client_cpu_s = _children_cpu() - cpu0
        return result


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(out: str) -> LoadResult:
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", out)
    if not done:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    total, seconds = int(done.group(1)), float(done.group(2)) * _UNITS[done.group(3)] / 1e3
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non_2xx = int(bad.group(1)) if bad else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(g) for g in sock.groups()) if sock else 0

    def pct(p: str) -> float | None:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else None

    # wrk counts non-2xx/3xx apart; neither server ever answers 2xx/3xx other than 200 here.
    return LoadResult(
        ok=total - non_2xx,
        non_200={"non-2xx/3xx": non_2xx} if non_2xx else {},
        errors=errors,
        seconds=seconds,
        p50_ms=pct("50"),
        p99_ms=pct("99"),
    )


class PythonClient:
    name = "python"

    def __init__(self, procs: int, processes: Processes) -> None:
        self.procs, self.processes = procs, processes

    def describe(self) -> str:
        return f"built-in asyncio client ({self.procs} process{'es' if self.procs > 1 else ''})"

    def run(
        self, port: int, auth: str, connections: int, seconds: float, tick: Tick | None = None
    ) -> LoadResult:
        procs = max(1, min(self.procs, connections))
        shares = [
            connections // procs + (1 if i < connections % procs else 0) for i in range(procs)
        ]
        cpu0 = _children_cpu()
        started = time.monotonic()
        workers = []
        outputs = []
        this = str(Path(__file__).resolve())
        with tempfile.TemporaryDirectory(prefix="clove-bench-load-") as tmp:
            try:
                for i, share in enumerate(shares):
                    spec = {"port": port, "path": ME_PATH, "auth": auth, "seconds": seconds}
                    spec.update(connections=share, out=f"{tmp}/{i}.json")
                    cmd = [sys.executable, this, "--load-worker", json.dumps(spec)]
                    workers.append(self.processes.start(cmd))
                for i, proc in enumerate(workers):
                    _wait(proc, seconds + 2 - (time.monotonic() - started), tick)
                    if proc.returncode != 0:
                        raise RuntimeError(f"load worker failed with exit code {proc.returncode}")
                    outputs.append(json.loads(Path(f"{tmp}/{i}.json").read_text()))
            finally:
                for proc in workers:
                    self.processes.stop(proc)
        statuses: Counter[str] = Counter()
        latencies: list[int] = []
        for out in outputs:
            statuses.update(out["statuses"])
            latencies.extend(out["latencies"])
        latencies.sort()

        def pct(p: float) -> float | None:
            return (
                latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1e3
                if latencies
                else None
            )

        ok = statuses.pop("200", 0)
        return LoadResult(
            ok=ok,
            non_200=dict(statuses),
            errors=sum(o["errors"] for o in outputs),
            seconds=seconds,
            p50_ms=pct(0.50),
            p99_ms=pct(0.99),
            client_cpu_s=_children_cpu() - cpu0,
        )


# --------------------------------------------------------------------------- servers & database


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def basic_auth(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def http_request(
    port: int,
    method: str,
    path: str,
    auth: str | None = None,
    timeout: float = 5.0,
    payload: Any = None,
) -> tuple[int, bytes]:
    headers = {"Authorization": auth} if auth else {}
    body = None
    if payload is not None:
        body = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, all threads, from /proc (None where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float | None:
    """CPU seconds used on the whole machine so far, all CPUs (not idle, not iowait)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def clove_command() -> list[str]:
    script = Path(sys.executable).parent / "clove"
    return [str(script)] if script.exists() else [sys.executable, "-m", "clove"]


def run_clove(args: list[str], env: dict[str, str]) -> str:
    """Run a `clove` command that prints a secret alone on its last line; return it."""
    done = subprocess.run(
        [*clove_command(), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"clove {args[0]} failed:\n{done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1].strip()


def pg_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """A fresh database for one benchmark: a temporary SQLite file, or a new PostgreSQL
    database created beside the one in the given URL and dropped at the end."""

    def __init__(self, url: str | None, tmp: Path) -> None:
        self.admin_url: str | None = None
        self.name: str | None = None
        self.created_file: Path | None = None
        if url is None:
            self.url = f"sqlite:///{tmp / 'clove.db'}"
            self.label = "SQLite (temporary file)"
        elif url.startswith("sqlite"):
            self.url = url
            path = url.split(":///", 1)[-1]
            self.label = f"SQLite {path}"
            if path and path != ":memory:" and not Path(path).exists():
                self.created_file = Path(path)  # ours: removed at the end
        elif url.startswith(("postgres://", "postgresql")):
            from sqlalchemy.engine import make_url

            self.admin_url = pg_url(url)
            self.name = f"clove_bench_{secrets.token_hex(4)}"
            self.url = (
                make_url(self.admin_url)
                .set(database=self.name)
                .render_as_string(hide_password=False)
            )
            self.label = f"PostgreSQL {make_url(self.admin_url).host} (database {self.name})"
        else:
            raise SystemExit(f"Unsupported --database-url {url!r}: use sqlite:/// or postgresql://")

    def create(self) -> None:
        if self.admin_url and self.name:
            try:
                self._admin(f'CREATE DATABASE "{self.name}"')
            except Exception as exc:  # refused connection, bad credentials, no CREATEDB right
                self.name = None  # nothing to drop
                raise RuntimeError(f"cannot create the benchmark database: {exc}") from None

    def drop(self) -> None:
        if self.admin_url and self.name:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.name = None
        if self.created_file:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.created_file}{suffix}").unlink(missing_ok=True)

    def _admin(self, sql: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.admin_url or "", isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[Any]
    log: Path

    def wait_ready(self, auth: str | None, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                status, body = http_request(self.port, "GET", ME_PATH, auth, timeout=2)
                if status == 200:
                    return body
                last = f"HTTP {status}: {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s ({last}):\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --------------------------------------------------------------------------- measurement


@dataclass
class Measurement:
    round: int
    target: str
    load: LoadResult
    server_cpu_s: float | None
    rest_cpu_s: float | None  # the rest of the machine: kernel threads, other programs

    @property
    def rps(self) -> float:
        return self.load.ok / self.load.seconds if self.load.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.load.ok:
            return None
        return self.server_cpu_s * 1e6 / self.load.ok

    def as_dict(self) -> dict[str, Any]:
        out = {"round": self.round, "target": self.target, "rps": self.rps}
        out.update(server_cpu_s=self.server_cpu_s, cpu_us_per_request=self.cpu_us_per_request)
        out.update(rest_cpu_s=self.rest_cpu_s)
        out.update(asdict(self.load))
        return out


@dataclass
class Revocation:
    trial: int
    delete_status: int
    delete_ms: float
    revoked_after_ms: float | None  # from sending DELETE to the first 401 for the revoked key
    probe_200s_after_delete: int
    load: LoadResult | None = None


@dataclass
class Bench:
    args: argparse.Namespace
    client: WrkClient | PythonClient
    processes: Processes
    console: Any
    measurements: list[Measurement] = field(default_factory=list)

    def measure(self, rnd: int, server: Server, auth: str) -> Measurement:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        args = self.args
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"round {rnd}: {server.name} warm-up", total=1.0)
            if args.warmup > 0:
                self.client.run(
                    server.port,
                    auth,
                    args.connections,
                    args.warmup,
                    lambda f: progress.update(task, completed=f),
                )
            progress.update(task, description=f"round {rnd}: {server.name}", completed=0)
            cpu0 = proc_cpu_seconds(server.proc.pid)
            busy0 = machine_busy_seconds()
            load = self.client.run(
                server.port,
                auth,
                args.connections,
                args.seconds,
                lambda f: progress.update(task, completed=f),
            )
            cpu1 = proc_cpu_seconds(server.proc.pid)
            busy1 = machine_busy_seconds()
        cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
        rest = None
        if cpu is not None and busy0 is not None and busy1 is not None:
            rest = max(0.0, busy1 - busy0 - cpu - load.client_cpu_s)
        m = Measurement(rnd, server.name, load, cpu, rest)
        self.measurements.append(m)
        note = f"  {server.name:5} {m.rps:9.0f} req/s"
        if load.non_200 or load.errors:
            note += f"  [red]non-200 {load.non_200} errors {load.errors}[/red]"
        if not load.ok:
            note += f"  [red]no 200 at all in {load.seconds:g} s: the server is stalled[/red]"
        self.console.print(note)
        return m

    def revocations(self, clove: Server, key: str, other_key: str) -> list[Revocation]:
        """Trial 1 revokes the `clove init` key, later trials a key made for them."""
        status, listing = http_request(clove.port, "GET", "/api/v1/api_key/", basic_auth(other_key))
        keys = json.loads(listing)["data"] if status == 200 else []
        key_id = next((k["id"] for k in keys if k["key_prefix"] == key[:8]), None)
        if key_id is None:
            raise RuntimeError(f"cannot find the id of the benchmark key (HTTP {status})")
        trials = []
        for trial in range(1, self.args.revocation_trials + 1):
            if trial > 1:
                status, made = http_request(
                    clove.port,
                    "POST",
                    "/api/v1/api_key/",
                    basic_auth(other_key),
                    payload={"name": f"revocation trial {trial}"},
                )
                if status != 200:
                    raise RuntimeError(f"cannot create a key for the revocation trial: {made!r}")
                key, key_id = json.loads(made)["key"], json.loads(made)["id"]
            trials.append(self.revocation(clove, trial, key, key_id, other_key))
            done = trials[-1]
            self.console.print(
                f"  revocation trial {trial}: 401 after {_fmt(done.revoked_after_ms, ',.0f')} ms "
                f"(DELETE {done.delete_ms:,.0f} ms, HTTP {done.delete_status or 'no answer'}, "
                f"{done.probe_200s_after_delete} 200s after it)"
            )
        return trials

    def revocation(
        self, clove: Server, trial: int, key: str, key_id: str, other_key: str
    ) -> Revocation:
        """Revoke `key` (with `other_key`) while `key` loads Clove; time until `key` gets 401."""
        holder: dict[str, Any] = {}
        seconds = 4.0

        def background() -> None:
            try:
                holder["load"] = self.client.run(
                    clove.port, basic_auth(key), self.args.connections, seconds
                )
            except Exception as exc:
                holder["error"] = exc

        thread = threading.Thread(target=background, daemon=True)
        with self.console.status(f"revocation trial {trial}: revoking a key under load"):
            thread.start()
            time.sleep(1.5)  # the key is in use by every connection, its auth cached
            t0 = time.perf_counter()
            try:
                status, _ = http_request(
                    clove.port, "DELETE", f"/api/v1/api_key/{key_id}/", basic_auth(other_key)
                )
            except OSError:
                status = 0  # no answer within the timeout
            t1 = time.perf_counter()
            revoked_at, probes = None, 0
            while status == 200 and time.perf_counter() - t0 < 5.0:  # bounded probe loop
                try:
                    code, _ = http_request(clove.port, "GET", ME_PATH, basic_auth(key))
                except OSError:
                    code = 0
                if code == 401:
                    revoked_at = time.perf_counter()
                    break
                probes += 1
                time.sleep(0.005)
            thread.join(seconds + 30)
        if "error" in holder:
            raise RuntimeError(f"load during the revocation check failed: {holder['error']}")
        return Revocation(
            trial=trial,
            delete_status=status,
            delete_ms=(t1 - t0) * 1e3,
            revoked_after_ms=(revoked_at - t0) * 1e3 if revoked_at else None,
            probe_200s_after_delete=probes,
            load=holder.get("load"),
        )


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(bench: Bench, revocations: list[Revocation], header: dict[str, str]) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    if not out.is_terminal:
        out = Console(width=120)  # files and pipes: keep the table on one line per row
    setup = Table(show_header=False, box=None, pad_edge=False)
    for k, v in header.items():
        setup.add_row(f"[dim]{k}[/dim]", v)
    out.print(setup)

    table = Table(title="GET /api/v1/me/ under load")
    for col in ("round", "server", "req/s (200)", "non-200", "errors", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right", no_wrap=True)
    for col in ("server CPU µs/req", "server CPU %", "client CPU %", "rest CPU %"):
        table.add_column(col, justify="right")
    for m in bench.measurements:
        util = m.server_cpu_s / m.load.seconds * 100 if m.server_cpu_s is not None else None
        table.add_row(
            str(m.round),
            m.target,
            f"{m.rps:,.0f}",
            str(sum(m.load.non_200.values())),
            str(m.load.errors),
            _fmt(m.load.p50_ms, ".2f"),
            _fmt(m.load.p99_ms, ".2f"),
            _fmt(m.cpu_us_per_request, ",.0f"),
            _fmt(util, ".0f"),
            f"{m.load.client_cpu_s / m.load.seconds * 100:.0f}",
            _fmt(m.rest_cpu_s / m.load.seconds * 100 if m.rest_cpu_s is not None else None, ".0f"),
        )
    table.caption = (
        "CPU %: 100 = one core. rest: everything else on the machine during the run: the "
        "database server (PostgreSQL), kernel threads, other programs (then the figures are "
        "disturbed)."
    )
    out.print(table)

    rounds = sorted({m.round for m in bench.measurements})
    by = {(m.round, m.target): m for m in bench.measurements}
    ratios = [by[r, "clove"].rps / by[r, "bare"].rps for r in rounds if by[r, "bare"].rps]
    clove_rps = _median([by[r, "clove"].rps for r in rounds]) or 0.0
    bare_rps = _median([by[r, "bare"].rps for r in rounds]) or 0.0
    ratio = _median(ratios) or 0.0
    cpu = {
        t: _median([c for r in rounds if (c := by[r, t].cpu_us_per_request) is not None])
        for t in ("clove", "bare")
    }
    latency = {
        (t, p): _median([v for r in rounds if (v := getattr(by[r, t].load, p)) is not None])
        for t in ("clove", "bare")
        for p in ("p50_ms", "p99_ms")
    }
    label = f"median of {len(rounds)} rounds" if len(rounds) > 1 else "1 round"
    summary = Table(title=f"Summary ({label})", show_header=False)
    summary.add_column(justify="left")
    summary.add_column(justify="right")
    summary.add_row("Clove GET /me/ req/s", f"{clove_rps:,.0f}")
    summary.add_row("bare Starlette req/s", f"{bare_rps:,.0f}")
    met = ratio >= RATIO_GOAL
    verdict = "[green]met[/green]" if met else "[red]not met[/red]"
    summary.add_row(f"ratio Clove / bare (goal ≥ {RATIO_GOAL})", f"{ratio:.3f}  {verdict}")
    for t, name in (("clove", "Clove"), ("bare", "bare")):
        p50, p99 = latency[t, "p50_ms"], latency[t, "p99_ms"]
        summary.add_row(f"latency p50 / p99, {name}", f"{_fmt(p50, '.2f')} / {_fmt(p99, '.2f')} ms")
    for t, name in (("clove", "Clove"), ("bare", "bare")):
        summary.add_row(f"server CPU per request, {name}", f"{_fmt(cpu[t], ',.0f')} µs")
    result: dict[str, Any] = {
        "setup": header,
        "clove_rps": clove_rps,
        "bare_rps": bare_rps,
        "ratio": ratio,
        "ratio_goal": RATIO_GOAL,
        "cpu_us_per_request": cpu,
        "latency_ms": {f"{t}_{p.removesuffix('_ms')}": v for (t, p), v in latency.items()},
        "measurements": [m.as_dict() for m in bench.measurements],
    }
    if revocations:
        took = [r.revoked_after_ms for r in revocations]
        worst = None if None in took else max(t for t in took if t is not None)
        ok = worst is not None and worst < REVOKE_GOAL_S * 1e3
        verdict = "[green]met[/green]" if ok else "[red]not met[/red]"
        summary.add_row(
            f"revoked key refused after, worst of {len(took)} (goal < {REVOKE_GOAL_S:g} s)",
            f"{_fmt(worst, ',.0f')} ms  {verdict}",
        )
        summary.add_row("  each trial, ms", ", ".join(_fmt(t, ",.0f") for t in took) or "-")
        summary.add_row(
            "  DELETE /api_key/ under load took, ms",
            ", ".join(f"{r.delete_ms:,.0f}" for r in revocations),
        )
        summary.add_row(
            "  200s for the revoked key after its DELETE returned",
            ", ".join(str(r.probe_200s_after_delete) for r in revocations),
        )
        result["revocation"] = [asdict(r) for r in revocations]
    out.print(summary)
    return result


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Compare Clove's GET /api/v1/me/ with a bare Starlette app on loopback.",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each run")
    p.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    p.add_argument("--rounds", type=int, default=1, help="repeat; medians are reported")
    p.add_argument(
        "--database-url",
        help="default: a temporary SQLite file. postgresql://...: a fresh database is created "
        "on that server and dropped at the end",
    )
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument(
        "--client-procs", type=int, default=1, help="processes of the python client (default 1)"
    )
    p.add_argument(
        "--revocation-trials",
        type=int,
        default=3,
        help="times to revoke a key under load and time its refusal (0: skip)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--body-file", help=argparse.SUPPRESS)
    p.add_argument("--load-worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 600 or args.warmup < 0 or args.warmup > 60:
        p.error("--seconds must be in (0, 600] and --warmup in [0, 60]")
    if args.connections < 1 or not 1 <= args.rounds <= 20 or not 0 <= args.revocation_trials <= 20:
        p.error("--connections must be ≥ 1, --rounds in [1, 20], --revocation-trials in [0, 20]")
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_bare is not None:
        serve_bare(args.serve_bare, args.body_file)
        return 0
    if args.load_worker is not None:
        load_worker(args.load_worker)
        return 0

    from rich.console import Console

    console = Console(stderr=True)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    processes = Processes()
    wrk = shutil.which("wrk")
    if args.client == "wrk" and not wrk:
        console.print("[red]wrk is not on PATH[/red] (apt-get install wrk), or use --client python")
        return 2
    client: WrkClient | PythonClient = (
        WrkClient(wrk, args.wrk_threads, processes)
        if wrk and args.client in ("auto", "wrk")
        else PythonClient(args.client_procs, processes)
    )
    tmp = Path(tempfile.mkdtemp(prefix="clove-bench-"))
    db: Database | None = None
    try:
        db = Database(args.database_url, tmp)
        console.print(f"Preparing {db.label} …")
        db.create()
        env = {**os.environ, **RATE_LIMIT_ENV, "CLOVE_DATABASE_URL": db.url}
        email = f"bench-{secrets.token_hex(4)}@example.com"
        key = run_clove(["init", "--org", "Bench", "--email", email, "--database-url", db.url], env)
        other_key = run_clove(
            ["apikey", "create", "--email", email, "--name", "revoker", "--database-url", db.url],
            env,
        )

        def start(name: str, port: int, cmd: list[str]) -> Server:
            log = tmp / f"{name}.log"
            with log.open("wb") as fh:
                proc = processes.start(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
            return Server(name, port, proc, log)

        port = free_port()
        serve = ["serve", "--port", str(port), "--database-url", db.url, "--no-worker"]
        clove = start("clove", port, [*clove_command(), *serve])
        body = clove.wait_ready(basic_auth(key))
        body_file = tmp / "me.json"
        body_file.write_bytes(body)
        bare_port = free_port()
        this = str(Path(__file__).resolve())
        bare_cmd = [sys.executable, this, "--serve-bare", str(bare_port), "--body-file"]
        bare = start("bare", bare_port, [*bare_cmd, str(body_file)])
        if bare.wait_ready(None) != body:
            raise RuntimeError("the bare app does not return Clove's /me/ body")

        busy0, t0 = machine_busy_seconds(), time.monotonic()
        time.sleep(1.0)
        busy1 = machine_busy_seconds()
        background = None
        if busy0 is not None and busy1 is not None:
            background = (busy1 - busy0) / (time.monotonic() - t0) * 100
            if background > 25:
                console.print(
                    f"[yellow]The machine is busy before the benchmark starts "
                    f"({background:.0f}% of a core): the figures will be lower and noisier."
                    "[/yellow]"
                )
        bench = Bench(args, client, processes, console)
        auth = basic_auth(key)
        for rnd in range(1, args.rounds + 1):
            order = (clove, bare) if rnd % 2 else (bare, clove)  # alternate to cancel drift
            for server in order:
                bench.measure(rnd, server, auth)

        revocations = []
        if args.revocation_trials > 0:
            revocations = bench.revocations(clove, key, other_key)

        header = setup_header(args, client, db, body, background)
        result = report(bench, revocations, header)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted; cleaning up.[/yellow]")
        return 130
    except (RuntimeError, OSError) as exc:
        console.print(f"[red]{type(exc).__name__}: {exc}[/red]")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        processes.stop_all()
        if db is not None:
            try:
                db.drop()
            except Exception as exc:
                console.print(f"[red]Could not drop the benchmark database:[/red] {exc}")
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def clove_version() -> str:
    """Where the served `clove` package comes from, with its git commit when in a checkout."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import clove, os; print(os.path.dirname(clove.__file__))"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        where = done.stdout.strip()
        git = ["git", "-C", where]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    if not commit:
        return where
    return f"{where} at {commit}" + (" with uncommitted changes" if dirty else "")


def setup_header(
    args: argparse.Namespace,
    client: WrkClient | PythonClient,
    db: Database,
    body: bytes,
    background: float | None,
) -> dict[str, str]:
    def have(module: str) -> str:
        try:
            __import__(module)
            return "yes"
        except ImportError:
            return "no"

    return {
        "clove": clove_version(),
        "database": db.label,
        "client": client.describe(),
        "load": f"{args.connections} keep-alive connections, {args.seconds:g} s per run "
        f"after {args.warmup:g} s warm-up, {args.rounds} round(s)",
        "servers": f"uvicorn, 1 process each, uvloop {have('uvloop')}, httptools "
        f"{have('httptools')}, access log off",
        "response": f"{len(body):,} bytes of JSON (Clove's /me/ for a one-member organization)",
        "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"busy before the start: {_fmt(background, '.0f')}% of a core",
    }


if __name__ == "__main__":
    sys.exit(main())
