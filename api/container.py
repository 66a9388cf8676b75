"""The composition root: builds the application and its services from the settings."""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from application.integrity import IntegrityService
from application.projections import ProjectionEngine
from application.registry import all_projections
from application.sessions import SessionService
from application.trial import TrialApplication
from domain.safety import ReportingRules
from infrastructure import store
from infrastructure.account_store import SQLAccountStore
from infrastructure.export_jobs import ExportJobs
from infrastructure.passwords import Argon2Passwords
from infrastructure.merkle_store import SUBJECT_KEY_FILE, MerkleLog, attach_head_signer
from infrastructure.readmodels import open_read_models
from infrastructure.secrets import from_text, load_existing, load_or_create
from infrastructure.settings import Settings
from infrastructure.signing import load_signer, verify_signature
from infrastructure.tokens import TokenService


@dataclass
class Services:
    settings: Settings
    app: TrialApplication
    tokens: SessionService
    projections: ProjectionEngine
    integrity: IntegrityService | None = None
    exports: ExportJobs | None = None

    def close(self) -> None:
        self.projections.stop()
        self.projections.store.close()
        self.app.close()


def _key(path: Path, create: bool) -> bytes:
    """A key of the data directory: made when missing, unless this is a read-only build (`verify`), which
    writes nothing and stands in a key of this process alone for those it never uses (token, seed)."""
    if create:
        return load_or_create(path)
    existing = load_existing(path)
    return existing if existing is not None else secrets.token_bytes(32)


def _allocation_seed(settings: Settings, create: bool = True) -> bytes:
    if settings.allocation_seed:
        return from_text(settings.allocation_seed)
    return _key(settings.data_dir / "allocation.seed", create)


def _token_key(settings: Settings, create: bool = True) -> bytes:
    if settings.secret_key:
        return from_text(settings.secret_key)
    return _key(settings.data_dir / "token.key", create)


def setup_store(settings: Settings, progress: Callable[[int, int], None] | None = None) -> None:
    """Create the tables, triggers and keys once, before any worker starts (idempotent). ``progress``
    hears of the one-time rebuild of read models whose table layout changed, if there is one."""
    if settings.is_postgres:
        store.prepare_postgres(settings.database_url)
        with store.PostgresSetupLock(settings.database_url):
            _setup(settings, progress)
    else:
        _setup(settings, progress)


def _setup(settings: Settings, progress: Callable[[int, int], None] | None) -> None:
    services = build(settings, create_tables=True, follow=False)
    try:
        moved = services.app.upgrade_credentials()  # stores written when password hashes were in User events
        if moved:
            logging.getLogger("trialaudit").warning(
                "moved the password hashes of %d accounts out of the event log into the credential store; "
                "the events written before this upgrade still hold them in their stored bytes (leaves, "
                "bundles and exports made from them): have those users choose new passwords", moved)
        if services.integrity is not None:
            services.integrity.adopt_old_tail()  # a store written by older code: see IntegrityService
        services.projections.setup(progress)
    finally:
        services.close()


def reporting_rules(settings: Settings) -> ReportingRules:
    return ReportingRules(
        sae_to_sponsor=timedelta(hours=settings.sae_report_hours),
        aesi_to_sponsor=timedelta(hours=settings.aesi_report_hours),
        susar_fatal_or_life_threatening=timedelta(days=settings.susar_fatal_report_days),
        susar_other=timedelta(days=settings.susar_other_report_days),
    )


