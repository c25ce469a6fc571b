"""Synced records made ready to store, so that one bad record never blocks the others.

A provider may send what PostgreSQL cannot hold: NUL characters (in text or in keys), lone
UTF-16 surrogates, NaN or infinite numbers, integers too long to write down, records of any
size. What can be made storable without changing what the record says is: a NUL or a lone
surrogate becomes U+FFFD, the Unicode replacement character, which says exactly that a
character could not be represented. What cannot — a number that is not a number, an id that
cannot be stored, a record over the size limit — is skipped, counted and given as an example
on the sync run, and the rest of the page is stored. Pure: no I/O; the engine runs it off the
event loop (it walks every record).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

#: Lone UTF-16 surrogates (they cannot be encoded as UTF-8, so PostgreSQL cannot store them).
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class RecordLimits:
    """What one record may be (from the deployment's settings)."""

    max_bytes: int = 1 << 20
    """Largest record (its JSON, UTF-8) stored; a bigger one is skipped."""
    max_id_chars: int = 1024
    """Longest record id stored; a longer one is skipped."""
    max_wire_bytes: int = (4 << 20) - (64 << 10)
    """Largest record as the API sends it (a protobuf Struct, up to about six times its JSON:
    a list of small numbers); gRPC clients refuse messages over 4 MiB by default, so a record
    bigger than that less some headroom could never be read, and is skipped."""


#: The most a record's Struct encoding outgrows its JSON (see RecordLimits.max_wire_bytes).
_WIRE_GROWTH = 6

#: Records per pickled chunk of a page packed for its trip back from a worker process.
PACKED_CHUNK = 1000


@dataclass(frozen=True)
class PreparedPage:
    """A page's records as they will be stored, and what had to be skipped."""

    #: Record id -> the record's JSON text, every one storable.
    records: dict[str, str]
    #: Ids the provider reported deleted (storable ones).
    deleted: list[str]
    #: Records skipped (and earlier mentions a later record with the same id replaced).
    rejected: int = 0
    #: One skipped record and why.
    example: str = field(default="")
    #: The records instead, pickled in chunks (`packed_up`); `chunks` unpickles them.
    packed: tuple[bytes, ...] = field(default=(), repr=False)
    #: How many records `packed` holds.
    packed_count: int = 0

    @property
    def count(self) -> int:
        """How many records the page stores."""
        return self.packed_count if self.packed else len(self.records)

    def packed_up(self) -> PreparedPage:
        """This page with its records pickled in chunks of `PACKED_CHUNK`, for the trip back
        from the worker process that prepared it. The pool unpickles what comes back in one
        call, which holds the GIL, and with it the event loop, until it is done: ~0.4 s for a
        page of 100,000 records. A chunk takes a few milliseconds, and `chunks` unpickles
        each only when the engine writes it."""
        if len(self.records) <= PACKED_CHUNK:
            return self
        items = list(self.records.items())
        packed = tuple(
            pickle.dumps(dict(items[i : i + PACKED_CHUNK]), pickle.HIGHEST_PROTOCOL)
            for i in range(0, len(items), PACKED_CHUNK)
        )
        return replace(self, records={}, packed=packed, packed_count=len(items))

    def chunks(self) -> Iterator[dict[str, str]]:
        """The records, a chunk at a time, in the page's order."""
        if not self.packed:
            yield self.records
        for chunk in self.packed:
            yield pickle.loads(chunk)  # what packed_up made, in a worker of this process


def prepare(
    records: Mapping[str, Mapping[str, Any]],
    deleted: Sequence[str],
    limits: RecordLimits,
    *,
    superseded: int = 0,
    superseded_example: str = "",
) -> PreparedPage:
    """The page's records made storable (see the module doc). `superseded` counts records
    the connector dropped because a later one on the same page had the same id."""
    ready: dict[str, str] = {}
    rejected, example = superseded, superseded_example
    for record_id, data in records.items():
        why = _id_problem(record_id, limits)
        text = None if why else _encode(data)
        if text is None and not why:
            why = "a number is NaN, infinite or too long to store"
        elif text is not None and len(text) > limits.max_bytes // 4:
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > limits.max_bytes:
                why = f"it is {size} bytes, over the limit of {limits.max_bytes}"
            elif size * _WIRE_GROWTH > limits.max_wire_bytes:
                wire = struct_size(data)
                if wire > limits.max_wire_bytes:
                    why = (
                        f"the API would send it as {wire} bytes, over the limit of "
                        f"{limits.max_wire_bytes} a client can receive"
                    )
        if why:
            rejected += 1
            example = example or f"record {_shown(record_id)}: {why}"
            continue
        assert text is not None
        ready[record_id] = text
    gone = [record_id for record_id in deleted if not _id_problem(record_id, limits)]
    return PreparedPage(ready, gone, rejected, example)


#: orjson hands what it does not know as JSON (datetimes, dataclasses, subclasses of the JSON
#: types) to the standard library's encoder, which decides about them as it always has.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _encode(data: Mapping[str, Any]) -> str | None:
    """The record as JSON PostgreSQL accepts, or None when it cannot be written down
    faithfully (NaN, infinity, an integer past Python's conversion limit).

    orjson writes most records, several times faster than the standard library: what it
    writes has the same values, and what it cannot write faithfully it refuses (lone
    surrogates, integers past 64 bits, keys that are not strings, anything not a JSON type)
    except NaN and infinity, which it writes as null. So a record with a null in it, or a NUL
    to replace, or one orjson refuses, is written by the standard library, as it always was."""
    try:
        raw = orjson.dumps(data, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is one
        raw = None
    if raw is not None and b"null" not in raw and b"\\u0000" not in raw:
        return raw.decode()
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return None
    if "\\u0000" in text or _SURROGATE.search(text):
        text = json.dumps(_clean(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text


def _clean(value: Any) -> Any:
    """`value` with every NUL and lone surrogate, in keys and in text, replaced."""
    if isinstance(value, str):
        return _SURROGATE.sub(REPLACEMENT, value.replace("\x00", REPLACEMENT))
    if isinstance(value, Mapping):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _id_problem(record_id: str, limits: RecordLimits) -> str:
    if not isinstance(record_id, str) or not record_id:
        return "it has no id"
    if len(record_id) > limits.max_id_chars:
        return f"its id is longer than {limits.max_id_chars} characters"
    if "\x00" in record_id or _SURROGATE.search(record_id):
        return "its id holds characters that cannot be stored"
    return ""


def _shown(record_id: str) -> str:
    """A record id safe and short enough for a message."""
    printable = _SURROGATE.sub(REPLACEMENT, str(record_id).replace("\x00", REPLACEMENT))
    return repr(printable[:80] + ("…" if len(printable) > 80 else ""))


def struct_size(data: Mapping[str, Any]) -> int:
    """The size of `data` encoded as a protobuf `google.protobuf.Struct` (what the API sends a
    record as), computed without building it: Struct is a map of string to Value, Value a
    oneof of null, number (a double), string, bool, Struct and ListValue."""
    return sum(_field(_field(_text(key)) + _field(_value(value))) for key, value in data.items())


def _value(value: Any) -> int:
    """The size of a Value's body (its one field, tag included)."""
    if value is None or isinstance(value, bool):
        return 2  # null_value (enum) or bool_value: a tag and a one-byte varint
    if isinstance(value, int | float):
        return 9  # number_value: a tag and eight bytes
    if isinstance(value, str):
        return _field(_text(value))
    if isinstance(value, Mapping):
        return _field(struct_size(value))
    if isinstance(value, list | tuple):
        return _field(sum(_field(_value(item)) for item in value))
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _text(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _field(length: int) -> int:
    """A length-delimited field of `length` bytes: its tag, its length, its bytes."""
    return 1 + _varint(length) + length


def _varint(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)
