"""Bearer tokens: HMAC-SHA256 signed, expiring, checked without a database round trip.

Format: base64url(payload JSON) "." base64url(HMAC-SHA256(key, payload)). The payload holds the user
id, the issue and expiry times and a random id. Whether the user is still active is checked against
the User aggregate on each request (TrialApplication.actor_for), so deactivation takes effect at once.

A token that verified once is remembered with its user and expiry, so the next request with it
skips the HMAC and the decoding; the expiry is still checked every time. Only the exact string that
verified is remembered, so a forged or altered token never matches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    pass


class TokenService:
    MAX_REMEMBERED = 10_000

    def __init__(self, key: bytes, ttl_seconds: int):
        self._key = key
        self.ttl_seconds = ttl_seconds
        self._verified: dict[str, tuple[str, float]] = {}

    def issue(self, user_id: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        payload = json.dumps(
            {"sub": user_id, "iat": int(now), "exp": int(now) + self.ttl_seconds, "jti": secrets.token_hex(8)},
            separators=(",", ":"),
        ).encode()
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    def verify(self, token: str, now: float | None = None) -> str:
        """Return the user id of a valid token; raise TokenError otherwise."""
        now = time.time() if now is None else now
        known = self._verified.get(token)
        if known is not None:
            user_id, expires = known
            if now >= expires:
                raise TokenError("token expired; request a new one at POST /auth/token")
            return user_id
        try:
            payload_b64, mac_b64 = token.split(".")
            payload = _unb64(payload_b64)
            mac = _unb64(mac_b64)
        except (ValueError, TypeError):
            raise TokenError("malformed token") from None
        if not hmac.compare_digest(mac, hmac.new(self._key, payload, hashlib.sha256).digest()):
            raise TokenError("invalid token signature")
        claims = json.loads(payload)
        if now >= claims["exp"]:
            raise TokenError("token expired; request a new one at POST /auth/token")
        if len(self._verified) >= self.MAX_REMEMBERED:
            self._verified.clear()
        self._verified[token] = (claims["sub"], claims["exp"])
        return claims["sub"]
