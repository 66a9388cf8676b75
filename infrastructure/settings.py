"""Settings from the environment (prefix ``TRIALAUDIT_``), with safe defaults for one machine."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SITES = {"MINSK": "Europe/Minsk"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIALAUDIT_", extra="ignore")

    database_url: str = "sqlite:///./var/trialaudit.db"
    #: Where keys and the default SQLite store live.
    data_dir: Path = Path("./var")
    #: HMAC key for bearer tokens (hex or any text). Default: a random key in data_dir/token.key.
    secret_key: str | None = None
    #: A session (its bearer token) ends after this long without an authenticated request (R24) ...
    idle_timeout_seconds: int = Field(default=900, ge=30, le=86400)
    #: ... and at the latest this long after login, however active (the token's exp).
    session_max_seconds: int = Field(default=12 * 3600, ge=60, le=7 * 86400)
    #: PostgreSQL: a worker believes a session row it read for at most this long (0: read on every
    #: request); a logout or revocation made by another worker holds there within this time.
    session_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    #: Failed logins from one client address, or for one username, per window before 429 (13.D12).
    login_throttle_failures: int = Field(default=10, ge=1, le=10_000)
    login_throttle_window_seconds: int = Field(default=900, ge=1, le=86400)
    #: Secret seed of the allocation sequence. Default: a random seed in data_dir/allocation.seed.
    allocation_seed: str | None = None
    #: Site code -> IANA time zone. Site-bound users and participants belong to one of these.
    sites: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SITES))
    max_failed_logins: int = Field(default=5, ge=1, le=100)
    #: argon2id parameters; the defaults are OWASP's recommendation (19 MiB, t=2, p=1).
    argon2_memory_kib: int = 19456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    #: Worker threads per API process for blocking work (commands, queries).
    threads: int = Field(default=8, ge=1, le=200)
    #: PostgreSQL connection pool size per process.
    postgres_pool_size: int = 8
    #: "inline": each API process keeps the read models up to date itself (SQLite: always).
    #: "external": API processes only wait for `trialaudit projections run` (PostgreSQL).
    projections: str = Field(default="inline", pattern="^(inline|external)$")
    #: Ed25519 private key that signs tree heads (32 bytes, hex or base64). Default: data_dir/signing.key.
    signing_key: str | None = None
    #: A head is signed in the storing transaction once the last one is older than this (0: every transaction).
    head_interval_seconds: float = Field(default=10.0, ge=0)
    #: Safety reporting deadlines (docs/domain.md §3.6; national law governs, so each is configurable).
    sae_report_hours: float = Field(default=24, gt=0)
    aesi_report_hours: float = Field(default=24, gt=0)
    susar_fatal_report_days: float = Field(default=7, gt=0)
    susar_other_report_days: float = Field(default=15, gt=0)
    #: Site hours in each site's local time, for the outside-hours audit review report (R18).
    audit_site_hours: str = Field(default="07:00-20:00", pattern=r"^\d\d:\d\d-\d\d:\d\d$")
    #: A first entry recorded more than this many days after its clinical date is late (R18).
    audit_late_entry_days: int = Field(default=7, ge=0, le=3650)
    #: `trialaudit serve` loads the synthetic trial (published passwords) into a store with no clinical data and
    #: no demo yet. Off unless asked: `make run` sets it (TRIALAUDIT_DEMO=0 make run skips it), as `serve --demo`.
    demo: bool = False
    #: Largest request body accepted, in bytes (413 beyond it, checked before the body is read).
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 30)
    #: Background export jobs one user may have running at once (429 beyond it).
    export_jobs_per_user: int = Field(default=3, ge=1, le=100)
    #: Finished export files (and their status) are removed this many hours after they finish.
    export_retention_hours: float = Field(default=24, gt=0)

    @field_validator("sites", mode="before")
    @classmethod
    def _parse_sites(cls, value):
        if isinstance(value, str):
            value = json.loads(value)
        return value

    @field_validator("sites")
    @classmethod
    def _check_zones(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one site is needed")
        for site, zone in value.items():
            ZoneInfo(zone)  # raises for an unknown zone
            if site == "*":
                raise ValueError("'*' means all sites and cannot name a site")
        return value

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))
