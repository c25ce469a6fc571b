"""The layers the README's Architecture section draws, as the imports really are: a new import
across a boundary fails here rather than in a reviewer's head."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"

#: Each layer and the service packages it may import (besides itself and the cross-cutting
#: modules: clock, tenancy, config and observability, which every layer may use).
MAY_IMPORT = {
    "domain": set(),
    "storage": {"domain"},
    "connectors": {"domain"},
    "engine": {"domain", "storage", "connectors", "oauth"},
    "oauth": {"domain", "storage", "connectors", "engine"},
    "api": {"domain", "engine", "oauth", "storage", "connectors", "app"},
}
CROSS_CUTTING = {"clock", "tenancy", "config", "observability", "background", "logs", "offload"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((SERVICE / package).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    allowed = MAY_IMPORT[layer] | CROSS_CUTTING | {layer}
    crossing = {
        f"{path.relative_to(SERVICE)} imports {name}"
        for path in _modules(layer)
        for name in _imports(path)
        if name.startswith("service.") and name.split(".")[1] not in allowed
    }
    assert not crossing


def test_only_storage_speaks_to_the_database_driver() -> None:
    drivers = {
        str(path.relative_to(SERVICE))
        for path in SERVICE.rglob("*.py")
        if path.relative_to(SERVICE).parts[0] != "storage"
        and any(name.split(".")[0] == "asyncpg" for name in _imports(path))
    }
    assert not drivers


def test_the_domain_does_no_io() -> None:
    io = {"asyncio", "aiohttp", "asyncpg", "grpc", "socket", "ssl", "subprocess", "os"}
    found = {
        f"{path.relative_to(SERVICE)} imports {name}"
        for path in _modules("domain")
        for name in _imports(path)
        if name.split(".")[0] in io
    }
    assert not found


#: oauth's token layer: what the engine refreshes and sends tokens with. It sits under the
#: engine (the engine imports it), so it must never import the engine back; oauth's flows
#: (sign-in, callback, reauthorization) sit on top of the engine.
OAUTH_TOKEN_LAYER = ("tokens", "providers", "refresh", "token_endpoint", "revocation", "pkce")


@pytest.mark.parametrize("module", OAUTH_TOKEN_LAYER)
def test_the_oauth_token_layer_never_imports_the_engine(module: str) -> None:
    path = SERVICE / "oauth" / f"{module}.py"
    assert not {name for name in _imports(path) if name.startswith("service.engine")}


def test_the_engine_uses_only_the_oauth_token_layer() -> None:
    used = {
        name.split(".")[2]
        for path in _modules("engine")
        for name in _imports(path)
        if name.startswith("service.oauth.")
    }
    assert used <= set(OAUTH_TOKEN_LAYER)
