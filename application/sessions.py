"""Sessions: a bearer token names a server-side session, which ends after an idle time, at an absolute
maximum, at logout, or when the account's password, role or site changes (R24; 21 CFR 11.300).

``authenticate_token`` is THE check of a token, shared by the API (api/deps.py) and any other front
end that carries the same token (e.g. a web UI keeping it in a cookie): token -> the actor as they are
now, or AuthenticationFailed.

The session rows are shared by every process on the database, so a logout on one API worker holds on
all of them. The hot path stays cheap: a token verified once is remembered (infrastructure.tokens),
the session row is one indexed read, and its last-seen time is written at most every
``touch_every`` seconds, so the idle timeout is exact to within that.
"""

from __future__ import annotations

import time
from typing import Any

from application.ports import AccountStore, TokenCodec
from domain.audit import Actor
from domain.errors import AuthenticationFailed

IDLE = "the session expired after {minutes} minutes without activity; log in again at POST /auth/token"


class SessionService:
    def __init__(self, app: Any, tokens: TokenCodec, store: AccountStore, *, idle_timeout_seconds: int,
                 session_max_seconds: int):
        self.app = app
        self.codec = tokens
        self.store = store
        self.idle_timeout_seconds = idle_timeout_seconds
        self.session_max_seconds = session_max_seconds
        #: the last-seen time is written when it is at least this old
        self.touch_every = max(1.0, min(60.0, idle_timeout_seconds / 15))

    @property
    def ttl_seconds(self) -> int:
        """What a client may count on without activity (``expires_in`` of the token response)."""
        return min(self.idle_timeout_seconds, self.session_max_seconds)

    def issue(self, user_id: str, now: float | None = None) -> str:
        """A token for a new session of the user (the caller has authenticated them)."""
        now = time.time() if now is None else now
        token, claims = self.codec.issue_claims(str(user_id), now)
        self.store.open_session(claims["jti"], str(user_id), now, min(claims["exp"], now + self.session_max_seconds))
        return token

    def _open_session(self, token: str, now: float) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            claims = self.codec.claims(token, now)
        except Exception as e:  # noqa: BLE001 - the codec's TokenError, or anything: a bad token is a 401
            raise AuthenticationFailed(str(e) or "invalid token") from None
        session = self.store.session(claims["jti"])
        if session is None or session["user_id"] != claims["sub"]:
            raise AuthenticationFailed("unknown session; log in at POST /auth/token")
        if session["revoked_at"] is not None:
            raise AuthenticationFailed("this session was ended (logout, or a password, role or site change); "
                                       "log in again at POST /auth/token")
        if now >= session["expires_at"]:
            raise AuthenticationFailed("the session reached its maximum length; log in again at POST /auth/token")
        if now - session["last_seen"] >= self.idle_timeout_seconds:
            session = self.store.session(claims["jti"], fresh=True)  # another worker may have seen it since
            if session is None or session["revoked_at"] is not None \
                    or now - session["last_seen"] >= self.idle_timeout_seconds:
                raise AuthenticationFailed(IDLE.format(minutes=round(self.idle_timeout_seconds / 60)))
        return claims, session

    def authenticate_token(self, token: str, now: float | None = None) -> Actor:
        """The actor of a valid token of an open session, as they are now; AuthenticationFailed otherwise.
        Each call counts as activity and extends the session (up to its absolute end)."""
        now = time.time() if now is None else now
        claims, session = self._open_session(token, now)
        if now - session["last_seen"] >= self.touch_every:
            self.store.touch_session(claims["jti"], now)
        return self.app.actor_for(claims["sub"])

    def logout(self, token: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        claims, _ = self._open_session(token, now)
        self.store.revoke_session(claims["jti"], now)
