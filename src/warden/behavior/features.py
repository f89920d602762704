"""Per-event baseline features: how often this identity did this before this very event.

Every count is "as of the event": the stored baseline (before this run) minus the context
rows it already contains, plus the earlier rows of this run in (time, event key) order. The
result does not depend on the order in which files arrived or were read, because rows are
ordered by their own time. The stored baselines are not changed here.

`behavior_scored` contains `behavior_work`'s columns and:

- `human`, `classification`, `peer_group`: the identity's classification;
- `identity_first_seen`, `prior_events`, `established` (past the learning window and with
  enough events), `previous_event_time` (the identity's event before this one);
- `n_<dimension>` for action, failed_action, address, network, agent, region, hour and
  k8s_class: earlier events of the identity with the same value (NULL when the value is);
- `workload_home_address`, `workload_home_agent`, `workload_first_seen`, and
  `n_workload_address`, `n_workload_agent`: the same for the workload key;
- `*_peer_share`: the share of the identity's peers that ever had the value;
- the anomaly model's features (`warden.behavior.store.FEATURE_COLUMNS`), rounded to two
  decimals, and `vector_hash`, a hash of them; `score` is filled in later.

`behavior_secret_reads` contains one row per secret name read, with `n_target`, the
identity's earlier reads of that name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from warden.behavior.store import FEATURE_COLUMNS

if TYPE_CHECKING:
    import duckdb

    from warden.behavior.identities import IdentityRecord
    from warden.behavior.settings import Settings

IDENTITY_DIMENSIONS = (
    "action",
    "failed_action",
    "address",
    "network",
    "agent",
    "region",
    "hour",
    "k8s_class",
)
PEER_DIMENSIONS = ("action", "agent", "network")
WORKLOAD_DIMENSIONS = ("address", "agent")
ORDER = "ORDER BY w.event_time, w.ev_key"
_SURPRISE_TERMS = (
    "CASE WHEN via_service OR n_address IS NULL THEN 0 ELSE 1.0 / (1 + n_address) END",
    "CASE WHEN via_service OR n_network IS NULL THEN 0 ELSE 1.0 / (1 + n_network) END",
    "CASE WHEN n_agent IS NULL OR agent IN ('aws-internal', 'aws-service') THEN 0 "
    "ELSE 1.0 / (1 + n_agent) END",
    "CASE WHEN n_region IS NULL THEN 0 ELSE 1.0 / (1 + n_region) END",
    "1.0 / (1 + n_hour)",
    "CASE WHEN failed THEN 1.0 / (1 + n_failed_action) ELSE 0 END",
    "1.0 / (1 + n_action)",
)


def compute_features(
    connection: duckdb.DuckDBPyConnection,
    records: dict[str, IdentityRecord],
    settings: Settings,
) -> None:
    """Fill `behavior_scored` and `behavior_secret_reads` from `behavior_work`.

    Each window function runs on a narrow projection of `behavior_work` and is joined back
    by `row_id`: sorting whole rows once per dimension cost about twenty times more.
    """
    _identity_info(connection, records)
    _peer_values(connection)
    has_context = _has_context(connection)
    learning = int(settings.learning_window.total_seconds())

    def context_count(partition: str) -> str:
        # Rows of the context are already in the stored counts; remove them once. DuckDB
        # runs a window aggregate with FILTER about five times slower than this count.
        if not has_context:
            return "0"
        return f"count(CASE WHEN NOT in_batch THEN 1 END) OVER (PARTITION BY {partition})"

    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE behavior_n_identity AS
        SELECT w.row_id,
               least(i.base_first_seen, min(w.event_time) OVER (PARTITION BY w.identity))
                   AS identity_first_seen,
               coalesce(i.base_events, 0) - {context_count("w.identity")}
                   + row_number() OVER (PARTITION BY w.identity {ORDER}) - 1 AS prior_events,
               coalesce(lag(w.event_time) OVER (PARTITION BY w.identity {ORDER}),
                        i.base_previous_time) AS previous_event_time
        FROM (SELECT row_id, identity, event_time, ev_key, in_batch FROM behavior_work) w
        JOIN behavior_identity_info i ON i.identity = w.identity
        """  # noqa: S608
    )
    for d in IDENTITY_DIMENSIONS:
        connection.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE behavior_n_{d} AS
            SELECT w.row_id,
                   coalesce(p.events, 0) - {context_count(f"w.identity, w.{d}")}
                   + row_number() OVER (PARTITION BY w.identity, w.{d} {ORDER}) - 1 AS n_{d}
            FROM (SELECT row_id, identity, {d}, event_time, ev_key, in_batch
                  FROM behavior_work WHERE {d} IS NOT NULL) w
            LEFT JOIN behavior_profile p ON p.subject_kind = 'identity'
                AND p.subject = w.identity AND p.dimension = '{d}' AND p.value = w.{d}
            """  # noqa: S608
        )
    for d in WORKLOAD_DIMENSIONS:
        connection.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE behavior_n_workload_{d} AS
            SELECT w.row_id,
                   coalesce(p.events, 0) - {context_count(f"w.workload, w.{d}")}
                   + row_number() OVER (PARTITION BY w.workload, w.{d} {ORDER}) - 1
                       AS n_workload_{d}
            FROM (SELECT row_id, workload, {d}, event_time, ev_key, in_batch
                  FROM behavior_work
                  WHERE workload IS NOT NULL AND NOT via_service AND {d} IS NOT NULL) w
            LEFT JOIN behavior_profile p ON p.subject_kind = 'workload'
                AND p.subject = w.workload AND p.dimension = '{d}' AND p.value = w.{d}
            """  # noqa: S608
        )
    _workload_homes(connection)

    counts = [f"n_{d}.n_{d}" for d in IDENTITY_DIMENSIONS] + [
        f"n_workload_{d}.n_workload_{d}" for d in WORKLOAD_DIMENSIONS
    ]
    count_joins = [
        f"LEFT JOIN behavior_n_{d} n_{d} ON n_{d}.row_id = w.row_id" for d in IDENTITY_DIMENSIONS
    ] + [
        f"LEFT JOIN behavior_n_workload_{d} n_workload_{d} ON n_workload_{d}.row_id = w.row_id"
        for d in WORKLOAD_DIMENSIONS
    ]
    peers = [
        f"""CASE WHEN w.{d} IS NULL OR coalesce(z.size, 1) <= 1 THEN 0.0
                 ELSE (coalesce(v_{d}.holders, 1) - 1) / (z.size - 1) END AS {d}_peer_share"""
        for d in PEER_DIMENSIONS
    ]
    peer_joins = [
        f"""LEFT JOIN behavior_peer_values v_{d} ON v_{d}.peer_group = i.peer_group
                AND v_{d}.dimension = '{d}' AND v_{d}.value = w.{d}"""
        for d in PEER_DIMENSIONS
    ]
    base = f"""
        SELECT w.*, i.human, i.classification, i.peer_group,
               t.identity_first_seen, t.prior_events, t.previous_event_time,
               {", ".join(counts)},
               h.workload_home_address, h.workload_home_agent, h.workload_first_seen,
               {", ".join(peers)}
        FROM behavior_work w
        JOIN behavior_identity_info i ON i.identity = w.identity
        JOIN behavior_n_identity t ON t.row_id = w.row_id
        LEFT JOIN behavior_peer_sizes z ON z.peer_group = i.peer_group
        LEFT JOIN behavior_workload_homes h ON h.workload = w.workload
        {" ".join(count_joins)}
        {" ".join(peer_joins)}
    """  # noqa: S608
    novelty = {
        "action_novelty": "1.0 / (1 + n_action)",
        "address_novelty": "CASE WHEN via_service OR n_address IS NULL THEN 0 "
        "ELSE 1.0 / (1 + n_address) END",
        "network_novelty": "CASE WHEN via_service OR n_network IS NULL THEN 0 "
        "ELSE 1.0 / (1 + n_network) END",
        "agent_novelty": "CASE WHEN n_agent IS NULL OR agent IN ('aws-internal', 'aws-service') "
        "THEN 0 ELSE 1.0 / (1 + n_agent) END",
        "region_novelty": "CASE WHEN n_region IS NULL THEN 0 ELSE 1.0 / (1 + n_region) END",
        "hour_novelty": "1.0 / (1 + n_hour)",
        "action_peer_rarity": "1.0 - action_peer_share",
        "agent_peer_rarity": "CASE WHEN agent IS NULL THEN 0 ELSE 1.0 - agent_peer_share END",
        "network_peer_rarity": "CASE WHEN network IS NULL OR via_service THEN 0 "
        "ELSE 1.0 - network_peer_share END",
        "failure_novelty": "CASE WHEN failed THEN 1.0 / (1 + n_failed_action) ELSE 0 END",
        "youth": "1.0 / sqrt(1 + prior_events)",
        # Several new things at once, from an identity with a history: isolation forests
        # split one feature at a time, so a combination needs a feature of its own.
        "surprise": f"({' + '.join(_SURPRISE_TERMS)}) / {len(_SURPRISE_TERMS)}.0 "
        "* (1.0 - 1.0 / sqrt(1 + prior_events))",
    }
    assert tuple(novelty) == FEATURE_COLUMNS
    features = ", ".join(
        f"CAST(round(coalesce({expression}, 0), 2) AS REAL) AS {name}"
        for name, expression in novelty.items()
    )
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE behavior_scored AS
        SELECT *, hash({", ".join(FEATURE_COLUMNS)}) AS vector_hash,
               CAST(NULL AS DOUBLE) AS score
        FROM (
            SELECT b.*,
                   b.event_time >= b.identity_first_seen + INTERVAL {learning} SECOND
                       AND b.prior_events >= {int(settings.min_baseline_events)} AS established,
                   {features}
            FROM ({base}) b
        )
        """  # noqa: S608
    )
    for name in (
        "behavior_n_identity",
        *(f"behavior_n_{d}" for d in IDENTITY_DIMENSIONS),
        *(f"behavior_n_workload_{d}" for d in WORKLOAD_DIMENSIONS),
    ):
        connection.execute(f"DROP TABLE IF EXISTS {name}")
    _secret_reads(connection, has_context)


def _identity_info(
    connection: duckdb.DuckDBPyConnection, records: dict[str, IdentityRecord]
) -> None:
    """Classification, peer group and the pre-run first time and count of every identity."""
    connection.execute(
        """
        CREATE OR REPLACE TEMP TABLE behavior_identity_info (
            identity VARCHAR PRIMARY KEY, human BOOLEAN, classification VARCHAR,
            peer_group VARCHAR, base_first_seen TIMESTAMPTZ, base_events BIGINT,
            base_previous_time TIMESTAMPTZ
        )
        """
    )
    rows = [
        (
            record.identity,
            record.human,
            record.classification,
            record.peer_group,
            record.previous_first_seen,
            record.previous_events,
        )
        for record in records.values()
    ]
    if rows:
        connection.executemany(
            "INSERT INTO behavior_identity_info VALUES (?, ?, ?, ?, ?, ?, NULL)", rows
        )
    # The identity's last event before its first row in this run, from the day table. A
    # day with events both before and after that row gives a gap under a day, which is all
    # dormancy needs to know.
    connection.execute(
        """
        UPDATE behavior_identity_info SET base_previous_time = p.previous
        FROM (
            SELECT f.identity, max(CASE WHEN d.first_time < f.first_time
                                        THEN least(d.last_time, f.first_time) END) AS previous
            FROM (SELECT identity, min(event_time) AS first_time FROM behavior_work
                  GROUP BY identity) f
            JOIN behavior_days d ON d.identity = f.identity AND d.day <= CAST(f.first_time AS DATE)
            GROUP BY f.identity
        ) p
        WHERE behavior_identity_info.identity = p.identity
        """
    )


def _peer_values(connection: duckdb.DuckDBPyConnection) -> None:
    """Count the identities of each peer group that ever had each action, agent and network.

    Counts include this run's rows, so they are as of the end of the run. A peer share is a
    property of the group, not of the moment.
    """
    dimensions = ", ".join(f"'{d}'" for d in PEER_DIMENSIONS)
    values = " UNION ".join(
        f"SELECT identity, '{d}' AS dimension, {d} AS value FROM behavior_work "  # noqa: S608
        f"WHERE {d} IS NOT NULL"
        for d in PEER_DIMENSIONS
    )
    connection.execute(
        """
        CREATE OR REPLACE TEMP TABLE behavior_peer_members AS
        SELECT identity, peer_group FROM behavior_identities
        WHERE identity NOT IN (SELECT identity FROM behavior_identity_info)
        UNION ALL
        SELECT identity, peer_group FROM behavior_identity_info
        """
    )
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE behavior_peer_values AS
        SELECT m.peer_group, v.dimension, v.value, count(DISTINCT v.identity) AS holders
        FROM (
            SELECT subject AS identity, dimension, value FROM behavior_profile
            WHERE subject_kind = 'identity' AND dimension IN ({dimensions})
            UNION {values}
        ) v
        JOIN behavior_peer_members m ON m.identity = v.identity
        GROUP BY ALL
        """  # noqa: S608
    )
    connection.execute(
        "CREATE OR REPLACE TEMP TABLE behavior_peer_sizes AS "
        "SELECT peer_group, count(*) AS size FROM behavior_peer_members GROUP BY peer_group"
    )


