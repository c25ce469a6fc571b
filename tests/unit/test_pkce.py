"""PKCE verifiers and challenges (RFC 7636) and one-time sign-in states."""

from __future__ import annotations

import base64

import pytest

from service.oauth import pkce


def test_the_rfc_7636_example_challenge() -> None:
    # RFC 7636 Appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce.challenge_of(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_fresh_pairs_are_valid_unique_and_hide_the_verifier() -> None:
    pairs = [pkce.new_pkce() for _ in range(50)]
    assert len({p.verifier for p in pairs}) == 50
    for pair in pairs:
        assert pkce.VERIFIER.fullmatch(pair.verifier)
        assert pair.challenge == pkce.challenge_of(pair.verifier)
        assert pair.method == "S256"
        assert pair.verifier not in repr(pair)


@pytest.mark.parametrize("verifier", ["short", "x" * 129, "has space" + "x" * 40, "é" * 43])
def test_invalid_verifiers_are_refused(verifier: str) -> None:
    with pytest.raises(ValueError):
        pkce.challenge_of(verifier)


@pytest.mark.parametrize("tenant", ["default", "acme-corp", "tenant with spaces", "ünï", "a.b"])
def test_a_state_names_its_tenant_and_is_stored_as_a_digest(tenant: str) -> None:
    state = pkce.new_state(tenant)
    assert pkce.parse_state(state) == (tenant, pkce.state_digest(state))
    assert len(pkce.state_digest(state)) == 32
    assert state != pkce.new_state(tenant)


@pytest.mark.parametrize(
    "state",
    [
        "",
        "no-dot",
        ".",
        "abc.",
        ".abc",
        "ZGVmYXVsdA.tooshort",
        "ZGVmYXVsdA." + "A" * 44,  # random part of the wrong length
        "!!!." + "A" * 43,  # tenant part not base64url
        base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("=") + "." + "A" * 43,  # not UTF-8
    ],
)
def test_anything_else_is_not_a_state(state: str) -> None:
    assert pkce.parse_state(state) is None
