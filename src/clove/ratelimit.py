"""Fixed-window rate limits per API key and per organization, in process or in Redis."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Budget:
    """One counter to charge: `bucket` names it, `limit` is its ceiling per window."""

    bucket: str
    limit: int
    limit_type: str  # "key" or "organization"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: float  # seconds until the window of the tightest budget ends
    limit_type: str

    def header(self) -> str:
        # Integers only: the official client's parser accepts nothing else.
        return f"limit={self.limit}, remaining={self.remaining}, reset={math.ceil(self.reset)}"


class Limiter(Protocol):
    window: float

    def charge(self, budgets: list[Budget]) -> Verdict: ...


def endpoint_group(method: str, path: str) -> str:
    """Reads and writes of one resource are separate groups (`GET /lead/` vs `POST /lead/`)."""
    kind = "read" if method in ("GET", "HEAD", "OPTIONS") else "write"
    parts = [p for p in path.split("/") if p][2:3]  # first segment after /api/v1/
    return f"{kind}:{parts[0] if parts else ''}"


def group_hash(group: str) -> str:
    return hashlib.sha1(group.encode()).hexdigest()


def _verdict(counts: list[int], budgets: list[Budget], reset: float) -> Verdict:
    """Describe the budget closest to being exhausted, as Close's header does."""
    tightest = min(range(len(budgets)), key=lambda i: budgets[i].limit - counts[i])
    budget, count = budgets[tightest], counts[tightest]
    exceeded = [i for i in range(len(budgets)) if counts[i] > budgets[i].limit]
    if exceeded:
        budget, count = budgets[exceeded[0]], counts[exceeded[0]]
    return Verdict(
        allowed=not exceeded,
        limit=budget.limit,
        remaining=max(budget.limit - count, 0),
        reset=reset,
        limit_type=budget.limit_type,
    )


class MemoryLimiter:
    """Counters in this process: right for a single `clove serve`."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._window_index = -1
        self._counts: dict[str, int] = {}

    def charge(self, budgets: list[Budget]) -> Verdict:
        now = time.time()
        index = int(now // self.window)
        with self._lock:
            if index != self._window_index:
                self._window_index, self._counts = index, {}
            counts = []
            for b in budgets:
                self._counts[b.bucket] = self._counts.get(b.bucket, 0) + 1
                counts.append(self._counts[b.bucket])
        return _verdict(counts, budgets, (index + 1) * self.window - now)


class RedisLimiter:
    """Counters shared by every process through Redis; fails open if Redis is down."""

    def __init__(self, url: str, window: float, prefix: str = "clove:rl:") -> None:
        import redis

        self.window = window
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self._warned_at = 0.0

    def charge(self, budgets: list[Budget]) -> Verdict:
        now = time.time()
        index = int(now // self.window)
        reset = (index + 1) * self.window - now
        ttl_ms = max(int(self.window * 2000), 1000)
        try:
            pipe = self._client.pipeline(transaction=False)
            for b in budgets:
                key = f"{self.prefix}{b.bucket}:{index}"
                pipe.incr(key)
                pipe.pexpire(key, ttl_ms)
            results = pipe.execute()
        except Exception as exc:  # any Redis failure: serve the request rather than fail it
            if now - self._warned_at > 30:
                self._warned_at = now
                log.warning("rate_limit.redis_unavailable", error=str(exc))
            return Verdict(True, budgets[0].limit, budgets[0].limit, reset, budgets[0].limit_type)
        return _verdict([int(r) for r in results[::2]], budgets, reset)
