"""Shared fixtures: the application and the API on SQLite and on PostgreSQL.

PostgreSQL runs when TRIALAUDIT_TEST_POSTGRES_URL is set; under CI=true a missing or unreachable
PostgreSQL fails the run instead of skipping it. Each test gets its own PostgreSQL schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.cli import cli_actor
from api.container import Services, build, setup_store
from infrastructure.settings import Settings

PG_URL = os.environ.get("TRIALAUDIT_TEST_POSTGRES_URL", "")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PASSWORD = "correct horse battery staple"
SITES = {"MINSK": "Europe/Minsk", "GOMEL": "Europe/Minsk"}
# Fast argon2 for tests that log in many times; the production parameters are exercised in test_auth.
FAST_ARGON2 = {"argon2_memory_kib": 1024, "argon2_time_cost": 1, "argon2_parallelism": 1}


def _require_postgres() -> None:
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but TRIALAUDIT_TEST_POSTGRES_URL is not set: the PostgreSQL suite must run")
        pytest.skip("TRIALAUDIT_TEST_POSTGRES_URL is not set")
    import psycopg

    from infrastructure.store import postgres_conninfo

    try:
        psycopg.connect(postgres_conninfo(PG_URL), connect_timeout=5).close()
    except Exception as e:  # pragma: no cover - environment problem
        if IN_CI:
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable under CI: {e}")
        pytest.skip(f"PostgreSQL unreachable: {e}")


def pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}"


def drop_pg_schema(schema: str) -> None:
    import psycopg

    from infrastructure.store import postgres_conninfo

    with psycopg.connect(postgres_conninfo(PG_URL), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/trialaudit.db"
        return
    _require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield pg_schema_url(schema)
    drop_pg_schema(schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/trialaudit.db"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    _require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield pg_schema_url(schema)
    drop_pg_schema(schema)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def factory(url: str, **overrides) -> Settings:
        values = {
            "database_url": url,
            "data_dir": tmp_path / "keys",
            "sites": SITES,
            "demo": False,
            **FAST_ARGON2,
            **overrides,
        }
        return Settings(**values)

    return factory


@pytest.fixture
def services(store_url: str, make_settings) -> Iterator[Services]:
    settings = make_settings(store_url)
    setup_store(settings)
    svc = build(settings)
    yield svc
    svc.close()


@pytest.fixture
def app(services: Services):
    return services.app


@pytest.fixture
def add_user(services: Services) -> Callable[..., dict]:
    """Register a user through the application, as `trialaudit users add` does."""

    def factory(username: str, role: str, site: str = "MINSK", full_name: str | None = None) -> dict:
        return services.app.register_user(
            cli_actor(), username=username, full_name=full_name or f"{username.title()} Person", role=role,
            site=site, password=PASSWORD, source="cli",
        )

    return factory


@pytest.fixture
def actor_of(services: Services) -> Callable[[dict], object]:
    return lambda user: services.app.actor_for(user["id"])


@pytest.fixture
def client(services: Services):
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(services)) as c:
        yield c


@pytest.fixture
def login(client, add_user) -> Callable[..., dict[str, str]]:
    """Create a user and return the Authorization header of a fresh token."""

    def factory(username: str, role: str, site: str = "MINSK") -> dict[str, str]:
        add_user(username, role, site)
        r = client.post("/auth/token", data={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return factory


INCLUSION_ALL_TRUE = {"ssc_clinical_diagnosis": True, "can_follow_procedures": True, "written_informed_consent": True}
EXCLUSION_ALL_FALSE = {
    "malignancy_last_5_years": False,
    "decompensated_disease": False,
    "chronic_infection_hiv_hbv_hcv_tb": False,
    "pregnant_breastfeeding_or_no_contraception": False,
    "mental_disorder_or_dependence": False,
    "unable_to_consent_or_comply": False,
    "other_risk_condition": False,
}


@pytest.fixture
def randomised_participant(client, login) -> Callable[..., tuple[str, dict]]:
    """Screen, assess, consent and randomise one participant over HTTP; return (id, headers)."""

    def factory(headers: dict[str, str] | None = None, number: str | None = None, site: str = "MINSK"):
        headers = headers or login(f"inv{uuid.uuid4().hex[:6]}", "investigator", site)
        r = client.post(
            "/participants",
            json={"screening_number": number or f"S-{uuid.uuid4().hex[:8]}", "site": site, "sex": "F", "birth_year": 1970},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        r = client.post(f"/participants/{pid}/eligibility", json={"inclusion": INCLUSION_ALL_TRUE, "exclusion": EXCLUSION_ALL_FALSE}, headers=headers)
        assert r.status_code == 200, r.text
        r = client.post(f"/participants/{pid}/consent", json={"consent_version": "ICF v1.0", "signed_on": "2026-01-05"}, headers=headers)
        assert r.status_code == 200, r.text
        r = client.post(f"/participants/{pid}/randomisation", headers=headers)
        assert r.status_code == 200, r.text
        return pid, headers

    return factory
