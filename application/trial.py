"""The trialaudit Application: commands and queries over the event-sourced aggregates.

Every method takes the acting user explicitly (never from ambient context, see
docs/eventsourcing.md §6), checks the access policy, and saves all events of one command in one
transaction.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Recording

from application import concealment
from application.adverse_events import AdverseEventCommands
from application.audit_queries import AuditQueries
from application.casebook import CasebookQueries
from application.locks import LockCommands
from application.password_policy import check_password
from application.ports import AccountStore, ChangeCounter, PasswordHasher
from application.queries import QueryCommands
from application.repository import FastProcessingEvent, FastRepository, SealedSnapshotStore
from application.snapshots import check_snapshots, snapshot_rejected
from application.review import ReviewQueries
from application.signatures import SignatureCommands
from application.views import event_view, participant_view, user_view
from application.visits import VisitCommands
from domain import access
from domain.audit import SYSTEM_ACTOR, Actor, make_stamp
from domain.export import ExportRecord  # noqa: F401 (its pinned topics must resolve in every process that reads the log)
from domain.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    Locked,
    NotFound,
    PasswordChangeRequired,
    PermissionDenied,
    StaleVersion,
    TooManyAttempts,
)
from domain.casebook import Casebook
from domain.lock import StudyLock
from domain.participant import Participant, ScreeningNumberClaim, participant_status, validate_screening_number
from domain.randomisation import AllocationSequence
from domain.user import LoginAttempt, User, validate_role_site, validate_username

#: the one answer to a refused login, whatever the reason (no account enumeration)
WRONG_LOGIN = "incorrect username or password"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def parse_uuid(value: Any, what: str = "id") -> UUID:
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise NotFound(f"no {what} {value!r}") from None


class TrialApplication(AuditQueries, VisitCommands, AdverseEventCommands, CasebookQueries, SignatureCommands,
                       QueryCommands, LockCommands, ReviewQueries, Application):
    name = "trialaudit"
    env = {
        "AGGREGATE_CACHE_MAXSIZE": "10000",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
    }
    snapshotting_intervals = {User: 200, Participant: 200}

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        passwords: PasswordHasher,
        allocation_seed: bytes,
        sites: dict[str, str],
        max_failed_logins: int = 5,
        accounts: AccountStore | None = None,
        snapshot_key: bytes | None = None,
    ):
        # snapshots are sealed under this key (kept outside the database); without one, a key of this
        # process alone: its snapshots are believed by nobody else, who replays the events instead
        self._snapshot_key = snapshot_key or secrets.token_bytes(32)
        super().__init__(env)
        #: password hashes, sessions and the login throttle, outside the log (set by the composition root)
        self.accounts: AccountStore = accounts  # type: ignore[assignment]
        #: failed logins per client address or username and window before 429 (TRIALAUDIT_LOGIN_THROTTLE_*)
        self.login_throttle_failures = 10
        self.login_throttle_window_seconds = 900.0
        self.passwords = passwords
        self._allocation_seed = allocation_seed
        self.sites = dict(sites)
        self.max_failed_logins = max_failed_logins
        self._saved_listeners: list[Callable[[list[Recording]], None]] = []
        self._dummy_hash: str | None = None
        #: set by the composition root: the read models (application.projections.ProjectionEngine)
        self.read_models: Any = None
        self._dummy_lock = threading.Lock()
        # Shared generations of the accounts and of the lock holders (SQLite file stores): who each
        # token's user is (actor_for), and which casebooks do not exist (LockCommands._before_save),
        # are kept while nothing of that kind has changed anywhere.
        count_changes = getattr(self.recorder, "count_changes", None)
        self._account_changes: ChangeCounter | None = count_changes(f"{User.TOPIC}.") if count_changes else None
        self._lock_changes: ChangeCounter | None = (
            count_changes(f"{StudyLock.TOPIC}.", f"{Casebook.TOPIC}.") if count_changes else None
        )
        self._actors: dict[str, tuple[int, Actor]] = {}

    # ------------------------------------------------------------------ plumbing
    def construct_repository(self) -> FastRepository:
        """The library's repository, configured by the library from the env, with a leaner ``get``."""
        repository = super().construct_repository()
        repository.__class__ = FastRepository  # a subclass that only overrides get(): no state to convert
        return repository

    def construct_snapshot_store(self) -> SealedSnapshotStore:
        """The library's snapshot store, with every snapshot sealed by a MAC and checked on load (C.6)."""
        store = super().construct_snapshot_store()
        return SealedSnapshotStore(store.mapper, store.recorder, self._snapshot_key, on_rejected=snapshot_rejected)

    def check_snapshots(self, stored_snapshots: Iterable[Any]) -> list[str]:
        """What is wrong with each stored snapshot (for `trialaudit verify`): a seal that does not hold,
        or a state other than the replay of the aggregate's events up to its version."""
        return check_snapshots(self, stored_snapshots)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording]:
        """``Application.save`` step for step, collecting events without the library's Protocol checks."""
        processing_event = FastProcessingEvent()
        processing_event.collect_events(*objs, **kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # the library's deprecated hook, kept for parity
        return recordings

    def add_saved_listener(self, listener: Callable[[list[Recording]], None]) -> None:
        """Called after each successful save (projections catch up from here)."""
        self._saved_listeners.append(listener)

    def _notify(self, recordings: list[Recording]) -> None:
        for listener in self._saved_listeners:
            listener(recordings)

    def _save(self, *aggregates: Any) -> int:
        """Save all pending events of a command atomically; return the last notification id."""
        aggregates = (*aggregates, *self._before_save(aggregates))  # locks, casebook signatures (R30, R34)
        try:
            recordings = self.save(*aggregates)
        except IntegrityError:
            raise Conflict(
                "the record was changed by someone else at the same moment; reload it and try again"
            ) from None
        return recordings[-1].notification.id if recordings else 0

    def _get(self, cls: type, aggregate_id: Any, what: str):
        try:
            aggregate = self.repository.get(parse_uuid(aggregate_id, what))
        except AggregateNotFoundError:
            raise NotFound(f"no {what} with id {aggregate_id}") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"no {what} with id {aggregate_id}")
        return aggregate

    @staticmethod
    def _check_version(aggregate: Any, expected_version: int | None) -> None:
        if expected_version is not None and expected_version != aggregate.version:
            raise StaleVersion(expected_version, aggregate.version)

    def _check_site(self, site: Any) -> str:
        if site not in self.sites:
            raise InvalidInput.one("site", f"unknown site; known sites: {', '.join(sorted(self.sites))}")
        return site

    # ------------------------------------------------------------------ users
    def register_user(
        self,
        actor: Actor,
        *,
        username: Any,
        full_name: Any,
        role: Any,
        site: Any,
        password: Any,
        source: str = "api",
        temporary: bool = False,
    ) -> dict[str, Any]:
        """Add an account. ``temporary``: the password is one-time (set by an administrator over the API):
        it can only be used to choose a new one. The hash goes to the credential store, never the log."""
        access.require(actor, "user.manage")
        errors = []
        for check in (
            lambda: validate_username(username),
            lambda: validate_role_site(role, site, set(self.sites)),
            lambda: self._validate_password(password, username),
        ):
            try:
                check()
            except InvalidInput as e:
                errors.extend(e.errors)
        if errors:
            raise InvalidInput(errors)
        username = validate_username(username)
        if User.id_for(username) in self.repository:
            raise Conflict(f"the username {username!r} exists (accounts are never deleted or reused)")
        password_hash = self.passwords.hash(password)
        user = User.register(
            username=username,
            full_name=full_name,
            role=role,
            site=site,
            password_one_time=temporary,
            stamp=make_stamp(actor, source=source),
        )
        # the audited fact first, then the credential: the log never misses a password that was set
        notification_id = self._save(user)
        self.accounts.set_password_hash(str(user.id), password_hash)
        return {**user_view(user), "notification_id": notification_id}

    @staticmethod
    def _validate_password(password: Any, username: Any = None, field: str = "password") -> None:
        """NIST SP 800-63B: at least 12 characters, not all whitespace, not the username, not a common password."""
        check_password(password, username, field)

    def get_user(self, actor: Actor, user_id: Any) -> dict[str, Any]:
        if str(user_id) != actor.user_id:
            access.require(actor, "user.read")
        return user_view(self._get(User, user_id, "user"))

    def user_by_name(self, username: str) -> User | None:
        try:
            return self.repository.get(User.id_for(username.strip().lower()))
        except AggregateNotFoundError:
            return None

    def list_users(self, actor: Actor) -> list[dict[str, Any]]:
        """The register of accounts (R22), read from the log of registrations."""
        access.require(actor, "user.read")
        return [user_view(self.repository.get(i)) for i in self._user_ids()]

    def _user_ids(self) -> list[Any]:
        topic = User.UserRegistered.TOPIC
        ids, start = [], 0
        while True:
            page = self.recorder.select_notifications(start=start, limit=500, topics=[topic], inclusive_of_start=False)
            ids.extend(n.originator_id for n in page)
            if len(page) < 500:
                break
            start = page[-1].id
        return ids

    def user_history(self, actor: Actor, user_id: Any) -> list[dict[str, Any]]:
        access.require(actor, "user.read")
        user = self._get(User, user_id, "user")
        return [event_view(e) for e in self.events.get(user.id)]

    def _admin_change(self, actor: Actor, user_id: Any, expected_version: int | None, apply: Callable[[User, dict], None]) -> dict:
        access.require(actor, "user.manage")
        user = self._get(User, user_id, "user")
        self._check_version(user, expected_version)
        apply(user, make_stamp(actor, reason=None))
        notification_id = self._save(user)
        return {**user_view(user), "notification_id": notification_id}

    @staticmethod
    def _is_self(actor: Actor, user_id: Any) -> bool:
        """Whether ``user_id`` names the actor's own account, however the id is spelt (case, dashes)."""
        try:
            return str(parse_uuid(user_id, "user")) == actor.user_id
        except NotFound:
            return False

    def _refuse_self(self, actor: Actor, user_id: Any, what: str) -> None:
        if self._is_self(actor, user_id):
            raise PermissionDenied(f"nobody changes their own {what}; ask another administrator")

    def change_user_role(self, actor: Actor, user_id: Any, *, role: Any, reason: Any, expected_version: int | None = None):
        access.require(actor, "user.manage")
        self._refuse_self(actor, user_id, "role")

        def apply(user: User, _: dict) -> None:
            validate_role_site(role, user.site, set(self.sites))
            user.change_role(role, make_stamp(actor, reason=reason, reason_required=True))

        result = self._admin_change(actor, user_id, expected_version, apply)
        self.accounts.revoke_user_sessions(result["id"], time.time())
        return result

    def change_user_site(self, actor: Actor, user_id: Any, *, site: Any, reason: Any, expected_version: int | None = None):
        access.require(actor, "user.manage")
        self._refuse_self(actor, user_id, "site")

        def apply(user: User, _: dict) -> None:
            validate_role_site(user.role, site, set(self.sites))
            user.change_site(site, make_stamp(actor, reason=reason, reason_required=True))

        result = self._admin_change(actor, user_id, expected_version, apply)
        self.accounts.revoke_user_sessions(result["id"], time.time())
        return result

    def deactivate_user(self, actor: Actor, user_id: Any, *, reason: Any, expected_version: int | None = None):
        if self._is_self(actor, user_id):
            raise Conflict("you cannot deactivate your own account")
        return self._admin_change(
            actor, user_id, expected_version,
            lambda u, _: u.deactivate(make_stamp(actor, reason=reason, reason_required=True)),
        )

    def reactivate_user(self, actor: Actor, user_id: Any, *, reason: Any, expected_version: int | None = None):
        return self._admin_change(
            actor, user_id, expected_version,
            lambda u, _: u.reactivate(make_stamp(actor, reason=reason, reason_required=True)),
        )

    def unlock_user(self, actor: Actor, user_id: Any, *, reason: Any, expected_version: int | None = None):
        return self._admin_change(
            actor, user_id, expected_version,
            lambda u, _: u.unlock(make_stamp(actor, reason=reason, reason_required=True)),
        )

    def change_password(self, actor: Actor, user_id: Any, *, new_password: Any, reason: Any = None,
                        current_password: Any = None, source: str = "api"):
        """Your own password (the current one is required), or an administrator's reset of another's
        (one-time: the user must choose their own at the next login). Either ends every session."""
        if self._is_self(actor, user_id):
            user = self._get(User, user_id, "user")
            return self._set_own_password(user, current_password, new_password, reason, source=source)
        access.require(actor, "user.manage")
        user = self._get(User, user_id, "user")
        self._validate_password(new_password, user.username, "new_password")
        password_hash = self.passwords.hash(new_password)
        user.change_password("admin", make_stamp(actor, reason=reason, reason_required=True, source=source))
        notification_id = self._save(user)
        self.accounts.set_password_hash(str(user.id), password_hash)
        self.accounts.revoke_user_sessions(str(user.id), time.time())
        return {**user_view(user), "notification_id": notification_id}

    def change_own_password(self, username: Any, current_password: Any, new_password: Any, *,
                            client: str = "unknown", source: str = "api") -> dict[str, Any]:
        """Choose a new password with the current one, without a session: the only thing a one-time
        password (set by an administrator) can be used for. A wrong current password is a failed login."""
        self._validate_password(new_password, username, "new_password")  # before the password is tried
        user = self.authenticate(username, current_password, client=client, source=source, purpose="password change")
        # who typed it is unknowable; where from is kept (an admin who reset a password and then chose the
        # new one themselves is visible in the account's history)
        how = "replacing a one-time password set by an administrator" if user.password_change_required else \
            "with the current password"
        return self._set_own_password(user, current_password, new_password, f"chosen {how}, from {client[:100]}",
                                      source=source, checked=True)

    def _set_own_password(self, user: User, current_password: Any, new_password: Any, reason: Any, *,
                          source: str, checked: bool = False) -> dict[str, Any]:
        self._validate_password(new_password, user.username, "new_password")
        if not isinstance(current_password, str) or not current_password:
            raise InvalidInput.one("current_password", "your current password is required to choose a new one")
        if current_password == new_password:
            raise InvalidInput.one("new_password", "choose a password different from the current one")
        if not checked and not self.passwords.verify(self._password_hash(user), current_password):
            self._reauthentication_failed(user, "wrong current password given to change the password", source)
        password_hash = self.passwords.hash(new_password)
        user.change_password("self", make_stamp(user.as_actor(), reason=reason or None, source=source))
        notification_id = self._save(user)
        self.accounts.set_password_hash(str(user.id), password_hash)
        self.accounts.revoke_user_sessions(str(user.id), time.time())
        return {**user_view(user), "notification_id": notification_id}

    def _reauthentication_failed(self, user: User, reason: str, source: str) -> None:
        locked = user.login_failed(make_stamp(user.as_actor(), reason=reason, source=source), self.max_failed_logins)
        self._save_quietly(user)
        if locked:
            self.accounts.revoke_user_sessions(str(user.id), time.time())
        raise AuthenticationFailed("incorrect current password (the failed attempt is recorded)")

    def _password_hash(self, user: User) -> str:
        return self.accounts.password_hash(str(user.id)) or ""

    def upgrade_credentials(self) -> int:
        """Stores written before credentials left the log: move each account's current hash (the last one
        its events carry) into the credential store. The old events stay as they are (the log is
        immutable); read back, they no longer show the hash (User events are upcast). Idempotent."""
        done = self.accounts.credential_user_ids()
        moved = 0
        decode = self.mapper.transcoder.decode
        for user_id in self._user_ids():
            if str(user_id) in done:
                continue
            current = None
            for stored in self.recorder.select_events(user_id):
                state = decode(stored.state)
                if isinstance(state, dict) and isinstance(state.get("password_hash"), str):
                    current = state["password_hash"]
            if current is not None:
                self.accounts.set_password_hash(str(user_id), current)
                moved += 1
        return moved

    # ------------------------------------------------------------------ authentication
    def _throttle_keys(self, username: str, client: str) -> list[str]:
        return [f"client:{client[:100]}", f"user:{username[:100]}"]

    def _check_throttle(self, username: str, client: str) -> None:
        now = time.time()
        window = self.login_throttle_window_seconds
        for key in self._throttle_keys(username, client):
            failures, ends = self.accounts.throttle_count(key, now, window)
            if failures >= self.login_throttle_failures:
                raise TooManyAttempts(
                    f"too many failed logins from this address or for this username; try again in "
                    f"{max(1, int(ends - now))} s", retry_after=ends - now,
                )

    def _count_failure(self, username: str, client: str) -> None:
        now = time.time()
        for key in self._throttle_keys(username, client):
            self.accounts.count_failure(key, now, self.login_throttle_window_seconds)

    def _unknown_user_failed(self, username: str, client: str, source: str) -> None:
        """Audit failed logins for usernames with no account, folded: the first from a client in a window
        is an event; the rest of that window are counted, and summarised in one event when the client
        fails again in a later window. The log grows by at most two events per client and window."""
        now = time.time()
        count, previous = self.accounts.count_failure(
            f"unknown:{client[:100]}", now, self.login_throttle_window_seconds, note=username[:100]
        )
        if count != 1:
            return
        stamp = make_stamp(SYSTEM_ACTOR, source=source)
        events = []
        if previous is not None and previous["failures"] > 1:
            start = dt.datetime.fromtimestamp(previous["window_start"], dt.timezone.utc)
            events.append(LoginAttempt._create(
                LoginAttempt.UnknownUserLoginsFolded, id=uuid4(), client=client[:100],
                window_start=start.isoformat(),
                window_end=(start + dt.timedelta(seconds=self.login_throttle_window_seconds)).isoformat(),
                attempts=previous["failures"], usernames_tried=previous["notes"][:20],
                audit=stamp, changes=[],
            ))
        events.append(LoginAttempt._create(
            LoginAttempt.UnknownUserLoginFailed, id=uuid4(), username_tried=username[:100], client=client[:100],
            audit=stamp, changes=[],
        ))
        self._save(*events)

    def authenticate(self, username: Any, password: Any, *, client: str = "unknown", source: str = "api",
                     purpose: str = "login") -> User:
        """Check a password; audit the login or the failure; lock after repeated failures (R11, R24).

        An unknown username, a deactivated or locked account and a wrong password all answer the same
        AuthenticationFailed after the same argon2 work (no account enumeration). Too many failures from
        a client address or for a username answer TooManyAttempts before any work. A correct one-time
        password (set by an administrator) answers PasswordChangeRequired for a login: it can only be
        used to choose a new password (``purpose="password change"``)."""
        username = str(username or "").strip().lower()
        password = str(password or "")
        self._check_throttle(username, client)
        user = self.user_by_name(username) if username else None
        refused = AuthenticationFailed(WRONG_LOGIN)
        if user is None:
            self._verify_dummy(password)  # same cost as a real check: no username probing by timing
            self._count_failure(username, client)
            self._unknown_user_failed(username, client, source)
            raise refused
        self_actor = user.as_actor()
        if not user.active or user.locked:
            self._verify_dummy(password)
            why = "account deactivated" if not user.active else "account locked"
            user.login_failed(make_stamp(self_actor, reason=f"{purpose} refused: {why}", source=source), 10**9)
            self._save_quietly(user)
            self._count_failure(username, client)
            raise refused
        if not self.passwords.verify(self._password_hash(user), password):
            user.login_failed(make_stamp(self_actor, source=source), self.max_failed_logins)
            self._save_quietly(user)
            self._count_failure(username, client)
            raise refused
        if purpose == "login" and user.password_change_required:
            raise PasswordChangeRequired(
                "password change required: this password was set by an administrator and can only be used to "
                "choose your own, at POST /auth/password (username, current_password, new_password)"
            )
        if purpose == "login":
            user.login_succeeded(make_stamp(self_actor, source=source))
            self._save_quietly(user)
        return user

    def _save_quietly(self, user: User) -> None:
        """Login bookkeeping: on a concurrent login, reload and record again."""
        for _ in range(5):
            try:
                self.save(user)
                return
            except IntegrityError:
                pending = user.collect_events()
                user = self.repository.get(user.id)
                for event in pending:
                    kwargs = {k: v for k, v in vars(event).items() if k not in ("originator_id", "originator_version", "timestamp")}
                    user.trigger_event(type(event), **kwargs)
        raise Conflict("too many concurrent logins for this account; try again")

    def _verify_dummy(self, password: str) -> None:
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self.passwords.hash("not a real password, only for timing")
        self.passwords.verify(self._dummy_hash, password)

    def actor_for(self, user_id: Any) -> Actor:
        """The acting user as they are now, for the stamp of what they do (R3), refused once
        deactivated or locked (R22, R24).

        On a SQLite file every process that writes an account event (registration, role, site,
        deactivation, lockout, login) moves a shared generation once that write has committed
        (infrastructure.changecount). While it stays where it was when an account was last read
        here, no account has changed anywhere, so the actor read then is still the actor now; once
        it moves, or while such a write is in flight, the account is read again. Elsewhere (e.g.
        PostgreSQL, where the writers may be other machines) it is read on every call."""
        changes = self._account_changes
        generation = changes.generation() if changes is not None else None
        key = str(user_id)
        if generation is not None:
            hit = self._actors.get(key)
            if hit is not None and hit[0] == generation:
                return hit[1]
        try:
            # Without a generation to key a copy on, fastforward_skipping: while another request is
            # bringing this account up to date, use the cached copy rather than queue behind it. With
            # one, never: a copy that skipped a change must not be kept.
            user = self.repository.get(
                parse_uuid(user_id, "user"), fastforward_skipping=generation is None, deepcopy_from_cache=False
            )
        except (AggregateNotFoundError, NotFound):
            raise AuthenticationFailed("unknown user") from None
        if not isinstance(user, User) or not user.active:
            raise AuthenticationFailed("this account is deactivated")
        if user.locked:
            raise AuthenticationFailed("this account is locked")
        actor = user.as_actor()
        if generation is not None and changes.generation() == generation:  # nothing changed meanwhile
            if len(self._actors) >= 10_000:
                self._actors.clear()
            self._actors[key] = (generation, actor)
        return actor

    # ------------------------------------------------------------------ participants
    def _participant_for(self, actor: Actor, participant_id: Any, action: str) -> Participant:
        access.require(actor, action)
        participant = self._get(Participant, participant_id, "participant")
        access.require(actor, action, participant.site)
        return participant

    def _result(self, participant: Participant, notification_id: int, **extra: Any) -> dict[str, Any]:
        # only site roles write participants: the slot is never in a command's result (E.19)
        if "changes" in extra:
            extra["changes"] = concealment.changes(None, extra["changes"])
        return {**concealment.participant(None, participant_view(participant)), "notification_id": notification_id,
                **extra}

    def screen_participant(
        self, actor: Actor, *, screening_number: Any, site: Any, sex: Any, birth_year: Any, source: str = "api"
    ) -> dict[str, Any]:
        access.require(actor, "participant.write")
        site = self._check_site(site)
        access.require(actor, "participant.write", site)
        stamp = make_stamp(actor, source=source)
        participant = Participant.screen(
            participant_id=uuid4(), screening_number=screening_number, site=site, sex=sex,
            birth_year=birth_year, stamp=stamp,
        )
        claim = self._claim_screening_number(participant.screening_number, str(participant.id), stamp)
        try:
            notification_id = self._save(participant, claim)
        except Locked:
            raise
        except Conflict:
            raise Conflict(f"screening number {participant.screening_number} is already in use in this trial") from None
        return self._result(participant, notification_id)

    def _claim_screening_number(self, number: str, participant_id: str, stamp: dict) -> ScreeningNumberClaim:
        try:
            claim = self.repository.get(ScreeningNumberClaim.id_for(number))
        except AggregateNotFoundError:
            return ScreeningNumberClaim.claim(number, participant_id, stamp)
        claim.reclaim(participant_id, stamp)
        return claim

    def assess_eligibility(
        self, actor: Actor, participant_id: Any, *, inclusion: Any, exclusion: Any, reason: Any = None,
        expected_version: int | None = None, source: str = "api",
    ) -> dict[str, Any]:
        participant = self._participant_for(actor, participant_id, "participant.write")
        self._check_version(participant, expected_version)
        participant.assess_eligibility(inclusion, exclusion, make_stamp(actor, reason=reason, source=source))
        return self._result(participant, self._save(participant))

    def record_consent(
        self, actor: Actor, participant_id: Any, *, consent_version: Any, signed_on: Any,
        expected_version: int | None = None, source: str = "api",
    ) -> dict[str, Any]:
        participant = self._participant_for(actor, participant_id, "participant.write")
        self._check_version(participant, expected_version)
        participant.record_consent(consent_version, signed_on, make_stamp(actor, source=source), utcnow().date())
        return self._result(participant, self._save(participant))

    def randomise(
        self, actor: Actor, participant_id: Any, *, expected_version: int | None = None, source: str = "api"
    ) -> dict[str, Any]:
        """Allocate the next slot of the site's concealed sequence, atomically with the participant."""
        for attempt in range(10):
            participant = self._participant_for(actor, participant_id, "participant.randomise")
            self._check_version(participant, expected_version)
            participant.check_can_randomise()
            stamp = make_stamp(actor, source=source)
            stratum = participant.site
            try:
                sequence = self.repository.get(AllocationSequence.id_for(stratum))
            except AggregateNotFoundError:
                sequence = AllocationSequence.start(stratum, self._allocation_seed, make_stamp(SYSTEM_ACTOR, source="system"))
            slot, arm = sequence.use_next(self._allocation_seed, str(participant.id), stamp)
            participant.randomise(arm, slot, stratum, sequence.rule, stamp)  # the rule it was drawn by
            visits = self.plan_visits(participant, stamp)  # the schedule, in the same transaction
            try:
                recordings = self.save(participant, sequence, *visits, *self._before_save((participant,)))
            except IntegrityError:
                continue  # another randomisation took the slot at the same moment: draw again
            return self._result(participant, recordings[-1].notification.id)
        raise Conflict("randomisation is busy at this site; try again")

    def withdraw(
        self, actor: Actor, participant_id: Any, *, reason: Any, expected_version: int | None = None, source: str = "api"
    ) -> dict[str, Any]:
        participant = self._participant_for(actor, participant_id, "participant.write")
        self._check_version(participant, expected_version)
        participant.withdraw(reason, make_stamp(actor, reason=reason, reason_code="withdrawal", source=source, reason_required=True))
        return self._result(participant, self._save(participant))

    def correct_participant(
        self, actor: Actor, participant_id: Any, *, field: Any, new_value: Any, reason: Any,
        reason_code: Any = None, query_id: Any = None, expected_version: int | None = None, source: str = "api",
    ) -> dict[str, Any]:
        stamp = make_stamp(actor, reason=reason, reason_code=reason_code, query_id=query_id, source=source, reason_required=True)
        participant = self._participant_for(actor, participant_id, "participant.write")
        self._check_version(participant, expected_version)
        self.check_cited_query(query_id, record_type="participant", record_id=participant.id, fields=field)
        today = utcnow().date()
        if field == "screening_number":
            new_number = validate_screening_number(new_value, "new_value")
            participant.validate_correction(field, new_number, today)
            old_claim = self.repository.get(ScreeningNumberClaim.id_for(participant.screening_number))
            new_claim = self._claim_screening_number(new_number, str(participant.id), stamp)
            old_claim.release(stamp)
            changes = participant.correct(field, new_number, stamp, today)
            try:
                notification_id = self._save(participant, old_claim, new_claim)
            except Locked:
                raise
            except Conflict:
                raise Conflict(f"screening number {new_number} is already in use in this trial") from None
        else:
            changes = participant.correct(field, new_value, stamp, today)
            notification_id = self._save(participant)
        return self._result(participant, notification_id, changes=changes)

    # ------------------------------------------------------------------ queries
    def get_participant(self, actor: Actor, participant_id: Any, *, as_of: dt.datetime | None = None) -> dict[str, Any]:
        if as_of is None:
            return concealment.participant(actor, participant_view(
                self._participant_for(actor, participant_id, "participant.read")))
        participant = self.participant_as_of(actor, participant_id, as_of)
        return concealment.participant(actor, participant_view(participant))

    def participant_as_of(self, actor: Actor, participant_id: Any, as_of: dt.datetime) -> Participant:
        """The participant as recorded at ``as_of``: the events recorded up to that instant (R17)."""
        if as_of.tzinfo is None:
            raise InvalidInput.one("as_of", "give an instant with its zone, e.g. 2026-03-12T00:00:00Z")
        current = self._participant_for(actor, participant_id, "participant.read")
        state = replay(self.events.get(current.id), until=as_of)
        if state is None:
            raise NotFound(f"participant {participant_id} had not been screened at {as_of.isoformat()}")
        return state

    def list_participants(self, actor: Actor, *, site: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Participants of a site (a site-bound user sees only their own), from the read model."""
        access.require(actor, "participant.read")
        if access.is_site_bound(actor):
            if site not in (None, actor.site):
                access.require(actor, "participant.read", site)
            site = actor.site
        self.read_models.wait_for()
        sql = "SELECT * FROM participant_list"
        params: list[Any] = []
        if site is not None:
            sql += " WHERE site = ?"
            params.append(site)
        rows = self.read_models.store.query(sql + " ORDER BY site, screening_number", params)
        result = []
        for row in rows:
            row_status = participant_status(withdrawn=bool(row["withdrawn"]), arm=row["arm"], eligible=None if row["eligible"] is None else bool(row["eligible"]))
            if status is None or row_status == status:
                result.append({
                    "id": row["id"], "screening_number": row["screening_number"], "site": row["site"],
                    "sex": row["sex"], "birth_year": row["birth_year"], "status": row_status, "arm": row["arm"],
                    "eligible": None if row["eligible"] is None else bool(row["eligible"]),
                    "version": row["version"], "modified_at": row["modified_at"],
                })
        return result

    def participant_history(self, actor: Actor, participant_id: Any) -> list[dict[str, Any]]:
        participant = self._participant_for(actor, participant_id, "participant.read")
        return [concealment.event(actor, event_view(e)) for e in self.events.get(participant.id)]


def replay(events: Iterable[Any], until: dt.datetime | None = None) -> Any:
    """Fold events into an aggregate, stopping at the first recorded after ``until``."""
    aggregate = None
    for event in events:
        if until is not None and event.timestamp > until:
            break
        aggregate = event.mutate(aggregate)
    return aggregate
