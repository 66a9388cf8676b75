"""Fresh, throw-away stores for a benchmark: a SQLite file in a temporary directory, or a PostgreSQL schema."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    return (
        os.environ.get("TRIALAUDIT_BENCH_POSTGRES_URL")
        or os.environ.get("TRIALAUDIT_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES_URL
    )


@contextmanager
def workdir(prefix: str = "trialaudit-bench-", keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def sqlite_url(directory: Path, name: str) -> str:
    return f"sqlite:///{directory / name}.db"


@contextmanager
def postgres_schema(base_url: str, tag: str, keep: bool = False) -> Iterator[str]:
    """A fresh schema ``bench_<tag>_<random>`` named in the URL (``?schema=``); dropped afterwards."""
    import psycopg
    from psycopg.sql import SQL, Identifier

    from infrastructure.store import postgres_conninfo, prepare_postgres

    schema = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in base_url else "?"
    url = f"{base_url}{sep}schema={schema}"
    prepare_postgres(url)
    try:
        yield url
    finally:
        if not keep:
            with psycopg.connect(postgres_conninfo(base_url), autocommit=True) as conn:
                conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))


@contextmanager
def store_url(kind: str, directory: Path, tag: str, *, postgres_url: str | None = None, keep: bool = False) -> Iterator[str]:
    """A fresh store of ``kind`` ("sqlite" or "postgres") for one part of a benchmark."""
    if kind == "sqlite":
        yield sqlite_url(directory, tag)
    elif kind == "postgres":
        with postgres_schema(postgres_url or postgres_base_url(), tag, keep=keep) as url:
            yield url
    else:
        raise ValueError(f"unknown store {kind!r}")
