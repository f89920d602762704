"""Make what a revoked database user owns safe to hand over with `REASSIGN OWNED`.

Revocation gives a leased user's objects to the connection's `reassign_owned_to` role, so
that tables and their data survive the user. Some objects run code with the privileges of
their owner, whoever triggers them. After the handover they would run with the privileges
of `reassign_owned_to`, which the leased user never had. Before the handover, in the same
transaction, this module therefore:

- makes SECURITY DEFINER functions and procedures SECURITY INVOKER;
- sets `security_invoker = true` on views, so that their queries read tables with the
  privileges of the user who queries the view (PostgreSQL 15 or later);
- drops rules other than a view's `_RETURN` rule, because a rule's actions run with the
  privileges of the owner of its table or view, even on a security-invoker view;
- drops indexes, the constraints they back, and extended statistics whose expressions or
  predicates call a function, operator or type created after initdb. ANALYZE, VACUUM,
  REINDEX and CLUSTER evaluate those expressions as the table's owner, and autovacuum runs
  ANALYZE without anyone asking;
- sets the statistics target of a column to 0 when its type is a range type (or a domain
  over one) whose `subtype_diff` function was created after initdb, because ANALYZE calls
  that function as the table's owner. The column then gets no statistics.

The rest keeps working as before and runs with the privileges of whoever uses it. Grants
that the user made on its objects stay, so applications keep their access to its tables.

Each query below composes DDL from names the catalog returns. Identifiers are quoted with
`sql.Identifier`, and a routine's signature comes from PostgreSQL's own `regprocedure`
output, which quotes every name, while the session's search_path is pg_catalog only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import LiteralString

import psycopg
from psycopg import sql

#: OIDs below this were assigned by initdb (PostgreSQL's FirstNormalObjectId), and the OID
#: counter wraps around to it, never below. An object with a lower OID is built in and runs
#: no code that a database user wrote.
FIRST_NORMAL_OBJECT_ID = 16384

Connection = psycopg.AsyncConnection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class _Change:
    statement: sql.Composed
    description: str


async def owns_objects(connection: Connection, role_oid: object) -> bool:
    """Tell whether the role owns an object in the current database (from `pg_shdepend`).

    Once the role has no session, a False answer stays true: the role owns no routine that
    could create objects as it.
    """
    cursor = await connection.execute(
        "SELECT EXISTS (SELECT FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE d.datname = current_database() AND s.refclassid = 'pg_authid'::regclass "
        "AND s.refobjid = %(role)s AND s.deptype = 'o')",
        {"role": role_oid},
    )
    row = await cursor.fetchone()
    return bool(row and row[0])


async def disarm_definer_routines(connection: Connection, role_oid: object) -> list[str]:
    """Make the role's SECURITY DEFINER functions and procedures SECURITY INVOKER.

    Returns a description of each routine changed. Run it in a transaction of its own
    before `disarm_owned_objects`: once it commits, a call that starts no longer runs as
    the role, so it cannot create new objects for it.
    """
    return await _apply(connection, await _definer_routines(connection, role_oid))


async def disarm_owned_objects(connection: Connection, role_oid: object) -> list[str]:
    """Change or drop what would run with its new owner's privileges after REASSIGN OWNED.

    Acts on the current database only, in the caller's transaction; the caller runs REASSIGN
    OWNED in the same transaction, so no one sees an object handed over but not disarmed.
    Returns a description of each change.
    """
    changes = [
        *await _definer_routines(connection, role_oid),
        *await _owner_views(connection, role_oid),
        *await _rules(connection, role_oid),
        *await _expression_indexes(connection, role_oid),
        *await _expression_statistics(connection, role_oid),
        *await _range_columns(connection, role_oid),
    ]
    return await _apply(connection, changes)


async def _apply(connection: Connection, changes: Sequence[_Change]) -> list[str]:
    for change in changes:
        await connection.execute(change.statement)
    return [change.description for change in changes]


async def _rows(
    connection: Connection, query: LiteralString, role_oid: object
) -> list[tuple[str, ...]]:
    parameters = {"role": role_oid, "first_normal_oid": FIRST_NORMAL_OBJECT_ID}
    cursor = await connection.execute(query, parameters)
    return [tuple(str(value) for value in row) for row in await cursor.fetchall()]


async def _definer_routines(connection: Connection, role_oid: object) -> list[_Change]:
    rows = await _rows(
        connection,
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.proowner = %(role)s AND p.prosecdef ORDER BY p.oid",
        role_oid,
    )
    return [
        _Change(
            # regprocedure output is a quoted, schema-qualified signature (see the module
            # docstring), so it is a safe SQL fragment.
            sql.SQL("ALTER ROUTINE {} SECURITY INVOKER").format(sql.SQL(signature)),
            f"routine {signature}: SECURITY INVOKER",
        )
        for (signature,) in rows
    ]


async def _owner_views(connection: Connection, role_oid: object) -> list[_Change]:
    # text::boolean reads every spelling PostgreSQL accepts for the option (true, on, 1).
    rows = await _rows(
        connection,
        "SELECT n.nspname, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relowner = %(role)s AND c.relkind = 'v' AND NOT coalesce(("
        "  SELECT o.option_value::boolean FROM pg_options_to_table(c.reloptions) o "
        "  WHERE o.option_name = 'security_invoker'), false) "
        "ORDER BY c.oid",
        role_oid,
    )
    return [
        _Change(
            sql.SQL("ALTER VIEW {} SET (security_invoker = true)").format(
                sql.Identifier(schema, name)
            ),
            f"view {schema}.{name}: security_invoker",
        )
        for schema, name in rows
    ]


async def _rules(connection: Connection, role_oid: object) -> list[_Change]:
    rows = await _rows(
        connection,
        "SELECT r.rulename, n.nspname, c.relname FROM pg_rewrite r "
        "JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relowner = %(role)s AND r.rulename <> '_RETURN' ORDER BY r.oid",
        role_oid,
    )
    return [
        _Change(
            sql.SQL("DROP RULE {} ON {}").format(
                sql.Identifier(rule), sql.Identifier(schema, relation)
            ),
            f"rule {rule} on {schema}.{relation}: dropped",
        )
        for rule, schema, relation in rows
    ]


async def _expression_indexes(connection: Connection, role_oid: object) -> list[_Change]:
    # A partition's index that belongs to an index of the parent is dropped with that one.
    rows = await _rows(
        connection,
        "SELECT n.nspname, x.relname, tn.nspname, t.relname, coalesce(con.conname, '') "
        "FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = x.relnamespace "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace "
        "LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid "
        "AND con.conrelid = i.indrelid "
        "WHERE t.relowner = %(role)s "
        "AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL) "
        "AND NOT EXISTS (SELECT FROM pg_inherits h WHERE h.inhrelid = i.indexrelid) "
        "AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
        "  AND d.objid = i.indexrelid AND d.refobjid >= %(first_normal_oid)s "
        "  AND d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass, "
        "  'pg_type'::regclass)) "
        "ORDER BY i.indexrelid",
        role_oid,
    )
    changes = []
    for schema, index, table_schema, table, constraint in rows:
        if constraint:
            changes.append(
                _Change(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                        sql.Identifier(table_schema, table), sql.Identifier(constraint)
                    ),
                    f"constraint {constraint} on {table_schema}.{table}: dropped",
                )
            )
        else:
            changes.append(
                _Change(
                    sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, index)),
                    f"index {schema}.{index} on {table_schema}.{table}: dropped",
                )
            )
    return changes


async def _expression_statistics(connection: Connection, role_oid: object) -> list[_Change]:
    rows = await _rows(
        connection,
        "SELECT n.nspname, s.stxname FROM pg_statistic_ext s "
        "JOIN pg_namespace n ON n.oid = s.stxnamespace "
        "JOIN pg_class t ON t.oid = s.stxrelid "
        "WHERE t.relowner = %(role)s AND s.stxexprs IS NOT NULL "
        "AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_statistic_ext'::regclass "
        "  AND d.objid = s.oid AND d.refobjid >= %(first_normal_oid)s "
        "  AND d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass, "
        "  'pg_type'::regclass)) "
        "ORDER BY s.oid",
        role_oid,
    )
    return [
        _Change(
            sql.SQL("DROP STATISTICS {}").format(sql.Identifier(schema, name)),
            f"statistics {schema}.{name}: dropped",
        )
        for schema, name in rows
    ]


async def _range_columns(connection: Connection, role_oid: object) -> list[_Change]:
    # The recursive part resolves domains to their base types. attstattarget is NULL for
    # the default target from PostgreSQL 17 on, and -1 before.
    rows = await _rows(
        connection,
        "WITH RECURSIVE columns(relation, number, type) AS ("
        "  SELECT a.attrelid, a.attnum, a.atttypid FROM pg_attribute a "
        "  JOIN pg_class c ON c.oid = a.attrelid "
        "  WHERE c.relowner = %(role)s AND c.relkind IN ('r', 'p', 'm', 'f') "
        "  AND a.attnum > 0 AND NOT a.attisdropped AND coalesce(a.attstattarget, -1) <> 0 "
        "  UNION ALL "
        "  SELECT col.relation, col.number, t.typbasetype FROM columns col "
        "  JOIN pg_type t ON t.oid = col.type WHERE t.typtype = 'd'"
        ") "
        "SELECT DISTINCT n.nspname, c.relname, a.attname FROM columns col "
        "JOIN pg_range r ON col.type IN (r.rngtypid, r.rngmultitypid) "
        "JOIN pg_class c ON c.oid = col.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = col.relation AND a.attnum = col.number "
        "WHERE r.rngsubdiff::oid >= %(first_normal_oid)s",
        role_oid,
    )
    return [
        _Change(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STATISTICS 0").format(
                sql.Identifier(schema, relation), sql.Identifier(column)
            ),
            f"column {column} of {schema}.{relation}: statistics off",
        )
        for schema, relation, column in rows
    ]
