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


_TYPE_KEY = b'"_type_"'


class OrjsonDecodingTranscoder(JSONTranscoder):
    def decode(self, data: bytes) -> Any:
        value = orjson.loads(data)
        # Fast path for the usual event state: the only transcoded values (the timestamp, a date) sit
        # at the top level. Every {"_type_", "_data_"} object puts the key "_type_" in the bytes
        # (the stdlib encoder never escapes it, and inside a string its quotes would be escaped),
        # so when the top level holds as many of them as the bytes name, with plain string data,
        # there is nothing deeper to decode; anything else takes the full bottom-up walk.
        typed = data.count(_TYPE_KEY)
        if typed == 0:
            return value if type(value) is not dict or "_type_" not in value else self._hook(value)
        if type(value) is dict and "_type_" not in value:
            found = []
            for key, item in value.items():
                if type(item) is dict and "_type_" in item:
                    if len(item) != 2 or type(item.get("_data_")) is not str:
                        break
                    found.append(key)
            else:
                if len(found) == typed:
                    decode_obj = self._decode_obj
                    for key in found:
                        value[key] = decode_obj(value[key])
                    return value
        return self._hook(value)

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