def _workload_homes(connection: duckdb.DuckDBPyConnection) -> None:
    """The home of each workload key: the address and agent of its first direct call.

    Calls through AWS services and VPC endpoints neither define nor break a home. The
    first call is the earliest stored one or the earliest of this run, whichever is first.
    """
    connection.execute(
        """
        CREATE OR REPLACE TEMP TABLE behavior_workload_homes AS
        WITH work AS (
            SELECT workload, min(event_time) AS first_seen,
                   arg_min(address, (event_time, ev_key)) AS address,
                   arg_min(agent, (event_time, ev_key)) AS agent
            FROM behavior_work
            WHERE workload IS NOT NULL AND NOT via_service
            GROUP BY workload
        ),
        stored AS (
            SELECT subject AS workload, dimension, arg_min(value, first_seen) AS value,
                   min(first_seen) AS first_seen
            FROM behavior_profile
            WHERE subject_kind = 'workload' AND dimension IN ('address', 'agent')
              AND subject IN (SELECT workload FROM work)
            GROUP BY subject, dimension
        )
        SELECT w.workload,
               CASE WHEN sa.first_seen < w.first_seen THEN sa.value ELSE w.address END
                   AS workload_home_address,
               CASE WHEN sg.first_seen < w.first_seen THEN sg.value ELSE w.agent END
                   AS workload_home_agent,
               least(sa.first_seen, w.first_seen) AS workload_first_seen
        FROM work w
        LEFT JOIN stored sa ON sa.workload = w.workload AND sa.dimension = 'address'
        LEFT JOIN stored sg ON sg.workload = w.workload AND sg.dimension = 'agent'
        """
    )


