"""Select the events a run must judge: the new ones, and the context they need.

New events are the `activity` rows appended since the last run (rowid above the stored
watermark). Duplicates are dropped twice: among the new rows (duplicated delivery files,
and the several audit stages of one Kubernetes request, keeping the completed stage), and
against rows already judged (the same source and event id at the same time).

The context ("tail") of an identity is every event already judged from `context_window`
before its first new event onwards. Reading it again makes windows that span two runs
whole, and lets an event that arrives late be judged against the events around it, and
the later events be judged again, as if everything had arrived in order.

The result is the temporary table `behavior_work`, one row per event of an identity, with
`in_batch` false for context rows. Its columns are listed in `WORK_COLUMNS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from warden.behavior.networks import NetworkTable

WORK_COLUMNS = (
    "ev_key",  # source, ':' and the source's event id (or the row id when there is none)
    "row_id",
    "source",
    "event_id",
    "event_time",
    "identity",
    "identity_type",
    "credential",
    "session_name",
    "workload",  # the key the off-workload detector tracks, or NULL
    "workload_kind",  # instance, session, key, service_account
    "action",
    "service",
    "operation",
    "resource",
    "read_only",
    "failed",
    "failed_action",  # the action, on failed events only
    "human_style",  # a console sign-in or session, or a browser
    "console",
    "address",
    "via_service",  # called by an AWS service or through a VPC endpoint
    "agent",  # user-agent family
    "network",
    "region",
    "hour",
    "secret_targets",
    "k8s_class",
    "in_batch",
)

# Secret reads and what they name; see Settings.secret_min_new for the weights.
_READ_TARGETS = r"""
    CASE
        WHEN service = 'secretsmanager.amazonaws.com' AND operation = 'GetSecretValue'
            THEN [coalesce(json_extract_string(request_parameters, '$.secretId'),
                           'unnamed:' || coalesce(event_id, ''))]
        WHEN service = 'secretsmanager.amazonaws.com' AND operation = 'BatchGetSecretValue'
            THEN CASE WHEN len(coalesce(json_extract_string(request_parameters,
                                                            '$.secretIdList[*]'), [])) > 0
                      THEN json_extract_string(request_parameters, '$.secretIdList[*]')
                      ELSE ['filters:' || coalesce(
                                CAST(json_extract(request_parameters, '$.filters') AS VARCHAR),
                                'none')
                            || '#' || coalesce(json_extract_string(request_parameters,
                                                                   '$.maxResults'), '20')]
                 END
        WHEN service = 'ssm.amazonaws.com' AND operation = 'GetParameter'
            THEN [coalesce(json_extract_string(request_parameters, '$.name'),
                           'unnamed:' || coalesce(event_id, ''))]
        WHEN service = 'ssm.amazonaws.com' AND operation = 'GetParameters'
            THEN coalesce(nullif(json_extract_string(request_parameters, '$.names[*]'), []),
                          ['unnamed:' || coalesce(event_id, '')])
        WHEN service = 'ssm.amazonaws.com' AND operation = 'GetParametersByPath'
            THEN ['path:' || coalesce(json_extract_string(request_parameters, '$.path'), '/')]
        WHEN service = 'ec2.amazonaws.com' AND operation = 'GetPasswordData'
            THEN [coalesce(json_extract_string(request_parameters, '$.instanceId'),
                           'unnamed:' || coalesce(event_id, ''))]
    END
"""

# Kubernetes operations that give code execution, secrets or privileges. A binding to the
# cluster-admin role is a class of its own, the most severe.
_K8S_CLASS = r"""
    CASE WHEN source = 'k8s_audit' THEN
        CASE
            WHEN operation IN ('create', 'update', 'patch')
                AND split_part(action, ':', 2) IN ('rolebindings', 'clusterrolebindings')
                AND json_extract_string(request_parameters, '$.roleRef.name') = 'cluster-admin'
                THEN 'cluster-admin'
            WHEN split_part(action, ':', 2) IN ('pods/exec', 'pods/attach') THEN 'exec'
            WHEN operation IN ('get', 'list', 'watch') AND split_part(action, ':', 2) = 'secrets'
                THEN 'secrets-read'
            WHEN operation IN ('bind', 'escalate', 'impersonate')
                OR (operation IN ('create', 'update', 'patch')
                    AND split_part(action, ':', 2) IN ('roles', 'rolebindings', 'clusterroles',
                                                       'clusterrolebindings'))
                THEN 'rbac-change'
        END
    END
