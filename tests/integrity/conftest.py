from __future__ import annotations

import pytest


@pytest.fixture
def integrity(services):
    return services.integrity
