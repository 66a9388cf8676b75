"""The database itself refuses UPDATE and DELETE on the event tables (R10), on both stores."""

import sqlite3

import pytest

from infrastructure.store import parse_database_url, postgres_conninfo


def _events_table(url: str) -> str:
    return "stored_events" if url.startswith("sqlite") else "trialaudit_events"


def test_update_and_delete_of_events_are_refused_by_the_database_R10(services, add_user, store_url):
    add_user("someone", "investigator")
    table = _events_table(store_url)
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(parse_database_url(store_url)["path"])
        for sql in (f"UPDATE {table} SET topic = 'x'", f"DELETE FROM {table}"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(sql)
        count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        conn.close()
    else:
        import psycopg

        schema = parse_database_url(store_url)["schema"]
        with psycopg.connect(postgres_conninfo(store_url), autocommit=True) as conn:
            for sql in (f"UPDATE {schema}.{table} SET topic = 'x'", f"DELETE FROM {schema}.{table}", f"TRUNCATE {schema}.{table}"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                    conn.execute(sql)
            count = conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
    assert count == 1
    assert services.app.user_by_name("someone").full_name == "Someone Person"
