"""Password policy per NIST SP 800-63B §5.1.1.2: at least 12 characters, not only whitespace, not the
username, and not a commonly used password. The list of common passwords is the one shipped by the
``zxcvbn`` package (Dropbox's password strength estimator; 30,000 most frequent passwords from leaked
password sets), read once; no list is typed here."""

from __future__ import annotations

import functools
from typing import Any

from domain.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 1000


@functools.cache
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def _squashed(text: str) -> str:
    return "".join(text.split()).lower()


def check_password(password: Any, username: Any = None, field: str = "password") -> None:
    """Raise InvalidInput naming ``field`` when the password breaks the policy."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise InvalidInput.one(field, f"a password of at least {MIN_LENGTH} characters is required")
    if len(password) > MAX_LENGTH:
        raise InvalidInput.one(field, f"at most {MAX_LENGTH} characters")
    if not password.strip():
        raise InvalidInput.one(field, "a password cannot be only whitespace")
    if isinstance(username, str) and username.strip() and _squashed(username) in _squashed(password) \
            and len(_squashed(password)) - len(_squashed(username)) < MIN_LENGTH:
        raise InvalidInput.one(field, "a password cannot be (or be built on) the username")
    lowered = password.lower()
    if lowered in common_passwords() or _squashed(password) in common_passwords():
        raise InvalidInput.one(field, "this is a commonly used password (it appears in lists of leaked "
                                      "passwords); choose another")
