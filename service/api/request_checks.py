"""Every request's text and lists, bounded and checked before any handler sees them.

The interceptor runs `violations` on each IntegrationService request, so every string field of
every RPC — ids, etags, names, reasons, URLs, tokens, credentials, a plugin config's keys and
values, and fields added later — is at most its bound (service.domain.validation.MAX_LENGTHS)
and holds no NUL, unpaired surrogate or control character: nothing PostgreSQL would refuse to
store or compare, and nothing an error message could echo at length. Repeated fields are
bounded the same way (MAX_ITEMS). The handlers' own checks (what a value means) come after.
"""

from __future__ import annotations

import math

from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from service.domain import validation
from service.domain.exceptions import FieldViolation


def violations(message: Message, prefix: str = "") -> list[FieldViolation]:
    """The bad strings and lists of `message`, with field paths such as
    `config.ics_feed.url`, `ids[3]` or `credentials.oauth.access_token`."""
    if isinstance(message, struct_pb2.Struct):
        return _struct(message, prefix.rstrip("."))
    found: list[FieldViolation] = []
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.is_repeated:
            found += _repeated(field, value, path)
        elif field.type == FieldDescriptor.TYPE_STRING:
            found += validation.text(value, path, validation.max_length(field.name))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            found += violations(value, f"{path}.")
    return found


def _repeated(field: FieldDescriptor, values: object, path: str) -> list[FieldViolation]:
    items = list(values)  # type: ignore[call-overload]
    limit = validation.MAX_ITEMS.get(field.name, validation.MAX_ITEMS_DEFAULT)
    if len(items) > limit:
        return [FieldViolation(path, f"must hold at most {limit} items", "TOO_MANY")]
    found: list[FieldViolation] = []
    for i, item in enumerate(items):
        if field.type == FieldDescriptor.TYPE_STRING:
            found += validation.text(item, f"{path}[{i}]", validation.max_length(field.name))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            found += violations(item, f"{path}[{i}].")
    return found


def _struct(struct: struct_pb2.Struct, path: str) -> list[FieldViolation]:
    """A plugin config: JSON that is stored as it is, so every key and string is checked, and
    numbers must be finite (PostgreSQL's jsonb has no NaN or Infinity)."""
    if len(struct.fields) > validation.MAX_ITEMS_DEFAULT:
        limit = validation.MAX_ITEMS_DEFAULT
        return [FieldViolation(path, f"must hold at most {limit} fields", "TOO_MANY")]
    found: list[FieldViolation] = []
    for i, (key, value) in enumerate(struct.fields.items()):
        bad_key = validation.text(key, f"{path}.<key {i}>", validation.MAX_TEXT)
        found += bad_key
        # A bad key is not echoed in the path: it may be long or hold control characters.
        found += _value(value, f"{path}.<key {i}>" if bad_key else f"{path}.{key}")
    return found


def _value(value: struct_pb2.Value, path: str) -> list[FieldViolation]:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return validation.text(value.string_value, path, validation.MAX_TEXT, lines=True)
    if kind == "number_value" and not math.isfinite(value.number_value):
        return [FieldViolation(path, "must be a finite number", "INVALID_NUMBER")]
    if kind == "struct_value":
        return _struct(value.struct_value, path)
    if kind == "list_value":
        items = value.list_value.values
        if len(items) > validation.MAX_ITEMS_DEFAULT:
            limit = validation.MAX_ITEMS_DEFAULT
            return [FieldViolation(path, f"must hold at most {limit} items", "TOO_MANY")]
        found: list[FieldViolation] = []
        for i, item in enumerate(items):
            found += _value(item, f"{path}[{i}]")
        return found
    return []
