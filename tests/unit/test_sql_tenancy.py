"""Every SQL statement of the service reaches one tenant first, so the schema stays
distributable by tenant_id (docs/SCALING.md: Citus, with tenant_id as the distribution column).

"Tenant first" means, for each table a statement touches:
- SELECT, UPDATE, DELETE: the table's leading predicate is `tenant_id = <parameter>`, either
  as the first condition of its WHERE or as the first condition of the JOIN … ON that joins it
  to another table by tenant (`c.tenant_id = i.tenant_id`: co-located on one shard);
- INSERT: tenant_id is the first column written, and the first of an ON CONFLICT target.

Migrations (migrations/*.sql and their bookkeeping) run once, on the coordinator, and are
not checked. The statements that are cross-tenant by nature are listed in CROSS_TENANT with
the reason; docs/SCALING.md says how each one runs on a distributed database. The SQL is
parsed with sqlglot (PostgreSQL dialect), not matched with regular expressions.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from service.storage.queries import Q

SERVICE = Path(__file__).parents[2] / "service"

#: Named queries that reach across tenants on purpose, and why.
CROSS_TENANT = {
    "claim_due": "the scheduler's due sweep: what is due now, in every tenant",
    "late_due": "the lateness sweep: which integrations in any tenant became late",
    "history_tenants": "the retention job's work list: every tenant that has history",
    "credentials_batch": "re-keying: a keyset walk over every tenant's credentials",
    "endpoint_secrets_batch": "re-keying: a keyset walk over every tenant's webhook secrets",
    "push_channels_batch": "re-keying: a keyset walk over every tenant's push channels",
    "sign_ins_batch": "re-keying: a keyset walk over every tenant's sign-ins in flight",
    "deliveries_claim": "the webhook sweep: deliveries due now, in every tenant",
    "deliveries_purge": "retention: finished webhook deliveries past the log's age, anywhere",
    "push_checks_due": "the push sweep: channels due for a look, in every tenant",
    "push_stops_due": "the push sweep: retired channels whose stop is due, in every tenant",
    "tombstones_due": "retention's work list: integrations holding expired tombstones",
    "stats_by_status": "fleet gauges for /metrics: counts over every tenant",
    "stats_oldest_due": "the scheduler's lag for /metrics: the oldest due attempt anywhere",
}
#: Inline SQL (outside queries/*.sql) that is not tenant data: the migration bookkeeping.
NOT_TENANT_TABLES = {"schema_migrations"}

_SQL_START = ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", "WITH ")


def problems(sql: str) -> list[str]:
    """What keeps `sql` from reaching one tenant first (empty: nothing)."""
    found: list[str] = []
    for statement in sqlglot.parse(_unambiguous(sql), read="postgres"):
        if statement is None:
            continue
        ctes = {cte.alias for cte in statement.find_all(exp.CTE)}
        for scope in statement.find_all(exp.Select, exp.Update, exp.Delete):
            found += _scope_problems(scope, ctes)
        for insert in statement.find_all(exp.Insert):
            found += _insert_problems(insert, ctes)
    return found


def _unambiguous(sql: str) -> str:
    """`INSERT … SELECT … FROM a CROSS JOIN b ON CONFLICT …`: PostgreSQL's grammar knows the
    ON starts the conflict clause, sqlglot's takes it for a join condition. A no-op `ON true`
    on the cross join says what PostgreSQL understands."""
    return re.sub(r"(\bCROSS JOIN\s+\w+(?:\s+\w+)?)\s+ON CONFLICT", r"\1 ON true ON CONFLICT", sql)


def _scope_problems(scope: exp.Expression, ctes: set[str]) -> list[str]:
    tables = [(t, on) for t, on in _direct_tables(scope) if _is_tenant_table(t, ctes)]
    where = scope.args.get("where")
    first = _first_condition(where.this) if isinstance(where, exp.Where) else None
    found = []
    for table, on in tables:
        alias = table.alias_or_name
        if on is not None and _is_tenant_equality(_first_condition(on), alias, False):
            continue
        if _is_tenant_equality(first, alias, len(tables) == 1):
            continue
        found.append(f"{table.name} ({alias}) is not reached by tenant_id first")
    return found


def _insert_problems(insert: exp.Insert, ctes: set[str]) -> list[str]:
    target = insert.this
    table = target.this if isinstance(target, exp.Schema) else target
    if not isinstance(table, exp.Table) or not _is_tenant_table(table, ctes):
        return []
    columns = [c.name for c in target.expressions] if isinstance(target, exp.Schema) else []
    found = []
    if not columns or columns[0] != "tenant_id":
        found.append(f"INSERT INTO {table.name} does not write tenant_id first")
    conflict = insert.args.get("conflict")
    keys = conflict.args.get("conflict_keys") if conflict is not None else None
    if keys and _name(keys[0]) != "tenant_id":
        found.append(f"ON CONFLICT of {table.name} does not lead with tenant_id")
    return found


def _direct_tables(scope: exp.Expression) -> Iterator[tuple[exp.Table, exp.Expression | None]]:
    """The tables a SELECT, UPDATE or DELETE reads or writes itself (not in subqueries),
    each with the ON condition that joins it, if any."""
    if isinstance(scope, exp.Update | exp.Delete) and isinstance(scope.this, exp.Table):
        yield scope.this, None
    source = scope.args.get("from_") or scope.args.get("from")
    if isinstance(source, exp.From):
        for table in (source.this, *source.expressions):
            if isinstance(table, exp.Table):
                yield table, None
    for join in scope.args.get("joins") or []:
        if isinstance(join.this, exp.Table):
            yield join.this, join.args.get("on")
    for table in scope.args.get("using") or []:
        if isinstance(table, exp.Table):
            yield table, None


def _is_tenant_table(table: exp.Table, ctes: set[str]) -> bool:
    return bool(table.name) and table.name not in ctes and table.name not in NOT_TENANT_TABLES


def _first_condition(condition: exp.Expression | None) -> exp.Expression | None:
    while isinstance(condition, exp.And | exp.Paren):
        condition = condition.this
    return condition


def _is_tenant_equality(condition: exp.Expression | None, alias: str, alone: bool) -> bool:
    """`alias.tenant_id = $n` (or the bare column when the table is alone in its scope),
    or `alias.tenant_id = other.tenant_id` (a co-located join or correlation)."""
    if not isinstance(condition, exp.EQ):
        return False
    for mine, other in (
        (condition.this, condition.expression),
        (condition.expression, condition.this),
    ):
        if not (isinstance(mine, exp.Column) and mine.name == "tenant_id"):
            continue
        if mine.table != alias and not (alone and not mine.table):
            continue
        value = other.this if isinstance(other, exp.Cast) else other
        if isinstance(value, exp.Parameter | exp.Placeholder):
            return True
        if isinstance(value, exp.Column) and value.name == "tenant_id" and value.table != alias:
            return True
    return False


def _name(node: exp.Expression) -> str:
    if isinstance(node, exp.Ordered):
        node = node.this
    return node.name if isinstance(node, exp.Column | exp.Identifier) else str(node)


def inline_sql() -> list[tuple[str, str]]:
    """(where, text) of every SQL string literal in service/ outside queries/*.sql."""
    found = []
    for path in sorted(SERVICE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.lstrip().startswith(_SQL_START)
            ):
                found.append((f"{path.relative_to(SERVICE.parent)}:{node.lineno}", node.value))
    return found


@pytest.mark.parametrize("name", sorted(set(Q) - set(CROSS_TENANT)))
def test_every_named_query_reaches_one_tenant_first(name: str) -> None:
    assert problems(Q[name]) == []


def test_inline_sql_reaches_one_tenant_first() -> None:
    statements = inline_sql()
    assert len(statements) >= 3, "the scan should find the inline SQL (migrations, listener)"
    assert {where: problems(sql) for where, sql in statements if problems(sql)} == {}


@pytest.mark.parametrize("name", sorted(CROSS_TENANT))
def test_the_cross_tenant_list_is_exact(name: str) -> None:
    # Listed, so it must exist and must really be cross-tenant: a query made tenant-first
    # leaves the list instead of hiding there.
    assert name in Q
    assert problems(Q[name]) != []


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM integrations WHERE id = $1",
        "SELECT * FROM integrations WHERE id = $2 AND tenant_id = $1",
        "SELECT * FROM integrations i JOIN credentials c ON c.integration_id = i.id "
        "WHERE i.tenant_id = $1",
        "UPDATE records SET data = $3 WHERE record_id = $2",
        "DELETE FROM events e USING integrations i WHERE e.tenant_id = $1 AND i.id = e.id",
        "INSERT INTO events (revision, tenant_id) VALUES ($1, $2)",
        "INSERT INTO tenant_revisions (tenant_id, revision) VALUES ($1, 1) "
        "ON CONFLICT (revision) DO NOTHING",
        "SELECT count(*) FROM (SELECT * FROM records WHERE listing = $1) r",
    ],
)
def test_the_check_catches_statements_that_span_tenants(sql: str) -> None:
    assert problems(sql) != []
