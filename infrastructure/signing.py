"""The Ed25519 key that signs tree heads: from TRIALAUDIT_SIGNING_KEY, or a file made on first start.

The file ``signing.key`` in the data directory holds the 32 raw private-key bytes in hex and is
created with mode 0600 (readable only by its owner), the same way as the other secrets.
"""

from __future__ import annotations

import base64
import binascii
import functools
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from infrastructure.secrets import load_or_create

KEY_FILE = "signing.key"


class Ed25519Signer:
    def __init__(self, private_key: bytes):
        if len(private_key) != 32:
            raise ValueError("an Ed25519 private key has 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(private_key)
        self.public_key: bytes = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@functools.lru_cache(maxsize=16)
def _public_key(public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key)


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is the Ed25519 signature of ``data`` under the raw ``public_key``. The parsed key
    is kept (a few keys at most: ours and those of heads kept elsewhere), since sealing checks the tail's
    signature in every transaction that finds the log extended by another process."""
    try:
        _public_key(bytes(public_key)).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def parse_key(text: str) -> bytes:
    """32 raw bytes given as 64 hex digits or as base64."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ValueError("TRIALAUDIT_SIGNING_KEY must be 32 bytes in hex or base64") from None
    if len(raw) != 32:
        raise ValueError(f"TRIALAUDIT_SIGNING_KEY must be 32 bytes, not {len(raw)}")
    return raw


def load_signer(signing_key: str | None, data_dir: Path) -> Ed25519Signer:
    if signing_key:
        return Ed25519Signer(parse_key(signing_key))
    return Ed25519Signer(load_or_create(data_dir / KEY_FILE, 32))
