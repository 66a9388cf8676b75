"""JSON responses serialised with orjson, without re-validating what the application built.

The routes still declare their `response_model` for the OpenAPI contract; the application's views
are plain dicts of JSON types already, so validating them again on every request only costs time
on the audited write path.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(content: Any, status_code: int = 200) -> Response:
    return JSONBytes(content, status_code=status_code)
