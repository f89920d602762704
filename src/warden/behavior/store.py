"""Baseline and alert tables, kept in the audit's DuckDB workspace next to `activity`.

- `behavior_meta`: the last `activity` rowid folded into the baselines (rows are only ever
  appended, so every later rowid is new) and the run counter.
- `behavior_identities`: per identity, first and last seen, event count, and the facts the
  human or non-human classification reads (console and browser use, instance sessions,
  how the role was assumed), with the resulting classification and peer group.
- `behavior_profile`: per subject and dimension, every value seen with its first and last
  time and count. Subjects are identities (`identity`), credentials (`credential`) and
  workload keys (`workload`: an instance-role session, another role session, a long-lived
  key or a service account). Dimensions are `action`, `failed_action` (actions
  that failed), `address`, `network`, `agent` (the user-agent family), `region`, `hour`
  (UTC hour of day), `secret` (secret names read) and `k8s_class` (sensitive Kubernetes
  operations).
- `behavior_days`: per identity and UTC day, the first and last event time, for dormancy.
- `behavior_alerts`: every alert raised, so that later runs extend or retract them.
- `behavior_model_sample`: a bounded random sample of past feature vectors that the
  anomaly model is fitted on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

SCHEMA_VERSION = "1"

FEATURE_COLUMNS = (
    "action_novelty",
    "address_novelty",
    "network_novelty",
    "agent_novelty",
    "region_novelty",
    "hour_novelty",
    "action_peer_rarity",
    "agent_peer_rarity",
    "network_peer_rarity",
    "failure_novelty",
    "youth",
    "surprise",
)

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS behavior_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS behavior_identities (
        identity VARCHAR PRIMARY KEY,
        source VARCHAR,
        identity_type VARCHAR,
        first_seen TIMESTAMPTZ,
        last_seen TIMESTAMPTZ,
        events BIGINT,
        console_events BIGINT,
        browser_events BIGINT,
        instance_events BIGINT,
        long_lived_keys BIGINT,
        saml_assumptions BIGINT,
        web_identity_assumptions BIGINT,
        service_assumers VARCHAR[],
        human BOOLEAN,
        classification VARCHAR,
        peer_group VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS behavior_profile (
        subject_kind VARCHAR NOT NULL,
        subject VARCHAR NOT NULL,
        dimension VARCHAR NOT NULL,
        value VARCHAR NOT NULL,
        first_seen TIMESTAMPTZ,
        last_seen TIMESTAMPTZ,
        events BIGINT,
        PRIMARY KEY (subject_kind, subject, dimension, value)
    )""",
    """CREATE TABLE IF NOT EXISTS behavior_days (
        identity VARCHAR NOT NULL,
        day DATE NOT NULL,
        first_time TIMESTAMPTZ,
        last_time TIMESTAMPTZ,
        events BIGINT,
        PRIMARY KEY (identity, day)
    )""",
    """CREATE TABLE IF NOT EXISTS behavior_alerts (
        id VARCHAR PRIMARY KEY,
        detector VARCHAR NOT NULL,
        severity VARCHAR NOT NULL,
        identity VARCHAR NOT NULL,
        credential VARCHAR,
        human BOOLEAN,
        group_key VARCHAR,
        title VARCHAR,
        first_event_time TIMESTAMPTZ,
        last_event_time TIMESTAMPTZ,
        event_ids VARCHAR[],
        event_times TIMESTAMPTZ[],
        techniques VARCHAR[],
        evidence VARCHAR[],
        baseline JSON,
        score DOUBLE,
        drivers JSON,
        raised_run BIGINT,
        updated_run BIGINT
    )""",
    "CREATE TABLE IF NOT EXISTS behavior_model_sample ("
    + ", ".join(f"{name} REAL" for name in FEATURE_COLUMNS)
    + ", draw DOUBLE)",
]


def ensure_schema(connection: duckdb.DuckDBPyConnection) -> None:
    for statement in _SCHEMA:
        connection.execute(statement)
    if get_meta(connection, "schema_version") is None:
        set_meta(connection, "schema_version", SCHEMA_VERSION)


def get_meta(connection: duckdb.DuckDBPyConnection, key: str) -> str | None:
    row = connection.execute("SELECT value FROM behavior_meta WHERE key = ?", [key]).fetchone()
    return None if row is None else str(row[0])


def set_meta(connection: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    connection.execute("INSERT OR REPLACE INTO behavior_meta VALUES (?, ?)", [key, value])
