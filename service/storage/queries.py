"""Named SQL queries, loaded once from the `.sql` files in queries/.

A file holds blocks that each start with a `-- name: some_query` line (procrastinate's style),
so SQL stays in SQL files that an editor highlights and a reviewer reads whole.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def _load() -> dict[str, str]:
    queries: dict[str, str] = {}
    for entry in resources.files("service.storage").joinpath("queries").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        parts = _NAME.split(entry.read_text())
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise RuntimeError(f"query {name!r} is defined twice")
            queries[name] = body.strip()
    return queries


Q: dict[str, str] = _load()
