"""Small interfaces the application needs from infrastructure."""

from __future__ import annotations

from typing import Protocol


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool: ...


class ChangeCounter(Protocol):
    """How many writes of a watched kind the store has committed, shared by every process that uses
    it (infrastructure.changecount): None while such a write is in flight."""

    def generation(self) -> int | None: ...
