"""How a page is written: in parts of at most a commit's size, the deletions filling the last
part of records and then parts of their own, the same whether the page came packed from a
worker process or not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.records import PACKED_CHUNK, PreparedPage
from service.engine.sync_runner import _parts


@settings(max_examples=60, deadline=None)
@given(
    records=st.integers(0, 2 * PACKED_CHUNK + 300),
    deleted=st.integers(0, 40),
    size=st.integers(1, PACKED_CHUNK + 200),
)
def test_parts_hold_everything_once_in_order_and_the_count_is_right(
    records: int, deleted: int, size: int
) -> None:
    texts = {f"r{n}": f'{{"n":{n}}}' for n in range(records)}
    gone = [f"d{n}" for n in range(deleted)]
    plain = PreparedPage(texts, gone)
    for page in (plain, plain.packed_up()):
        count, parts = _parts(page, size)
        made = list(parts)
        assert len(made) == count >= 1
        assert [k for r, _ in made for k in r.items()] == list(texts.items())
        assert [d for _, ds in made for d in ds] == gone
        assert all(len(r) + len(ds) <= size for r, ds in made)
        # Deletions come only after the last part with records.
        with_records = [n for n, (r, _) in enumerate(made) if r]
        first_deletion = next((n for n, (_, ds) in enumerate(made) if ds), None)
        if with_records and first_deletion is not None:
            assert first_deletion >= with_records[-1]
