"""Users: event-sourced, never deleted or reused (R22); logins and failed logins audited (R11, R24)."""

from __future__ import annotations

import re
from typing import Any

from domain.audit import Actor, AuditedAggregate, AuditedCreated, change
from domain.errors import Conflict, InvalidInput
from domain.trial import ALL_SITES, ROLES, SITE_BOUND_ROLES, trial_uuid

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
REDACTED = "[argon2 hash, not shown]"
#: Who set a password: the account holder, an administrator (one-time: it can only be used to choose a new
#: one, 21 CFR 11.300), or an operator with access to the store (`trialaudit users add`, trusted like a DBA).
SET_BY = ("self", "admin", "operator")


def _drop_hash(state: dict) -> None:
    """Events written before credentials left the log carried the argon2 hash: never show it again."""
    state.pop("password_hash", None)


def validate_username(value: Any) -> str:
    if not isinstance(value, str) or not USERNAME_RE.match(value.strip().lower()):
        raise InvalidInput.one(
            "username", "2 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value.strip().lower()


def validate_role_site(role: Any, site: Any, known_sites: set[str]) -> tuple[str, str]:
    errors = []
    if role not in ROLES:
        errors.append((("role",), f"must be one of {', '.join(ROLES)}"))
    if not isinstance(site, str) or not site:
        errors.append((("site",), "a site is required"))
    elif role in SITE_BOUND_ROLES and site not in known_sites:
        errors.append((("site",), f"a {role} is bound to one site; known sites: {', '.join(sorted(known_sites))}"))
    elif role in ROLES and role not in SITE_BOUND_ROLES and site != ALL_SITES and site not in known_sites:
        errors.append((("site",), f"use '{ALL_SITES}' (all sites) or a known site"))
    if errors:
        raise InvalidInput(errors)
    return role, site


class User(AuditedAggregate):
    TOPIC = "trialaudit.User"

    @staticmethod
    def id_for(username: str):
        # Derived from the username, so an account name can never be registered twice (R22).
        return trial_uuid("user", username.lower())

    class UserRegistered(AuditedCreated):
        TOPIC = "trialaudit.User.UserRegistered"
        username: str
        full_name: str
        role: str
        site: str
        password_one_time: bool = False

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict) -> None:
            _drop_hash(state)
            state["password_one_time"] = False

    class RoleChanged(AuditedAggregate.Event):
        TOPIC = "trialaudit.User.RoleChanged"
        role: str

        def apply(self, u: Any) -> None:
            u.role = self.role

    class SiteChanged(AuditedAggregate.Event):
        TOPIC = "trialaudit.User.SiteChanged"
        site: str

        def apply(self, u: Any) -> None:
            u.site = self.site

    class PasswordChanged(AuditedAggregate.Event):
        """A new password was set (the hash lives in the credential store, never in the log)."""

        TOPIC = "trialaudit.User.PasswordChanged"
        set_by: str = "self"
        one_time: bool = False

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict) -> None:
            _drop_hash(state)
            actor = (state.get("audit") or {}).get("actor") or {}
            originator = state.get("originator_id")
            state["set_by"] = "self" if str(actor.get("user_id")) == str(originator) else "admin"
            state["one_time"] = False

        def apply(self, u: Any) -> None:
            u.password_change_required = self.one_time

    class UserDeactivated(AuditedAggregate.Event):
        TOPIC = "trialaudit.User.UserDeactivated"

        def apply(self, u: Any) -> None:
            u.active = False

    class UserReactivated(AuditedAggregate.Event):
        TOPIC = "trialaudit.User.UserReactivated"

        def apply(self, u: Any) -> None:
            u.active = True

    class LoginSucceeded(AuditedAggregate.Event):
        TOPIC = "trialaudit.User.LoginSucceeded"

        def apply(self, u: Any) -> None:
            u.failed_logins = 0

    class LoginFailed(AuditedAggregate.Event):
        TOPIC = "trialaudit.User.LoginFailed"
        consecutive_failures: int

        def apply(self, u: Any) -> None:
            u.failed_logins = self.consecutive_failures

    class SignatureAuthenticationFailed(AuditedAggregate.Event):
        """A wrong password re-entered to sign a record (R28); it counts towards lockout (R24)."""

        TOPIC = "trialaudit.User.SignatureAuthenticationFailed"
        consecutive_failures: int
        record: str

        def apply(self, u: Any) -> None:
            u.failed_logins = self.consecutive_failures

    class UserLockedOut(AuditedAggregate.Event):
        TOPIC = "trialaudit.User.UserLockedOut"
        after_failures: int

        def apply(self, u: Any) -> None:
            u.locked = True

    class UserUnlocked(AuditedAggregate.Event):
        TOPIC = "trialaudit.User.UserUnlocked"

        def apply(self, u: Any) -> None:
            u.locked = False
            u.failed_logins = 0

    #: v2: no password hash in the state (snapshots written before carried one)
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict) -> None:
        _drop_hash(state)
        state["password_change_required"] = False

    def __init__(self, username: str, full_name: str, role: str, site: str, password_one_time: bool = False):
        self.username = username
        self.full_name = full_name
        self.role = role
        self.site = site
        #: the current password was set by an administrator: it may only be used to choose a new one
        self.password_change_required = password_one_time
        self.active = True
        self.locked = False
        self.failed_logins = 0

    @classmethod
    def register(
        cls, *, username: str, full_name: Any, role: str, site: str, password_one_time: bool, stamp: dict
    ) -> "User":
        if not isinstance(full_name, str) or not full_name.strip() or len(full_name) > 200:
            raise InvalidInput.one("full_name", "the user's full name is required (≤ 200 characters)")
        return cls._create(
            cls.UserRegistered,
            id=cls.id_for(username),
            username=username,
            full_name=" ".join(full_name.split()),
            role=role,
            site=site,
            password_one_time=bool(password_one_time),
            audit=stamp,
            changes=[
                change("username", None, username),
                change("full_name", None, " ".join(full_name.split())),
                change("role", None, role),
                change("site", None, site),
                change("password", None, "[set, one-time]" if password_one_time else "[set]"),
            ],
        )

    def as_actor(self) -> Actor:
        return Actor(
            user_id=str(self.id), username=self.username, full_name=self.full_name, role=self.role, site=self.site
        )

    def change_role(self, role: str, stamp: dict) -> None:
        if role == self.role:
            raise InvalidInput.one("role", "the user already has this role")
        self._record(self.RoleChanged, stamp, [change("role", self.role, role)], role=role)

    def change_site(self, site: str, stamp: dict) -> None:
        if site == self.site:
            raise InvalidInput.one("site", "the user is already at this site")
        self._record(self.SiteChanged, stamp, [change("site", self.site, site)], site=site)

    def change_password(self, set_by: str, stamp: dict) -> None:
        """Record that a new password was set: by the account holder, or (one-time) by an administrator."""
        if set_by not in SET_BY:
            raise ValueError(f"unknown set_by {set_by!r}")
        one_time = set_by == "admin"
        changes = [change("password", "[set]", "[set, one-time]" if one_time else "[set]")]
        if self.password_change_required != one_time:
            changes.append(change("password_change_required", self.password_change_required, one_time))
        self._record(self.PasswordChanged, stamp, changes, set_by=set_by, one_time=one_time)

    def deactivate(self, stamp: dict) -> None:
        if not self.active:
            raise Conflict("the user is already deactivated")
        self._record(self.UserDeactivated, stamp, [change("active", True, False)])

    def reactivate(self, stamp: dict) -> None:
        if self.active:
            raise Conflict("the user is active")
        self._record(self.UserReactivated, stamp, [change("active", False, True)])

    def login_succeeded(self, stamp: dict) -> None:
        self._record(self.LoginSucceeded, stamp, [change("failed_logins", self.failed_logins, 0)] if self.failed_logins else [])

    def login_failed(self, stamp: dict, max_failures: int) -> bool:
        """Record a failed login; lock the account at ``max_failures``. Returns True when it locked."""
        failures = self.failed_logins + 1
        self._record(
            self.LoginFailed, stamp, [change("failed_logins", self.failed_logins, failures)],
            consecutive_failures=failures,
        )
        if failures >= max_failures and not self.locked:
            self._record(self.UserLockedOut, stamp, [change("locked", False, True)], after_failures=failures)
            return True
        return False

    def signature_authentication_failed(self, stamp: dict, max_failures: int, record: str) -> bool:
        """Record a failed re-authentication at signing (R28); lock at ``max_failures`` like a failed login."""
        failures = self.failed_logins + 1
        self._record(
            self.SignatureAuthenticationFailed, stamp, [change("failed_logins", self.failed_logins, failures)],
            consecutive_failures=failures, record=record[:200],
        )
        if failures >= max_failures and not self.locked:
            self._record(self.UserLockedOut, stamp, [change("locked", False, True)], after_failures=failures)
            return True
        return False

    def unlock(self, stamp: dict) -> None:
        if not self.locked:
            raise Conflict("the account is not locked")
        self._record(self.UserUnlocked, stamp, [change("locked", True, False)])


class LoginAttempt(AuditedAggregate):
    """A failed login for a username that has no account: kept so that probing is visible (R11)."""

    TOPIC = "trialaudit.LoginAttempt"

    class UnknownUserLoginFailed(AuditedCreated):
        TOPIC = "trialaudit.LoginAttempt.UnknownUserLoginFailed"
        username_tried: str
        client: str

    class UnknownUserLoginsFolded(AuditedCreated):
        """The failed logins for unknown usernames from one client address in one window, after its
        first (which is an UnknownUserLoginFailed of its own): counted, not recorded one by one (13.D12)."""

        TOPIC = "trialaudit.LoginAttempt.UnknownUserLoginsFolded"
        client: str
        window_start: str
        window_end: str
        attempts: int
        usernames_tried: list

    def __init__(self, client: str, username_tried: str = "", window_start: str = "", window_end: str = "",
                 attempts: int = 1, usernames_tried: list | None = None):
        self.username_tried = username_tried
        self.client = client
        self.window_start = window_start
        self.window_end = window_end
        self.attempts = attempts
        self.usernames_tried = list(usernames_tried or [])
