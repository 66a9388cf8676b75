"""How often a watched part of a SQLite store has changed, shared by every process on the machine.

Two 64-bit counters in a 16-byte memory-mapped file beside the database: ``begun`` and ``done``.
The recorder bumps ``begun`` before a transaction that stores a watched event and sets
``done = begun`` once that transaction has committed (or rolled back), both under the store's
cross-process write lock. A reader that sees ``begun == done`` knows no such write is in flight
and gets that number as the generation; a later watched commit always shows a different one.
A process that dies between the two leaves ``begun > done``: readers then see no generation
(so nothing may be cached) until the next watched write sets them equal again.

Used for the accounts: an API worker may keep who a token's user is while the generation stays
the same, and must read the account again once it moves (deactivation, role, site, lockout).
"""

from __future__ import annotations

import mmap
import os
import struct
import threading

_PAIR = struct.Struct("<QQ")
_ONE = struct.Struct("<Q")


class ChangeCounter:
    SIZE = _PAIR.size

    def __init__(self, path: str):
        self.path = path
        self._map: mmap.mmap | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def _mapped(self) -> mmap.mmap:
        if self._map is not None and self._pid == os.getpid():
            return self._map
        with self._lock:
            if self._map is None or self._pid != os.getpid():
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    if os.fstat(fd).st_size < self.SIZE:
                        os.ftruncate(fd, self.SIZE)  # extends with zeros; never shrinks what another wrote
                    self._map = mmap.mmap(fd, self.SIZE)
                finally:
                    os.close(fd)
                self._pid = os.getpid()
            return self._map

    def generation(self) -> int | None:
        """The number of watched writes so far, or None while one is in flight (or was cut short)."""
        begun, done = _PAIR.unpack_from(self._mapped())
        return done if begun == done else None

    def begin(self) -> None:
        """Before a watched write; the caller holds the store's cross-process write lock."""
        m = self._mapped()
        begun, _ = _PAIR.unpack_from(m)
        _ONE.pack_into(m, 0, begun + 1)

    def end(self) -> None:
        """After the watched write committed or rolled back; still under the write lock."""
        m = self._mapped()
        begun, _ = _PAIR.unpack_from(m)
        _ONE.pack_into(m, 8, begun)
