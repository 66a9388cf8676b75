"""Fuzz every operation of the OpenAPI schema: whatever the input, never a 5xx."""

import atexit
import shutil
import tempfile

import schemathesis
from hypothesis import HealthCheck, settings

from api.app import create_app
from api.cli import cli_actor
from api.container import build, setup_store
from infrastructure.settings import Settings
from tests.conftest import FAST_ARGON2, PASSWORD, SITES

_dir = tempfile.mkdtemp(prefix="trialaudit-fuzz-")
_settings = Settings(database_url=f"sqlite:///{_dir}/fuzz.db", data_dir=_dir, sites=SITES, demo=False, **FAST_ARGON2)
setup_store(_settings)
_services = build(_settings)
_services.app.register_user(cli_actor(), username="fuzzer", full_name="Fuzz Investigator", role="investigator",
                            site="MINSK", password=PASSWORD, source="cli")
_FUZZER_ID = str(_services.app.user_by_name("fuzzer").id)
atexit.register(lambda: (_services.close(), shutil.rmtree(_dir, ignore_errors=True)))

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_services))


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx(case):
    # a session of its own per case: a fuzzed POST /auth/logout ends only that one
    response = case.call(headers={"Authorization": f"Bearer {_services.tokens.issue(_FUZZER_ID)}"})
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text)
