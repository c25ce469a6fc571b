"""Page tokens are opaque, bound to their list, filter and tenant, and cannot be forged: a
token is only read once its HMAC (keys derived from the credential key ring) checks out."""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from service.api.page_tokens import PageTokens
from service.domain.exceptions import InvalidArgument
from service.storage.sealing import KeyRing


def ring(*ids: str) -> KeyRing:
    return KeyRing(tuple((i, secrets.token_bytes(32)) for i in ids))


def reason(error: pytest.ExceptionInfo[InvalidArgument]) -> str:
    return error.value.violations[0].reason


TOKENS = PageTokens.from_key_ring(ring("k1"))


def forge(payload: object, tag: bytes = b"\0" * 16) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    text = payload if isinstance(payload, str) else json.dumps(payload)
    return f"{b64(text.encode())}.{b64(tag)}"


def test_a_token_round_trips_within_its_list_filter_and_tenant() -> None:
    token = TOKENS.encode("t1", "integrations", {"s": ["ACTIVE"]}, ["2026-01-01", "id"])
    assert TOKENS.decode(token, "t1", "integrations", {"s": ["ACTIVE"]}) == ["2026-01-01", "id"]
    assert TOKENS.decode("", "t1", "integrations", {}) is None
    for tenant, kind, filters in [
        ("t1", "integrations", {"s": ["PAUSED"]}),
        ("t2", "integrations", {"s": ["ACTIVE"]}),
        ("t1", "events", {"s": ["ACTIVE"]}),
    ]:
        with pytest.raises(InvalidArgument) as changed:
            TOKENS.decode(token, tenant, kind, filters)
        assert reason(changed) == "PAGE_TOKEN_MISMATCH"


@pytest.mark.parametrize(
    "token",
    [
        "%%%not-a-token",
        "abc",
        "a.b.c",
        "x" * 5000,
        # The old unkeyed format, and well-formed payloads with a made-up tag: forgeries.
        base64.urlsafe_b64encode(b'{"f": "0", "p": [1]}').decode(),
        forge({"f": "0", "p": [2**80]}),
        forge({"f": "0", "p": json.loads("[" * 40 + "]" * 40)}),
    ],
)
def test_malformed_and_forged_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        TOKENS.decode(token, "t1", "events", {"id": "x"})
    assert reason(refused) == "MALFORMED_PAGE_TOKEN"


def test_deeply_nested_json_is_never_parsed_without_a_valid_tag() -> None:
    nested = "[" * 100_000 + "]" * 100_000  # a RecursionError if it were ever parsed
    token = f"{base64.urlsafe_b64encode(nested.encode()).decode()}.AAAA"
    with pytest.raises(InvalidArgument):  # refused by its length before base64 or JSON
        TOKENS.decode(token, "t1", "events", {})
    small = '{"f": "0", "p": ' + "[" * 1000 + "]" * 1000 + "}"
    with pytest.raises(InvalidArgument):  # refused by its tag before JSON
        TOKENS.decode(forge(small), "t1", "events", {})


@pytest.mark.parametrize(
    ("value_type", "position"),
    [
        (int, [2**63]),
        (int, [-1]),
        (int, [True]),
        (int, ["7"]),
        (int, [1, 2]),
        (str, ["a\x00b"]),
        (str, ["\ud800"]),
        (str, [7]),
    ],
)
def test_signed_positions_are_still_checked(value_type: type, position: list[object]) -> None:
    token = TOKENS.encode("t1", "records", {"id": "x"}, position)
    with pytest.raises(InvalidArgument) as refused:
        TOKENS.decode_one(token, "t1", "records", {"id": "x"}, value_type)
    assert reason(refused) == "MALFORMED_PAGE_TOKEN"


@pytest.mark.parametrize(
    "position",
    [
        ["99999-01-01T00:00:00+00:00", "b6f1c7b0-6f2e-4b8e-9a43-2a1e3f0c9d11"],
        ["2026-01-01", 5],
        ["2026-01-01T00:00:00", "b6f1c7b0-6f2e-4b8e-9a43-2a1e3f0c9d11"],
        ["x"],
        "nope",
    ],
)
def test_keyset_positions_are_checked(position: object) -> None:
    token = TOKENS.encode("t1", "integrations", {}, position)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        TOKENS.decode_keyset(token, "t1", "integrations", {})


def test_every_key_of_the_ring_verifies_and_the_first_signs() -> None:
    old, new = ring("old"), ring("new")
    before = PageTokens.from_key_ring(old).encode("t", "events", {}, [5])
    rotated = PageTokens.from_key_ring(KeyRing(new.keys + old.keys))
    assert rotated.decode_one(before, "t", "events", {}, int) == 5
    after = rotated.encode("t", "events", {}, [6])
    assert PageTokens.from_key_ring(new).decode_one(after, "t", "events", {}, int) == 6
    with pytest.raises(InvalidArgument):  # another deployment's tokens do not verify
        PageTokens.from_key_ring(ring("other")).decode(before, "t", "events", {})
