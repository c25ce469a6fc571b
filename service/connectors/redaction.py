"""Keeping secrets out of what is logged and stored about providers' answers.

A provider's answer is quoted in logs and errors when it is unusable (an excerpt of the body,
the provider's own error text), and some providers echo the request back — its Authorization
header included. `Redactor` removes two things from any such text: the exact secrets this
request sent (the integration's own token, API key, password, and the base64 `user:pass`
of Basic authentication), and anything shaped like a credential whoever it belongs to
(`Bearer …`, `Basic …`, `"authorization": "…"`, `access_token=…`). Pure Python, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"
#: Shorter secrets are not searched for (they would blank out ordinary words); the patterns
#: below still catch them where they are presented as credentials.
MIN_SECRET = 4

#: An authorization scheme followed by its credentials: a run of token characters with a
#: digit, a punctuation character or an inner capital, as tokens and base64 have and words
#: ("Basic authentication") do not.
_SCHEME = re.compile(
    r"(?i)\b(bearer|basic|digest|negotiate)(\s+)"
    r"((?=[A-Za-z0-9._~+/=:-]*(?:[0-9._~+/=:-]|(?<=.)(?-i:[A-Z])))[A-Za-z0-9._~+/=:-]{4,})"
)
#: A credential-named key or header and its value, in headers, JSON, query strings or forms.
_NAMED = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|api[-_]?key|access[-_]?token|"
    r"refresh[-_]?token|id[-_]?token|client[-_]?secret|password|passwd|secret)"
    r"(\\?[\"']?\s*[:=]\s*\\?[\"']?)"
    r"((?:bearer|basic|digest|token)\s+)?([^\s\"'\\,;&}<>]{1,})"
)


class Redactor:
    """Removes `secrets` (and anything shaped like a credential) from text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET:
                variants.add(secret)
                escaped = json.dumps(secret)[1:-1]  # as a JSON string would echo it
                variants.update((escaped, escaped.replace("/", "\\/")))
        # Longest first, so a secret that contains another is removed whole.
        self.secrets = tuple(sorted(variants, key=len, reverse=True))

    @classmethod
    def for_headers(cls, headers: Mapping[str, str]) -> Redactor:
        """A redactor for the credential headers a request sent."""
        return cls(secrets_in_headers(headers))

    def text(self, value: str) -> str:
        """`value` without the secrets and credential-shaped parts."""
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        value = _SCHEME.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", value)
        return _NAMED.sub(lambda m: f"{m[1]}{m[2]}{m[3] or ''}{REDACTED}", value)

    def value(self, value: Any) -> Any:
        """`text` applied to every string inside a JSON-like value (a log context)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def secrets_in_headers(headers: Mapping[str, str]) -> list[str]:
    """The secret parts of credential header values: the whole value, the token after its
    scheme, and for Basic the base64 text, the decoded `user:pass` and the password."""
    found: list[str] = []
    for value in headers.values():
        found.append(value)
        scheme, _, rest = value.partition(" ")
        if not rest:
            continue
        found.append(rest)
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(rest, validate=True).decode()
            except (binascii.Error, ValueError):
                continue
            found.append(pair)
            found.append(pair.partition(":")[2])
    return found


#: Pattern-only redaction, for text whose exact secrets are not known here.
SHAPES = Redactor()
