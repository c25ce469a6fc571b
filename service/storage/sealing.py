"""Sealing credentials at rest: AES-256-GCM with a key ring, so keys can rotate.

A sealed value is `version(1) | key-id length(1) | key id | nonce(12) | ciphertext+tag`. The
integration's identity is bound as associated data, so a sealed value copied to another row
does not open. We use `cryptography`'s AESGCM rather than anything of our own; only the framing
(which key sealed it) is ours.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = 1
_NONCE = 12


class SealError(Exception):
    """A sealed value cannot be opened: unknown key, tampered, or bound to another row."""


@dataclass(frozen=True)
class KeyRing:
    """Named 256-bit keys; the first seals, all open."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a key ring needs at least one key")
        for key_id, key in self.keys:
            if len(key) != 32:
                raise ValueError(f"key {key_id!r} must be 32 bytes (AES-256)")
            if not key_id or len(key_id.encode()) > 255 or ":" in key_id or "," in key_id:
                raise ValueError(f"bad key id {key_id!r}")

    @property
    def primary_id(self) -> str:
        return self.keys[0][0]

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        key_id, key = self.keys[0]
        nonce = os.urandom(_NONCE)  # fresh per encryption: GCM must never reuse one per key
        kid = key_id.encode()
        return (
            bytes([_VERSION, len(kid)])
            + kid
            + nonce
            + AESGCM(key).encrypt(nonce, plaintext, associated)
        )

    def key_id_of(self, sealed: bytes) -> str:
        if len(sealed) < 2 or sealed[0] != _VERSION:
            raise SealError("unknown sealed format")
        return sealed[2 : 2 + sealed[1]].decode()

    def resealed(self, sealed: bytes, associated: bytes) -> bytes | None:
        """`sealed` sealed again with the primary key; None when it already is (a re-key)."""
        if self.key_id_of(sealed) == self.primary_id:
            return None
        return self.seal(self.open(sealed, associated), associated)

    def open(self, sealed: bytes, associated: bytes) -> bytes:
        key_id = self.key_id_of(sealed)
        key = dict(self.keys).get(key_id)
        if key is None:
            raise SealError(f"no key {key_id!r} in the key ring")
        start = 2 + sealed[1]
        nonce, body = sealed[start : start + _NONCE], sealed[start + _NONCE :]
        try:
            return AESGCM(key).decrypt(nonce, body, associated)
        except InvalidTag:
            raise SealError(
                "sealed value does not open (tampered or bound to another row)"
            ) from None

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """'id:base64key,id2:base64key' (newest first)."""
        keys = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            key_id, _, encoded = part.partition(":")
            try:
                key = base64.b64decode(encoded, validate=True)
            except ValueError:
                raise ValueError(f"key {key_id!r} is not valid base64") from None
            keys.append((key_id, key))
        return cls(tuple(keys))

    @classmethod
    def local(cls, path: Path) -> KeyRing:
        """The laptop default: a key ring file beside the embedded database, made on first
        use with owner-only permissions."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = base64.b64encode(secrets.token_bytes(32)).decode()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"local-1:{key}\n")
        return cls.parse(path.read_text().strip())


def row_binding(tenant_id: str, integration_id: object) -> bytes:
    """The associated data that ties sealed credentials to their row."""
    return f"{tenant_id}/{integration_id}".encode()
