"""Fold a run's new events into the stored baselines.

Only new rows (`in_batch`) are added: context rows were added by the run that first saw
them. Every update is an upsert keyed by subject, dimension and value that widens first and
last seen and adds counts, so baselines grow with the number of distinct values, not with
the number of events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from warden.behavior.store import FEATURE_COLUMNS

if TYPE_CHECKING:
    import duckdb

    from warden.behavior.identities import IdentityRecord

_PROFILE_ROWS = """
    SELECT 'identity' AS kind, identity AS subject, 'action' AS dimension, action AS value,
           event_time FROM behavior_work WHERE in_batch
    UNION ALL SELECT 'identity', identity, 'failed_action', failed_action, event_time
           FROM behavior_work WHERE in_batch
    UNION ALL SELECT 'identity', identity, 'address', address, event_time
           FROM behavior_work WHERE in_batch
    UNION ALL SELECT 'identity', identity, 'network', network, event_time
           FROM behavior_work WHERE in_batch
    UNION ALL SELECT 'identity', identity, 'agent', agent, event_time
           FROM behavior_work WHERE in_batch
    UNION ALL SELECT 'identity', identity, 'region', region, event_time
           FROM behavior_work WHERE in_batch
    UNION ALL SELECT 'identity', identity, 'hour', hour, event_time
           FROM behavior_work WHERE in_batch
    UNION ALL SELECT 'identity', identity, 'k8s_class', k8s_class, event_time
           FROM behavior_work WHERE in_batch
    UNION ALL SELECT 'identity', identity, 'secret', target, event_time
           FROM behavior_secret_reads WHERE in_batch
    UNION ALL SELECT 'credential', credential, 'address', address, event_time
           FROM behavior_work WHERE in_batch AND credential IS NOT NULL
    UNION ALL SELECT 'credential', credential, 'agent', agent, event_time
           FROM behavior_work WHERE in_batch AND credential IS NOT NULL
    UNION ALL SELECT 'workload', workload, 'address', address, event_time
           FROM behavior_work WHERE in_batch AND workload IS NOT NULL AND NOT via_service
    UNION ALL SELECT 'workload', workload, 'agent', agent, event_time
           FROM behavior_work WHERE in_batch AND workload IS NOT NULL AND NOT via_service
"""


def update_baselines(
    connection: duckdb.DuckDBPyConnection,
    records: dict[str, IdentityRecord],
    sample_size: int,
) -> None:
    """Upsert identities, profile values, active days and the model's sample."""
    rows = [record.row() for record in records.values()]
    if rows:
        placeholders = ", ".join("?" for _ in rows[0])
        connection.executemany(
            f"INSERT OR REPLACE INTO behavior_identities VALUES ({placeholders})",  # noqa: S608
            rows,
        )
    connection.execute(
        f"""
        INSERT INTO behavior_profile
        SELECT kind, subject, dimension, value, min(event_time), max(event_time), count(*)
        FROM ({_PROFILE_ROWS}) WHERE value IS NOT NULL AND subject IS NOT NULL
        GROUP BY kind, subject, dimension, value
        ON CONFLICT DO UPDATE SET
            first_seen = least(behavior_profile.first_seen, excluded.first_seen),
            last_seen = greatest(behavior_profile.last_seen, excluded.last_seen),
            events = behavior_profile.events + excluded.events
        """  # noqa: S608
    )
    connection.execute(
        """
        INSERT INTO behavior_days
        SELECT identity, CAST(event_time AS DATE), min(event_time), max(event_time), count(*)
        FROM behavior_work WHERE in_batch GROUP BY ALL
        ON CONFLICT DO UPDATE SET
            first_time = least(behavior_days.first_time, excluded.first_time),
            last_time = greatest(behavior_days.last_time, excluded.last_time),
            events = behavior_days.events + excluded.events
        """
    )
    _update_sample(connection, sample_size)


def _update_sample(connection: duckdb.DuckDBPyConnection, sample_size: int) -> None:
    """Keep a uniform sample of every feature vector ever seen (bottom-k by a hash draw).

    Each event gets a fixed pseudo-random draw from its key, and the sample keeps the
    `sample_size` smallest draws of all runs together, so it is the same whatever the runs'
    boundaries and however the threads interleave.
    """
    columns = ", ".join(FEATURE_COLUMNS)
    connection.execute(
        f"""
        INSERT INTO behavior_model_sample
        SELECT {columns}, hash(ev_key) / 18446744073709551615.0 AS draw
        FROM behavior_scored WHERE in_batch
        ORDER BY draw LIMIT {int(sample_size)}
        """  # noqa: S608
    )
    connection.execute(
        f"""
        DELETE FROM behavior_model_sample WHERE draw > (
            SELECT max(draw) FROM (SELECT draw FROM behavior_model_sample
                                   ORDER BY draw LIMIT {int(sample_size)}))
        """  # noqa: S608
    )
