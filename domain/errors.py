"""Domain errors. The API maps each to an HTTP status; the CLI to a message and exit code."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """Base class of every refusal the domain or application makes."""

    title = "Request refused"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DomainError):
    """Bad input: maps to 422 with the path of every bad field."""

    title = "Invalid input"

    def __init__(self, errors: Sequence[tuple[Sequence[str | int], str]]):
        self.errors = [(tuple(path), message) for path, message in errors]
        detail = "; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in self.errors)
        super().__init__(detail)

    @classmethod
    def one(cls, field: str | Sequence[str | int], message: str) -> "InvalidInput":
        path = (field,) if isinstance(field, str) else tuple(field)
        return cls([(path, message)])


class Conflict(DomainError):
    """The command does not fit the current state (409)."""

    title = "Conflict with the current state"


class Locked(Conflict):
    """The data is locked (visit, participant or study lock, R34): 409 naming the lock."""

    title = "Locked"


class StaleVersion(Conflict):
    title = "Stale version"

    def __init__(self, expected: int, actual: int):
        super().__init__(
            f"expected_version {expected} is stale: the record is at version {actual}. "
            "Reload it and apply your change again."
        )
        self.expected = expected
        self.actual = actual


class NotFound(DomainError):
    title = "Not found"


class PermissionDenied(DomainError):
    title = "Forbidden"


class AuthenticationFailed(DomainError):
    title = "Authentication failed"


class PasswordChangeRequired(PermissionDenied):
    """The password was set by an administrator: it can only be used to choose a new one (21 CFR 11.300)."""

    title = "Password change required"


class TooManyAttempts(DomainError):
    """Too many failed logins from this client or for this username: try again after ``retry_after`` s."""

    title = "Too many failed logins"

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))