def build(settings: Settings | None = None, *, create_tables: bool = False, follow: bool = True,
          create_keys: bool = True) -> Services:
    """Wire the application. ``follow``: keep the read models up to date in this process. ``create_keys``
    False: write no key into the data directory (the caller checked that the keys it needs exist)."""
    settings = settings or Settings()
    env = store.eventsourcing_env(
        settings.database_url, create_table=create_tables, pool_size=settings.postgres_pool_size
    )
    passwords = Argon2Passwords(settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism)
    app = TrialApplication(
        env,
        passwords=passwords,
        allocation_seed=_allocation_seed(settings, create_keys),
        sites=settings.sites,
        max_failed_logins=settings.max_failed_logins,
        snapshot_key=_key(settings.data_dir / "snapshot.key", create_keys),  # seals snapshots (C.6)
    )
    app.accounts = accounts = SQLAccountStore(app.recorder, settings.session_cache_seconds)
    if create_tables:
        accounts.create_tables()
    app.login_throttle_failures = settings.login_throttle_failures
    app.login_throttle_window_seconds = float(settings.login_throttle_window_seconds)
    app.audit_site_hours = settings.audit_site_hours
    app.audit_late_entry_days = settings.audit_late_entry_days
    engine = ProjectionEngine(app, open_read_models(settings.database_url, settings.postgres_pool_size), all_projections(),
                              parallel=PARALLEL_REBUILD)
    engine.inline = settings.projections != "external"
    engine.spawn_helper = rebuild_helper_spawner(settings)
    app.read_models = engine
    app.reporting_rules = reporting_rules(settings)
    if follow and engine.inline:
        app.add_saved_listener(engine.notify)
        engine.start()
    return Services(
        settings=settings, app=app, projections=engine,
        tokens=SessionService(app, TokenService(_token_key(settings, create_keys), settings.session_max_seconds), accounts,
                              idle_timeout_seconds=settings.idle_timeout_seconds,
                              session_max_seconds=settings.session_max_seconds),
        integrity=_integrity(settings, app, create_keys),
        exports=ExportJobs(settings.data_dir / "exports", max_running_per_owner=settings.export_jobs_per_user,
                           retention=timedelta(hours=settings.export_retention_hours)),
    )


def _integrity(settings: Settings, app: TrialApplication, create_keys: bool = True) -> IntegrityService:
    signer = load_signer(settings.signing_key, settings.data_dir)
    attach_head_signer(app.recorder, signer, settings.head_interval_seconds,
                       subject_key=_key(settings.data_dir / SUBJECT_KEY_FILE, create_keys))
    return IntegrityService(MerkleLog(app.recorder), signer, verify_signature)


# ---------------------------------------------------------------------- rebuild helper process
#: rebuilt by a helper process while this one rebuilds the others: the audit index takes every event
#: and costs about as much as all the rest together, so the two halves take about as long
PARALLEL_REBUILD = ("audit_index",)


class _RebuildHelper:
    """A forked process rebuilding some read models (``ProjectionEngine.rebuild_part``)."""

    def __init__(self, process: Any, results: Any):
        self._process = process
        self._results = results

    def wait(self, timeout: float) -> bool:
        self._process.join(timeout)
        return not self._process.is_alive()

    def result(self) -> int:
        self._process.join()
        kind, value = self._results.recv() if self._results.poll() else ("error", f"exit code {self._process.exitcode}")
        self._results.close()
        if kind != "ok":
            raise RuntimeError(f"the rebuild helper process failed: {value}")
        return int(value)


def _run_rebuild_helper(settings: Settings, names: list[str], deferred: list[str], batch_size: int, results: Any) -> None:
    try:
        svc = build(settings, follow=False)
        try:
            results.send(("ok", svc.projections.rebuild_part(names, deferred, batch_size)))
        finally:
            svc.close()
    except BaseException as e:  # reported to the parent, which raises it
        results.send(("error", f"{type(e).__name__}: {e}"))


def rebuild_helper_spawner(settings: Settings) -> Callable[[list[str], list[str], int], _RebuildHelper] | None:
    """Where fork is available and there is a second core: start a helper with fresh connections of
    its own (the child never touches the parent's; it leaves by os._exit, as multiprocessing does)."""
    if "fork" not in multiprocessing.get_all_start_methods() or (os.cpu_count() or 1) < 2:
        return None
    context = multiprocessing.get_context("fork")

    def spawn(names: list[str], deferred: list[str], batch_size: int) -> _RebuildHelper:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_run_rebuild_helper, args=(settings, names, deferred, batch_size, send),
                                  name="rebuild-helper", daemon=True)
        process.start()
        send.close()
        return _RebuildHelper(process, receive)

    return spawn
