"""Small interfaces the application needs from infrastructure."""

from __future__ import annotations

from typing import Any, Protocol


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool: ...


class ChangeCounter(Protocol):
    """How many writes of a watched kind the store has committed, shared by every process that uses
    it (infrastructure.changecount): None while such a write is in flight."""

    def generation(self) -> int | None: ...


class AccountStore(Protocol):
    """Account data kept outside the event log (infrastructure.account_store): the current password
    hash, the server-side sessions and the failed-login throttle. Never exported."""

    def password_hash(self, user_id: str) -> str | None: ...

    def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    def open_session(self, jti: str, user_id: str, issued_at: float, expires_at: float) -> None: ...

    def session(self, jti: str, fresh: bool = False) -> dict[str, Any] | None: ...

    def touch_session(self, jti: str, now: float) -> None: ...

    def revoke_session(self, jti: str, now: float) -> None: ...

    def revoke_user_sessions(self, user_id: str, now: float) -> int: ...

    def throttle_count(self, key: str, now: float, window: float) -> tuple[int, float]: ...

    def count_failure(
        self, key: str, now: float, window: float, note: str | None = None
    ) -> tuple[int, dict[str, Any] | None]: ...


class TokenCodec(Protocol):
    """Signed bearer tokens (infrastructure.tokens): issue and check the signature and claims."""

    ttl_seconds: int

    def issue_claims(self, user_id: str, now: float | None = None) -> tuple[str, dict[str, Any]]: ...

    def claims(self, token: str, now: float | None = None) -> dict[str, Any]: ...