def _secret_reads(connection: duckdb.DuckDBPyConnection, has_context: bool) -> None:
    context = (
        "count(CASE WHEN NOT r.in_batch THEN 1 END) OVER (PARTITION BY r.identity, r.target)"
        if has_context
        else "0"
    )
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE behavior_secret_reads AS
        SELECT r.*,
               CASE WHEN r.target LIKE 'filters:%'
                        THEN least(greatest(coalesce(TRY_CAST(split_part(r.target, '#', -1)
                                                              AS INTEGER), 20), 1), 20)
                    WHEN r.target LIKE 'path:%' THEN 10
                    ELSE 1 END AS weight,
               coalesce(p.events, 0) - {context}
               + row_number() OVER (PARTITION BY r.identity, r.target
                                    ORDER BY r.event_time, r.ev_key) - 1 AS n_target
        FROM (
            SELECT ev_key, event_id, event_time, identity, credential, human, established,
                   operation, failed, in_batch, unnest(secret_targets) AS target
            FROM behavior_scored WHERE secret_targets IS NOT NULL
        ) r
        LEFT JOIN behavior_profile p ON p.subject_kind = 'identity' AND p.subject = r.identity
            AND p.dimension = 'secret' AND p.value = r.target
        """  # noqa: S608
    )


def _has_context(connection: duckdb.DuckDBPyConnection) -> bool:
    row = connection.execute("SELECT count(*) FROM behavior_work WHERE NOT in_batch").fetchone()
    return bool(row and row[0])
