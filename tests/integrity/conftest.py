from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.container import Services, build, setup_store


@pytest.fixture
def services(store_url: str, make_settings) -> Iterator[Services]:
    """As the shared fixture, with a signed head in every storing transaction (finest localisation)."""
    settings = make_settings(store_url, head_interval_seconds=0)
    setup_store(settings)
    svc = build(settings)
    yield svc
    svc.close()


@pytest.fixture
def integrity(services):
    return services.integrity


@pytest.fixture
def cli_env(monkeypatch, services):
    """Point the command line at the test's store and keys."""
    s = services.settings
    monkeypatch.setenv("TRIALAUDIT_DATABASE_URL", s.database_url)
    monkeypatch.setenv("TRIALAUDIT_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("TRIALAUDIT_SITES", '{"MINSK": "Europe/Minsk", "GOMEL": "Europe/Minsk"}')
    monkeypatch.setenv("TRIALAUDIT_HEAD_INTERVAL_SECONDS", "0")
    return s
