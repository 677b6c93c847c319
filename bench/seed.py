"""Time `clove seed` on a fresh database, then remove it.

    .venv/bin/python bench/seed.py --leads 1000000 \\
        --postgres postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/seed.py --leads 100000            # a temporary SQLite file

PostgreSQL: creates a scratch database next to the one named by the URL, runs `clove init` and
`clove seed` in it, prints the timing, size and peak memory, and drops it. The load average at
start and end is printed too: on a shared machine other processes take CPU from the run.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from clove.db import normalize_url

CLOVE = [sys.executable, "-m", "clove"]


def run(args: list[str], url: str) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [*CLOVE, *args, "--database-url", url],
        capture_output=True,
        text=True,
        env={**os.environ, "CLOVE_DATABASE_URL": url},
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"clove {args[0]} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip(), seconds


class ServerCpu(threading.Thread):
    """CPU seconds of the PostgreSQL backends serving `clove seed` (application_name), sampled
    from /proc while they live: what the load cost the server, however busy the machine is."""

    def __init__(self, admin: Engine) -> None:
        super().__init__(daemon=True)
        self.admin, self.seconds, self.stop = admin, {}, threading.Event()

    def run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        with self.admin.connect() as conn:
            while not self.stop.wait(0.5):
                pids = conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE application_name = 'clove seed'")
                ).scalars()
                for pid in pids:
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self.seconds[pid] = (int(fields[11]) + int(fields[12])) / tick


def measure(url: str, leads: int, extra: list[str], admin: Engine | None = None) -> None:
    run(["init", "--org", "Bench", "--email", "bench@example.com"], url)
    server = ServerCpu(admin) if admin is not None else None
    if server is not None:
        server.start()
    print(f"load average before: {os.getloadavg()}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary, seconds = run(["seed", "--leads", str(leads), *extra], url)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"load average after:  {os.getloadavg()}")
    print(summary)
    client = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(
        f"clove seed: {seconds:.1f} s wall (process start included), client CPU {client:.1f} s,"
        f" peak RSS {after.ru_maxrss / 1024:.0f} MB"
    )
    if server is not None:
        server.stop.set()
        server.join()
        per = ", ".join(f"{s:.1f}" for s in server.seconds.values())
        print(f"server CPU {sum(server.seconds.values()):.1f} s ({per} per connection)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--postgres", help="URL of an existing database on the server to use")
    parser.add_argument("seed_args", nargs="*", help="more arguments for clove seed (after --)")
    args = parser.parse_args()

    if not args.postgres:
        with tempfile.TemporaryDirectory(prefix="clove-seed-") as tmp:
            path = Path(tmp) / "seed.db"
            measure(f"sqlite:///{path}", args.leads, args.seed_args)
            print(f"database file: {path.stat().st_size / 1e6:.0f} MB")
        return

    base = make_url(normalize_url(args.postgres))
    name = f"clove_seed_bench_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = base.set(database=name).render_as_string(hide_password=False)
        measure(url, args.leads, args.seed_args, admin)
        with admin.connect() as conn:
            size = conn.execute(text(f"SELECT pg_database_size('{name}')")).scalar_one()
        print(f"database size: {size / 1e6:.0f} MB")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
