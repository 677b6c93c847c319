"""Settings, read from the environment with the `CLOVE_` prefix."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLOVE_", extra="ignore")

    database_url: str = "sqlite:///./clove.db"
    redis_url: str | None = None
    # Public base URL used in links we hand out (OAuth redirects, html_url).
    public_url: str = "http://127.0.0.1:8000"

    # Rate limits: requests per window per API key; an organization gets 3x.
    rate_limit_per_key: int = Field(default=40, ge=1)
    rate_limit_window: float = Field(default=1.0, gt=0)
    rate_limit_org_multiplier: int = Field(default=3, ge=1)
    rate_limit_enabled: bool = True

    # How long an authenticated key or token may be trusted without asking the
    # database again. A revoked key stops working within this time.
    auth_cache_seconds: float = Field(default=0.5, ge=0, le=1.0)

    # Worker threads for request handlers. Few threads beat many on a GIL: measured +38% req/s
    # on SQLite and +22% on PostgreSQL going from 40 to 4 (bench/README.md).
    threads: int = Field(default=4, ge=1, le=256)

    # Key for credentials stored encrypted (SMTP passwords); see clove.kit.secrets.
    secret_key: str | None = None
    secret_key_file: str = "./clove.key"

    # The sequence engine: how often an idle worker looks for due steps, how long a claim is
    # held before another worker may take it over, and how many steps it claims at a time.
    # `clove serve` sets this unless --no-worker: the API process also runs one worker thread.
    embedded_worker: bool = False
    worker_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    worker_lease_seconds: float = Field(default=300, gt=0)
    worker_batch_size: int = Field(default=500, ge=1, le=5000)
    # Bulk actions: leads per chunk (one transaction each), and how long a worker keeps one
    # job before giving another organization's job a turn.
    bulk_chunk_size: int = Field(default=5000, ge=1, le=100_000)
    job_slice_seconds: float = Field(default=1.0, ge=0)

    # The system mailbox for Clove's own mail (bulk action done emails). Without a host that
    # mail is logged instead of sent.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_from: str = "clove@localhost"

    # Webhooks: requests in flight per worker (and at most `webhook_per_subscription` of them to
    # one subscription, so a slow receiver holds only its own), seconds to connect and to wait
    # for each read, events fanned out per transaction, and the pending backlog at which a
    # subscription is paused (Close: 100,000). Private, loopback and link-local targets are
    # refused unless allowed (for local development and tests).
    webhooks_allow_private_targets: bool = False
    webhook_concurrency: int = Field(default=16, ge=1, le=256)
    webhook_per_subscription: int = Field(default=4, ge=1, le=256)
    webhook_connect_timeout: float = Field(default=5.0, gt=0)
    webhook_read_timeout: float = Field(default=10.0, gt=0)
    webhook_fanout_batch: int = Field(default=1000, ge=1, le=50_000)
    webhook_max_backlog: int = Field(default=100_000, ge=1)

    oauth_access_token_seconds: int = 3600
    log_level: str = "info"
    log_json: bool = False


@lru_cache
def get_settings() -> Settings:
    return Settings()
