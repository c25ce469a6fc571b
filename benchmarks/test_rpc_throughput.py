"""How fast the API answers over a real socket with a real database.

Targets (on the 2-core reference machine): 100 concurrent Creates in under 1 s; a page of 100
integrations from a tenant of 2,000 in under 50 ms; 100 concurrent Gets in under 0.25 s.
"""

from __future__ import annotations

import asyncio
import itertools

from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.conftest import Running

_names = itertools.count()


async def create_many(service: Running, n: int) -> list[pb.Integration]:
    responses = await asyncio.gather(
        *(
            service.stub.Create(
                api.CreateRequest(
                    display_name=f"Calendar {next(_names)}", connector_type="google_calendar"
                )
            )
            for _ in range(n)
        )
    )
    return [r.integration for r in responses]


def test_concurrent_creates(benchmark: BenchmarkFixture, service: Running) -> None:
    # pytest-benchmark leaves `pedantic` unannotated.
    created = benchmark.pedantic(  # type: ignore[no-untyped-call]
        lambda: service.run(create_many(service, 100)), rounds=5
    )
    assert len(created) == 100
    assert benchmark.stats is not None
    assert benchmark.stats.stats.median < 1.0, "100 concurrent Creates should take < 1 s"


def test_list_a_page_from_a_large_tenant(benchmark: BenchmarkFixture, service: Running) -> None:
    for _ in range(20):
        service.run(create_many(service, 100))

    async def first_page() -> api.ListResponse:
        return await service.stub.List(api.ListRequest(page_size=100))

    page = benchmark(lambda: service.run(first_page()))
    assert len(page.integrations) == 100 and page.next_page_token
    assert benchmark.stats is not None
    assert benchmark.stats.stats.median < 0.05, "a page of 100 should take < 50 ms"


def test_concurrent_gets(benchmark: BenchmarkFixture, service: Running) -> None:
    ids = [i.id for i in service.run(create_many(service, 100))]

    async def get_all() -> int:
        got = await asyncio.gather(*(service.stub.Get(api.GetRequest(id=i)) for i in ids))
        return len(got)

    assert benchmark(lambda: service.run(get_all())) == 100
    assert benchmark.stats is not None
    assert benchmark.stats.stats.median < 0.25, "100 concurrent Gets should take < 250 ms"
