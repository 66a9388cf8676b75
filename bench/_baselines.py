"""Baselines measured in the same run as a product figure, on the same kind of store:

* raw eventsourcing: a plain ``Application`` (library defaults: no aggregate cache) with a simple aggregate
  and the library's own recorder, on the product's store settings (SQLite WAL + synchronous=FULL via the
  product's ``DurableSQLiteFactory``; PostgreSQL with synchronous_commit as the server has it, on by default),
  doing get + one event + save per command, one transaction per command, events shaped like the product's
  ``FieldCorrected`` (audit stamp, changes, old and new value);
* raw SQL: one ``INSERT`` of a row of the same size per transaction (sqlite3 with WAL and
  synchronous=FULL, or psycopg).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench._stats import Timing, timed_threads
from infrastructure.store import eventsourcing_env, parse_database_url, postgres_conninfo

PLAIN_RECORDER = {"sqlite": "eventsourcing.sqlite:SQLiteApplicationRecorder",
                  "postgres": "eventsourcing.postgres:PostgresApplicationRecorder"}

AUDIT = {
    "actor": {
        "user_id": "0b6e7c1e-3a5b-5d6f-9a1b-2c3d4e5f6a7b",
        "username": "bench-investigator",
        "full_name": "Bench Investigator",
        "role": "investigator",
        "site": "MINSK",
    },
    "reason": "benchmark correction from source",
    "reason_code": None,
    "source": "api",
    "query_id": None,
}


class RawParticipant(Aggregate):
    """Plain eventsourcing: what the product's Participant records for a birth_year correction."""

    def __init__(self, screening_number: str, site: str, sex: str, birth_year: int, audit: dict[str, Any]):
        self.screening_number = screening_number
        self.site = site
        self.sex = sex
        self.birth_year = birth_year
        self.audit = audit

    @event("FieldCorrected")
    def correct(self, field: str, old_value: Any, new_value: Any, audit: dict[str, Any], changes: list[dict[str, Any]]):
        setattr(self, field, new_value)


class RawApplication(Application):
    name = "rawbench"


def _kind(url: str) -> str:
    return parse_database_url(url)["kind"]


def raw_app(url: str, pool_size: int = 16) -> RawApplication:
    env = eventsourcing_env(url, create_table=True, pool_size=pool_size, recorder_topic=PLAIN_RECORDER[_kind(url)])
    return RawApplication(env)


def create_raw_participants(app: RawApplication, n: int, batch: int = 256) -> list[UUID]:
    ids: list[UUID] = []
    for start in range(0, n, batch):
        aggs = [
            RawParticipant(f"R-{start + i:06d}", "MINSK", "F", 1970, AUDIT) for i in range(min(batch, n - start))
        ]
        app.save(*aggs)
        ids.extend(a.id for a in aggs)
    return ids


def raw_eventsourcing_commands(url: str, *, threads: int, duration: float, aggregates: int = 4096) -> Timing:
    """get + one event + save per command on ``aggregates`` fresh aggregates split between ``threads``."""
    app = raw_app(url, pool_size=max(8, threads))
    try:
        ids = create_raw_participants(app, aggregates)
        per = len(ids) // threads

        def make_worker(t: int):
            mine = ids[t * per : (t + 1) * per]

            def op(i: int) -> None:
                agg = app.repository.get(mine[i % per])
                old = agg.birth_year
                new = 1971 if old == 1970 else 1970
                agg.correct(
                    field="birth_year", old_value=old, new_value=new, audit=AUDIT,
                    changes=[{"field": "birth_year", "old_value": old, "new_value": new}],
                )
                app.save(agg)

            return op

        return timed_threads(make_worker, threads, duration)
    finally:
        app.close()


def stored_state_bytes(url: str, table_topic_like: str = "%FieldCorrected%") -> int:
    """The mean size of the stored state of the raw correction events (to size the raw SQL rows)."""
    if _kind(url) == "sqlite":
        with sqlite3.connect(parse_database_url(url)["path"]) as conn:
            (n,) = conn.execute("SELECT avg(length(state)) FROM stored_events WHERE topic LIKE ?", (table_topic_like,)).fetchone()
    else:
        import psycopg
        from psycopg.sql import SQL, Identifier

        schema = parse_database_url(url)["schema"]
        with psycopg.connect(postgres_conninfo(url)) as conn:
            (n,) = conn.execute(
                SQL("SELECT avg(length(state)) FROM {}.{} WHERE topic LIKE %s").format(
                    Identifier(schema), Identifier(f"{RawApplication.name.lower()}_events")  # the library's naming
                ),
                (table_topic_like,),
            ).fetchone()
    return int(n or 400)


def raw_sql_inserts(url: str, *, duration: float, row_bytes: int, threads: int = 1) -> Timing:
    """One INSERT of a ``row_bytes`` row per transaction, in a table shaped like the event table."""
    payload = os.urandom(row_bytes)
    topic = "bench._baselines:RawParticipant.FieldCorrected"
    if _kind(url) == "sqlite":
        path = parse_database_url(url)["path"]
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS raw_rows (id INTEGER PRIMARY KEY, originator_id TEXT NOT NULL, "
                "originator_version INTEGER NOT NULL, topic TEXT, state BLOB, UNIQUE (originator_id, originator_version))"
            )
        opened: list[sqlite3.Connection] = []

        def make_worker(t: int):
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA synchronous=FULL")
            oid = uuid4().hex

            def op(i: int) -> None:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO raw_rows (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
                    (oid, i + 1, topic, payload),
                )
                conn.execute("COMMIT")

            opened.append(conn)
            return op

        try:
            return timed_threads(make_worker, threads, duration)
        finally:
            for c in opened:
                c.close()

    import psycopg
    from psycopg.sql import SQL, Identifier

    schema = parse_database_url(url)["schema"]
    table = SQL("{}.raw_rows").format(Identifier(schema))
    with psycopg.connect(postgres_conninfo(url), autocommit=True) as conn:
        conn.execute(
            SQL("CREATE TABLE IF NOT EXISTS {} (id BIGSERIAL PRIMARY KEY, originator_id UUID NOT NULL, "
                "originator_version INTEGER NOT NULL, topic TEXT, state BYTEA, UNIQUE (originator_id, originator_version))").format(table)
        )
    conns: list[Any] = []
    insert = SQL("INSERT INTO {} (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s) RETURNING id").format(table)

    def make_worker(t: int):
        conn = psycopg.connect(postgres_conninfo(url))
        conns.append(conn)
        oid = uuid4()

        def op(i: int) -> None:
            with conn.transaction():
                conn.execute(insert, (oid, i + 1, topic, payload)).fetchone()

        return op

    try:
        return timed_threads(make_worker, threads, duration)
    finally:
        for c in conns:
            c.close()


def postgres_settings(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(postgres_conninfo(url)) as conn:
        return {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in ("server_version", "fsync", "synchronous_commit")}
