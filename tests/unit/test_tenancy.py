"""API keys are parsed strictly, kept only as digests, and a caller is one key's tenant or
UNAUTHENTICATED: a configuration mistake can never turn authentication off or mean something
else than it says."""

from __future__ import annotations

import hashlib

import pytest

from service import config
from service.domain.exceptions import Unauthenticated
from service.tenancy import Tenancy, parse_api_keys

KEY_A = "ka-0123456789abcdef"
KEY_B = "kb-0123456789abcdef"


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (",", "empty"),
        (" ", "spaces"),
        ("   ", "spaces"),
        (f"{KEY_A}=tenant-a,", "empty"),
        (f"{KEY_A} = tenant-a", "spaces"),
        (f" {KEY_A}=tenant-a", "spaces"),
        (f"{KEY_A}=tenant-a;{KEY_B}=tenant-b", ";"),
        (f"{KEY_A}=tenant-a,{KEY_A}=tenant-b", "repeats"),
        (f"{KEY_A}=a,sha256:{hashlib.sha256(KEY_A.encode()).hexdigest()}=b", "repeats"),
        (KEY_A, "not 'key=tenant'"),
        ("short=tenant-a", "16-512"),
        (f"{KEY_A}=", "tenant"),
        (f"{KEY_A}=tenant a", "spaces"),
        (f"{KEY_A}=ten/ant", "tenant"),
        ("sha256:abc=tenant-a", "16-512"),
        ("k\u00e9y-0123456789abcdef=tenant-a", "16-512"),
    ],
)
def test_malformed_key_lists_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        parse_api_keys(text)
    assert KEY_A not in str(refused.value)  # a message never quotes a key


def test_a_caller_is_the_tenant_of_its_key() -> None:
    tenancy = Tenancy("default", f"{KEY_A}=tenant-a,{KEY_B}=tenant-b")
    assert tenancy.required
    assert tenancy.tenant(bearer(KEY_A)) == "tenant-a"
    assert tenancy.tenant((("authorization", f"bearer {KEY_B}"),)) == "tenant-b"


def test_hashed_keys_work_like_plain_ones() -> None:
    digest = hashlib.sha256(KEY_A.encode()).hexdigest()
    tenancy = Tenancy("default", f"sha256:{digest}=tenant-a")
    assert tenancy.tenant(bearer(KEY_A)) == "tenant-a"
    with pytest.raises(Unauthenticated):
        tenancy.tenant(bearer(f"sha256:{digest}"))  # the digest itself is not a key


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        bearer("nope-0123456789abcdef"),
        (("authorization", f"Basic {KEY_A}"),),
        (("authorization", KEY_A),),
        (("authorization", f"Bearer {KEY_A} extra"),),
        # Two authorization headers: ambiguous, so neither counts (the last used to win).
        (("authorization", "Bearer nope-0123456789abcdef"), ("authorization", f"Bearer {KEY_A}")),
        (("authorization", f"Bearer {KEY_A}"), ("authorization", f"Bearer {KEY_A}")),
    ],
)
def test_anything_but_one_valid_bearer_key_is_unauthenticated(
    metadata: tuple[tuple[str, str], ...],
) -> None:
    with pytest.raises(Unauthenticated):
        Tenancy("default", f"{KEY_A}=tenant-a").tenant(metadata)


@pytest.mark.parametrize("keys", [",", "   ", f"{KEY_A} = tenant-a", "a=b;c=d"])
def test_a_bad_key_list_stops_the_start_with_one_line(
    keys: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        config.load(["--api-keys", keys], environ={})
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m service: error: API keys")
    assert "Traceback" not in err


def test_running_without_keys_takes_an_explicit_setting() -> None:
    with pytest.raises(ValueError, match="INTEGRATIONS_ALLOW_UNAUTHENTICATED"):
        config.load([], environ={}).check_authentication()
    with pytest.raises(ValueError, match="not both"):
        config.load(
            ["--api-keys", f"{KEY_A}=a", "--allow-unauthenticated", "true"], environ={}
        ).check_authentication()
    config.load(["--allow-unauthenticated", "true"], environ={}).check_authentication()
    config.load([], environ={"INTEGRATIONS_API_KEYS": f"{KEY_A}=a"}).check_authentication()


@pytest.mark.parametrize("mapping", [",", "   ", " , ,", ",,"])
def test_client_certificate_tenants_that_name_no_one_are_refused(mapping: str) -> None:
    # Set but empty would leave no key and no certificate required: every caller let in.
    with pytest.raises(ValueError, match="name none"):
        Tenancy("default", "", mapping)


def test_a_client_certificate_mapped_to_a_malformed_tenant_is_refused() -> None:
    with pytest.raises(ValueError, match="the tenant must be"):
        Tenancy("default", "", "reporting=bad tenant!")


def test_a_client_certificate_decides_its_tenant_without_a_key() -> None:
    tenancy = Tenancy("default", f"{KEY_A}=tenant-a", "reporting=tenant-r")
    assert tenancy.tenant((), certificate_name="reporting") == "tenant-r"


def test_mutual_tls_with_certificate_tenants_that_name_no_one_will_not_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = {
        "INTEGRATIONS_TLS_CERT": "server.pem",
        "INTEGRATIONS_TLS_KEY": "server.key",
        "INTEGRATIONS_TLS_CLIENT_CA": "clients.pem",
        "INTEGRATIONS_TLS_CLIENT_TENANTS": " , ",
    }
    with pytest.raises(SystemExit):
        config.load([], environ)
    assert "name none" in capsys.readouterr().err
