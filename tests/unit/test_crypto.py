"""Sealing credentials: AES-256-GCM bound to the row, with rotating keys."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from service.storage.sealing import KeyRing, SealError


def ring(*ids: str) -> KeyRing:
    return KeyRing(tuple((i, os.urandom(32)) for i in ids))


def test_sealed_value_opens_with_the_same_binding_only() -> None:
    keys = ring("k1")
    sealed = keys.seal(b"hunter2", b"tenant/row-1")
    assert b"hunter2" not in sealed
    assert keys.open(sealed, b"tenant/row-1") == b"hunter2"
    with pytest.raises(SealError):
        keys.open(sealed, b"tenant/row-2")


def test_every_seal_uses_a_fresh_nonce() -> None:
    keys = ring("k1")
    assert keys.seal(b"same", b"a") != keys.seal(b"same", b"a")


def test_tampering_is_detected() -> None:
    keys = ring("k1")
    sealed = bytearray(keys.seal(b"secret", b"a"))
    sealed[-1] ^= 1
    with pytest.raises(SealError):
        keys.open(bytes(sealed), b"a")


def test_rotation_new_key_seals_old_keys_still_open() -> None:
    old = ring("k1")
    sealed_old = old.seal(b"v", b"a")
    rotated = KeyRing((("k2", os.urandom(32)), *old.keys))
    assert rotated.key_id_of(rotated.seal(b"v", b"a")) == "k2"
    assert rotated.open(sealed_old, b"a") == b"v"
    with pytest.raises(SealError, match="no key 'k2'"):
        old.open(rotated.seal(b"v", b"a"), b"a")


def test_parse_and_reject_bad_rings() -> None:
    k = base64.b64encode(os.urandom(32)).decode()
    assert KeyRing.parse(f"a:{k}, b:{k}").primary_id == "a"
    with pytest.raises(ValueError, match="32 bytes"):
        KeyRing.parse("a:" + base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="base64"):
        KeyRing.parse("a:not base64!")
    with pytest.raises(ValueError):
        KeyRing.parse("")


def test_local_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    first = KeyRing.local(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert KeyRing.local(path) == first
