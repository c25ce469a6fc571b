"""Making synced records storable: what is sanitised, what is skipped, and why."""

from __future__ import annotations

import json
import math
import pickle
from typing import Any

from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.records import (
    PACKED_CHUNK,
    REPLACEMENT,
    RecordLimits,
    prepare,
    struct_size,
)

LIMITS = RecordLimits(max_bytes=2048, max_id_chars=64)


def test_nul_and_lone_surrogates_become_the_replacement_character_in_text_and_keys() -> None:
    page = prepare({"a": {"na\x00me": "A\x00da", "note": "x\ud800y", "n": [1, "\x00"]}}, [], LIMITS)
    assert page.rejected == 0
    stored = json.loads(page.records["a"])
    assert stored == {
        f"na{REPLACEMENT}me": f"A{REPLACEMENT}da",
        "note": f"x{REPLACEMENT}y",
        "n": [1, REPLACEMENT],
    }


def test_values_that_cannot_be_written_down_skip_the_record_and_keep_the_others() -> None:
    page = prepare(
        {
            "ok": {"v": 1.5, "big": 10**300},
            "nan": {"v": float("nan")},
            "inf": {"v": float("-inf")},
            "digits": {"v": 10**5000},
        },
        [],
        LIMITS,
    )
    assert list(page.records) == ["ok"]
    assert json.loads(page.records["ok"]) == {"v": 1.5, "big": 10**300}
    assert page.rejected == 3
    assert page.example == "record 'nan': a number is NaN, infinite or too long to store"


def test_ids_that_cannot_be_stored_are_skipped_and_deletions_of_them_ignored() -> None:
    page = prepare({"n\x00id": {}, "x" * 65: {}, "": {}, "ok": {}}, ["gone", "b\ud800d"], LIMITS)
    assert list(page.records) == ["ok"]
    assert page.deleted == ["gone"]
    assert page.rejected == 3
    assert "its id holds characters that cannot be stored" in page.example


def test_a_record_over_the_size_limit_is_skipped_with_its_size() -> None:
    page = prepare({"big": {"blob": "é" * 1500}, "small": {"blob": "é"}}, [], LIMITS)
    assert list(page.records) == ["small"]
    assert page.example.startswith("record 'big': it is 30")
    assert "over the limit of 2048" in page.example


def test_superseded_mentions_count_as_rejected_and_are_the_example_first() -> None:
    page = prepare(
        {"nan": {"v": float("nan")}},
        [],
        LIMITS,
        superseded=2,
        superseded_example="record 'dup': a later record with the same id on the same page "
        "replaced it",
    )
    assert page.rejected == 3 and page.example.startswith("record 'dup'")


_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=8) | st.sampled_from(
    ["null", "a\x00b", "\ud800", "é\udfff"]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | _TEXT
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


def _as_stored(value: Any) -> Any:
    """`value` with every NUL and lone surrogate replaced, as the module doc promises."""
    if isinstance(value, str):
        lost = {"\x00", *map(chr, range(0xD800, 0xE000))}
        return "".join(REPLACEMENT if c in lost else c for c in value)
    if isinstance(value, dict):
        return {_as_stored(k): _as_stored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_stored(v) for v in value]
    return value


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


@settings(max_examples=150, deadline=None)
@given(_VALUES)
def test_a_record_is_stored_with_exactly_its_values_or_skipped(value: Any) -> None:
    # Two encoders write records (a fast one, the standard library for what it cannot do
    # faithfully): whichever wrote it, the stored JSON holds the same values.
    page = prepare({"r": {"v": value}}, [], RecordLimits())
    if _finite(value):
        assert json.loads(page.records["r"]) == {"v": _as_stored(value)}
    else:
        assert page.records == {} and page.rejected == 1


def _storable(value: Any) -> Any:
    """`value` as a Struct can hold it: text without lone surrogates, finite numbers."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode()
    if isinstance(value, float) and not math.isfinite(value):
        return 0.0
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _VALUES, max_size=6))
def test_a_records_wire_size_is_what_protobuf_encodes(record: dict[str, Any]) -> None:
    record = _storable(record)
    encoded = struct_pb2.Struct()
    encoded.update(record)
    assert struct_size(record) == encoded.ByteSize()


def test_a_record_too_big_to_send_is_skipped_though_its_json_is_within_the_limit() -> None:
    # A list of small numbers: 2 bytes a number as JSON, 11 as a protobuf Value.
    numbers = {"samples": [0] * 400_000}  # 800 kB of JSON, 4.4 MB as sent
    page = prepare({"big": numbers, "ok": {"samples": [0] * 1000}}, [], RecordLimits())
    assert list(page.records) == ["ok"]
    assert page.rejected == 1
    assert "the API would send it as 4400024 bytes, over the limit of 4128768" in page.example


def test_a_big_page_goes_back_from_its_worker_in_chunks_with_every_record_in_order() -> None:
    records = {f"r{n}": {"n": n} for n in range(2 * PACKED_CHUNK + 500)}
    page = prepare(records, ["gone"], RecordLimits())

    # The trip back from a worker process: one pickle, unpickled by the pool in one call.
    travelled = pickle.loads(pickle.dumps(page.packed_up()))

    assert travelled.records == {} and len(travelled.packed) == 3
    assert travelled.count == len(records)
    assert [k for chunk in travelled.chunks() for k in chunk] == list(records)
    assert next(travelled.chunks())["r7"] == '{"n":7}'
    assert travelled.deleted == ["gone"]


def test_a_small_page_is_not_packed() -> None:
    page = prepare({f"r{n}": {"n": n} for n in range(PACKED_CHUNK)}, [], RecordLimits())
    assert page.packed_up() is page
    assert list(page.chunks()) == [page.records] and page.count == PACKED_CHUNK
