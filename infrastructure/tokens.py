"""Bearer tokens: JSON Web Tokens (PyJWT), HS256 only, with required ``exp``, ``iat``, ``sub`` and ``jti``.

The token only says who and which session (``jti``); whether that session is still open (idle timeout,
absolute end, logout, revocation) is checked against the server-side session rows on every request
(application.sessions). ``exp`` is the session's absolute end.

Whatever a client sends (malformed JSON, ``exp`` of 1e400 or NaN, another algorithm, ``alg: none``,
missing or mistyped claims), ``claims`` either returns the claims of a token this server signed or
raises TokenError: never anything else.

A token that verified once is remembered with its claims, so the next request with it skips the
signature check; the expiry is still checked every time. Only the exact string that verified is
remembered, so a forged or altered token never matches.
"""

from __future__ import annotations

import math
import secrets
import time
from typing import Any

import jwt

ALGORITHM = "HS256"
REQUIRED = ("exp", "iat", "sub", "jti")


class TokenError(Exception):
    pass


class TokenService:
    MAX_REMEMBERED = 10_000

    def __init__(self, key: bytes, ttl_seconds: int):
        self._key = key
        #: the absolute lifetime of a token (its ``exp``)
        self.ttl_seconds = ttl_seconds
        self._verified: dict[str, dict[str, Any]] = {}

    def issue_claims(self, user_id: str, now: float | None = None) -> tuple[str, dict[str, Any]]:
        now = time.time() if now is None else now
        claims = {"sub": str(user_id), "iat": int(now), "exp": int(now) + self.ttl_seconds, "jti": secrets.token_hex(16)}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), claims

    def issue(self, user_id: str, now: float | None = None) -> str:
        return self.issue_claims(user_id, now)[0]

    def claims(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The claims of a valid token this server signed; TokenError otherwise."""
        now = time.time() if now is None else now
        known = self._verified.get(token)
        if known is None:
            known = self._decode(token)
            if len(self._verified) >= self.MAX_REMEMBERED:
                self._verified.clear()
            self._verified[token] = known
        if now >= known["exp"]:
            raise TokenError("token expired: the session reached its maximum length; log in again at POST /auth/token")
        return known

    def verify(self, token: str, now: float | None = None) -> str:
        """The user id of a valid token; TokenError otherwise."""
        return self.claims(token, now)["sub"]

    def _decode(self, token: Any) -> dict[str, Any]:
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise TokenError("malformed token")
        try:
            # expiry is checked by claims() against the caller's clock, so not here
            claims = jwt.decode(
                token, self._key, algorithms=[ALGORITHM],
                options={"require": list(REQUIRED), "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except Exception:  # noqa: BLE001 - whatever the bytes, an invalid token and never a 500
            raise TokenError("invalid token") from None
        exp, iat, sub, jti = (claims.get(name) for name in REQUIRED)
        for value in (exp, iat):
            # bool is an int; a float may be NaN or infinite (1e400): neither is an instant
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TokenError("invalid token")
        if not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti or len(jti) > 100:
            raise TokenError("invalid token")
        return {"sub": sub, "jti": jti, "iat": float(iat), "exp": float(exp)}