"""

# Calls made by an AWS service for the caller, or through a VPC endpoint, carry a service
# name or a private address instead of the client's address. So they neither define nor
# break a workload's home.
_VIA_SERVICE = r"""
    (invoked_by IS NOT NULL OR vpc_endpoint IS NOT NULL OR source_address IS NULL
     OR source_address = 'AWS Internal' OR source_address LIKE '%.amazonaws.com'
     OR NOT regexp_full_match(source_address, '[0-9A-Fa-f:.]+'))
"""

# Every interpolated value is a constant SQL fragment of this module.
_RAW_SELECT = f"""
    SELECT rowid AS row_id, source, event_id, event_time, identity, identity_type, credential,
           session_name,
           coalesce(action, service || ':' || operation) AS action,
           service, operation, resource, source_address AS address, user_agent, region,
           outcome IS NOT NULL AS failed, coalesce(read_only, FALSE) AS read_only,
           coalesce(console, FALSE) OR operation = 'ConsoleLogin' AS console,
           {_VIA_SERVICE} AS via_service,
           {_READ_TARGETS} AS secret_targets,
           {_K8S_CLASS} AS k8s_class,
           CASE WHEN service = 'sts.amazonaws.com' AND outcome IS NULL
                     AND operation IN ('AssumeRole', 'AssumeRoleWithSAML',
                                       'AssumeRoleWithWebIdentity')
                THEN json_extract_string(request_parameters, '$.roleArn') END AS assumed_role,
           CASE WHEN identity_type = 'AWSService' OR invoked_by IS NOT NULL
                THEN coalesce(invoked_by, source_address) END AS assumer_service
    FROM activity
"""  # noqa: S608

# Event times a log can really carry. A record from a broken clock (year 1, year 9999 or
# beyond what Python's datetime holds) would open a false dormancy gap or stop the run, so
# rows outside this range are left out and counted. The bounds are fixed, not taken from the
# machine's clock, so that replayed and simulated logs are judged too.
# NOTE: a clock wrong by a few years stays inside the range and can still cause a false
# dormant-wake-up alert.
_PLAUSIBLE_TIME = (
    "event_time >= TIMESTAMPTZ '2000-01-01 00:00:00+00' "
    "AND event_time < TIMESTAMPTZ '2200-01-01 00:00:00+00'"
)

_DEDUP = """
    QUALIFY row_number() OVER (
        PARTITION BY source, coalesce(event_id, 'row:' || CAST(rowid AS VARCHAR))
        ORDER BY (stage = 'ResponseComplete') DESC NULLS LAST, file, rowid
    ) = 1
