"""The event-state transcoder: the library's JSON format, decoded with orjson.

Encoding is the library's own (stdlib json, same bytes as ever), so stored events, and the Merkle
leaves that hash them, do not depend on this module. Decoding parses with orjson and then applies
the registered transcodings ({"_type_", "_data_"} objects) bottom-up, exactly as the stdlib
decoder's object_hook does; replaying and rebuilding read models spend most of their time here.
"""

from __future__ import annotations

from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder


class OrjsonDecodingTranscoder(JSONTranscoder):
    def decode(self, data: bytes) -> Any:
        return self._hook(orjson.loads(data))

    def _hook(self, value: Any) -> Any:
        hook = self._hook
        if type(value) is dict:
            for key, item in value.items():
                kind = type(item)
                if kind is dict or kind is list:
                    value[key] = hook(item)
            return self._decode_obj(value) if "_type_" in value else value
        for i, item in enumerate(value):
            kind = type(item)
            if kind is dict or kind is list:
                value[i] = hook(item)
        return value
