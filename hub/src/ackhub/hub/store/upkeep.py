"""PostgreSQL upkeep the hub does itself: planner statistics and vacuum of its own tables.

The queue lives in ordinary tables (`deliveries`, `attempts`, `notifications` …) that are updated a few
times per row and grow all day. PostgreSQL's planner chooses the hot paths' plans from statistics that
only ANALYZE gathers, and dead row versions left by updates are only reclaimed by VACUUM; both are
autovacuum's job, and autovacuum may be off (it is on the machines the project's tests and benchmarks
run on) or slow to reach a table. Without statistics, a claim's join to `records` was planned as a
sequential scan that grows with the table (seen with `auto_explain` in bench/exchange.py runs:
docs/performance.md).

So every `UPKEEP_INTERVAL_MS` one hub process of the deployment (whoever takes the advisory lock; the others
skip that round) reads `pg_stat_user_tables` and runs, on a connection of its own outside any transaction,
`ANALYZE` on a table changed by more than autovacuum's default share since its last analysis, and
`VACUUM (ANALYZE)` on one with more dead rows than that share — autovacuum's own default thresholds
(`autovacuum_analyze_scale_factor` 0.1, `autovacuum_vacuum_scale_factor` 0.2, each plus 50 rows). When
autovacuum is on and keeps up, the thresholds are never reached and this does nothing. Neither command
blocks the hub's reads or writes (they take `SHARE UPDATE EXCLUSIVE`, which conflicts only with other
maintenance and schema changes)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ackhub.hub.store.db import Database

UPKEEP_INTERVAL_MS = 10_000
UPKEEP_LOCK = 0x6163_6B68_7570  # advisory lock: one process of the deployment at a time
ANALYZE_SHARE, VACUUM_SHARE, BASE_ROWS = 0.1, 0.2, 50  # autovacuum's defaults

# The hub's tables that change while it runs (the others change with configuration or rarely).
BUSY_TABLES = (
    "records",
    "deliveries",
    "attempts",
    "acknowledgements",
    "escalations",
    "audit_events",
    "audit_tree_nodes",
    "idempotent_requests",
    "notifications",
    "notification_attempts",
    "rate_buckets",
    "hub_processes",
    "cases",
    "case_events",
)


@dataclass(frozen=True)
class TableStats:
    name: str
    live_rows: int
    dead_rows: int
    changed_since_analyze: int


def due(stats: TableStats) -> str | None:
    """What `stats`' table needs: "vacuum" (which analyzes too), "analyze" or None."""
    rows = max(stats.live_rows, 0)
    if stats.dead_rows > BASE_ROWS + VACUUM_SHARE * rows:
        return "vacuum"
    if stats.changed_since_analyze > BASE_ROWS + ANALYZE_SHARE * rows:
        return "analyze"
    return None


def upkeep(db: Database) -> list[tuple[str, str]] | None:
    """Blocking: one round of upkeep; the (command, table) pairs run, or None when another process holds
    the round's lock (or the store is SQLite, which needs none of this)."""
    if db.is_sqlite:
        return None
    with psycopg.connect(
        db.conninfo, autocommit=True, application_name=f"{db.application_name}-upkeep"
    ) as connection:
        (locked,) = connection.execute("SELECT pg_try_advisory_lock(%s)", [UPKEEP_LOCK]).fetchone() or (
            False,
        )
        if not locked:
            return None
        try:
            done = []
            for stats in table_stats(connection):
                command = due(stats)
                if command is None:
                    continue
                statement = "VACUUM (ANALYZE) {}" if command == "vacuum" else "ANALYZE {}"
                connection.execute(sql.SQL(statement).format(sql.Identifier(stats.name)))
                done.append((command, stats.name))
            return done
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", [UPKEEP_LOCK])


def table_stats(connection: psycopg.Connection[tuple[object, ...]]) -> list[TableStats]:
    rows = connection.execute(
        "SELECT relname, n_live_tup, n_dead_tup, n_mod_since_analyze FROM pg_stat_user_tables "
        "WHERE schemaname = current_schema() AND relname = ANY(%s) ORDER BY relname",
        [list(BUSY_TABLES)],
    ).fetchall()
    return [TableStats(str(row[0]), _int(row[1]), _int(row[2]), _int(row[3])) for row in rows]


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