"""


@dataclass(frozen=True)
class BatchSummary:
    new_rows: int  # activity rows appended since the last run
    new_events: int  # after removing duplicates
    context_events: int  # earlier events read again as context
    identities: int
    first_time: datetime | None
    last_time: datetime | None
    watermark: int  # the highest activity rowid folded in by this run
    implausible_times: int = 0  # new rows left out for a time before 2000 or after 2199


def select_batch(
    connection: duckdb.DuckDBPyConnection,
    watermark: int,
    top: int,
    context_window: timedelta,
    networks: NetworkTable | None,
) -> BatchSummary:
    """Fill `behavior_fresh` (new events) and `behavior_work` (new and context events).

    New events are the `activity` rows with a rowid above `watermark`, up to `top`.
    """

    # Duplicates among the new rows: group first, so that only duplicated ids are sorted.
    connection.execute(
        """
        CREATE OR REPLACE TEMP TABLE behavior_duplicates AS
        WITH keys AS (
            SELECT source, event_id FROM activity
            WHERE rowid > ? AND rowid <= ? AND event_id IS NOT NULL
            GROUP BY ALL HAVING count(*) > 1
        )
        SELECT a.rowid AS row_id FROM activity a JOIN keys k
            ON k.source = a.source AND k.event_id = a.event_id
        WHERE a.rowid > ? AND a.rowid <= ?
        QUALIFY row_number() OVER (
            PARTITION BY a.source, a.event_id
            ORDER BY (a.stage = 'ResponseComplete') DESC NULLS LAST, a.file, a.rowid
        ) > 1
        """,
        [watermark, top, watermark, top],
    )
    connection.execute(
        f"CREATE OR REPLACE TEMP TABLE behavior_fresh AS {_RAW_SELECT} "  # noqa: S608
        f"WHERE rowid > ? AND rowid <= ? AND {_PLAUSIBLE_TIME} "
        "AND rowid NOT IN (SELECT row_id FROM behavior_duplicates)",
        [watermark, top],
    )
    implausible = _scalar(
        connection,
        "SELECT count(*) FROM activity WHERE rowid > ? AND rowid <= ? "  # noqa: S608
        f"AND event_time IS NOT NULL AND NOT ({_PLAUSIBLE_TIME})",
        [watermark, top],
    )

    new_rows = max(top - watermark, 0)
    bounds = connection.execute(
        "SELECT min(event_time), max(event_time) FROM behavior_fresh"
    ).fetchone()
    first, last = (bounds[0], bounds[1]) if bounds else (None, None)

    if first is not None and watermark >= 0:
        # Same source and id at the same time as a row judged before: a duplicate delivery.
        connection.execute(
            """
            DELETE FROM behavior_fresh f USING (
                SELECT DISTINCT source, event_id, event_time FROM activity
                WHERE rowid <= ? AND event_id IS NOT NULL AND event_time BETWEEN ? AND ?
            ) o
            WHERE f.source = o.source AND f.event_id = o.event_id
              AND f.event_time = o.event_time
            """,
            [watermark, first, last],
        )

    _select_context(connection, watermark, context_window)
    _map_values(connection, networks)
    _build_work(connection)

    counts = connection.execute(
        "SELECT count(*) FILTER (WHERE in_batch), count(*) FILTER (WHERE NOT in_batch), "
        "count(DISTINCT identity) FROM behavior_work"
    ).fetchone()
    new_events = _scalar(connection, "SELECT count(*) FROM behavior_fresh", [])
    return BatchSummary(
        new_rows=new_rows,
        new_events=new_events,
        context_events=int(counts[1]) if counts else 0,
        identities=int(counts[2]) if counts else 0,
        first_time=first,
        last_time=last,
        watermark=max(top, watermark),
        implausible_times=implausible,
    )


def _map_values(connection: duckdb.DuckDBPyConnection, networks: NetworkTable | None) -> None:
    """Map the distinct user agents of new and context rows to families, addresses to networks.

    There are far fewer distinct values than events, so this runs in Python, once per value.
    """
    from warden.behavior.agents import agent_family
    from warden.behavior.networks import network_of

    connection.execute(
        "CREATE TEMP TABLE IF NOT EXISTS behavior_agent_families "
        "(user_agent VARCHAR PRIMARY KEY, family VARCHAR)"
    )
    connection.execute(
        "CREATE TEMP TABLE IF NOT EXISTS behavior_networks "
        "(address VARCHAR PRIMARY KEY, network VARCHAR)"
    )
    agents = connection.execute(
        "SELECT DISTINCT user_agent FROM (SELECT user_agent FROM behavior_fresh "
        "UNION ALL SELECT user_agent FROM behavior_context) WHERE user_agent IS NOT NULL "
        "AND user_agent NOT IN (SELECT user_agent FROM behavior_agent_families)"
    ).fetchall()
    if agents:
        connection.executemany(
            "INSERT INTO behavior_agent_families VALUES (?, ?)",
            [(agent, agent_family(agent)) for (agent,) in agents],
        )
    addresses = connection.execute(
        "SELECT DISTINCT address FROM (SELECT address FROM behavior_fresh "
        "UNION ALL SELECT address FROM behavior_context) WHERE address IS NOT NULL "
        "AND address NOT IN (SELECT address FROM behavior_networks)"
    ).fetchall()
    if addresses:
        connection.executemany(
            "INSERT INTO behavior_networks VALUES (?, ?)",
            [(address, network_of(address, networks)) for (address,) in addresses],
        )


def _select_context(
    connection: duckdb.DuckDBPyConnection, watermark: int, context_window: timedelta
) -> None:
    """Fill `behavior_context` with already-judged events the new ones need around them."""
    seconds = int(context_window.total_seconds())
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE behavior_context_starts AS
        SELECT f.identity, min(f.event_time) - INTERVAL {seconds} SECOND AS start_time
        FROM behavior_fresh f JOIN behavior_identities s ON s.identity = f.identity
        WHERE f.identity IS NOT NULL
        GROUP BY f.identity, s.last_seen
        HAVING s.last_seen >= min(f.event_time) - INTERVAL {seconds} SECOND
        """  # noqa: S608
    )
    start = connection.execute("SELECT min(start_time) FROM behavior_context_starts").fetchone()
    if watermark < 0 or start is None or start[0] is None:
        connection.execute(
            "CREATE OR REPLACE TEMP TABLE behavior_context AS "
            "SELECT * FROM behavior_fresh WHERE FALSE"
        )
        return
    # The constant lower bound on event_time lets DuckDB skip row groups by their min/max.
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE behavior_context AS
        SELECT * FROM ({_RAW_SELECT} WHERE rowid <= ? AND event_time >= ? AND {_PLAUSIBLE_TIME}
                       AND identity IN (SELECT identity FROM behavior_context_starts) {_DEDUP}) a
        WHERE a.event_time >= (SELECT start_time FROM behavior_context_starts s
                               WHERE s.identity = a.identity)
        """,  # noqa: S608
        [watermark, start[0]],
    )


def _build_work(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(
        """
        CREATE OR REPLACE TEMP TABLE behavior_work AS
        SELECT e.source || ':' || coalesce(e.event_id, 'row' || CAST(e.row_id AS VARCHAR))
                   AS ev_key,
               e.row_id, e.source, e.event_id, e.event_time, e.identity, e.identity_type,
               e.credential, e.session_name,
               CASE
                   WHEN e.identity_type = 'AssumedRole' AND e.session_name IS NOT NULL
                       THEN e.identity || ' session ' || e.session_name
                   WHEN e.identity_type = 'IAMUser' AND e.credential LIKE 'AKIA%'
                       THEN e.identity || ' key ' || e.credential
                   WHEN e.identity_type = 'ServiceAccount' THEN e.identity
               END AS workload,
               CASE
                   WHEN e.identity_type = 'AssumedRole'
                        AND regexp_full_match(e.session_name, 'i-[0-9a-fA-F]{8,17}')
                       THEN 'instance'
                   WHEN e.identity_type = 'AssumedRole' AND e.session_name IS NOT NULL
                       THEN 'session'
                   WHEN e.identity_type = 'IAMUser' AND e.credential LIKE 'AKIA%' THEN 'key'
                   WHEN e.identity_type = 'ServiceAccount' THEN 'service_account'
               END AS workload_kind,
               e.action, e.service, e.operation, e.resource, e.read_only, e.failed,
               CASE WHEN e.failed THEN e.action END AS failed_action,
               e.console OR coalesce(g.family = 'browser', FALSE) AS human_style,
               e.console, e.address, e.via_service,
               g.family AS agent,
               n.network,
               e.region,
               CAST(hour(e.event_time) AS VARCHAR) AS hour,
               e.secret_targets, e.k8s_class,
               e.in_batch
        FROM (
            SELECT *, TRUE AS in_batch FROM behavior_fresh WHERE identity IS NOT NULL
            UNION ALL BY NAME
            SELECT *, FALSE AS in_batch FROM behavior_context
        ) e
        LEFT JOIN behavior_agent_families g ON g.user_agent = e.user_agent
        LEFT JOIN behavior_networks n ON n.address = e.address
        """
    )


def _scalar(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list[object]) -> int:
    row = connection.execute(sql, parameters).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
