"""Credential used away from its workload.

The key is the workload, not the access key, because instance credentials rotate every few
hours while the session keeps its name. A workload is an EC2 instance-role session (role and
session name `i-…`), another role session, a long-lived key of a non-human user, or a
Kubernetes service account. The first direct call of the key defines its home address and client;
there is no learning window. Calls made by AWS services for the caller or through a VPC
endpoint are allowed.

- Instance sessions belong to one machine, so any other address is foreign, even one that
  is ordinary for the account: high, and critical with a client the session never used or
  from an address where a user's long-term credentials are in use. A first use from such
  an address is high on its own, because instances do not share addresses with people's
  keys. A new client from the home address is low (another program on the instance).
- Other workloads move between addresses (serverless, CI runners, pod restarts), so only a
  new address with a client the key never used is reported (high); a new client alone is
  low.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

from warden.behavior.detectors.base import Description, RunContext, SqlDetector, listing, moment
from warden.behavior.model import Hit, Severity


class OffWorkload(SqlDetector):
    id: ClassVar[str] = "off-workload-credential"
    title: ClassVar[str] = "Credential used away from its workload"
    techniques: ClassVar[tuple[str, ...]] = ("T1552.005", "T1078.004")

    def query(self, run: RunContext) -> tuple[str, Sequence[Any]]:
        window = int(run.settings.shared_address_window.total_seconds())
        sql = f"""
            WITH candidates AS (
                SELECT ev_key, event_id, event_time, identity, credential, human, in_batch,
                       workload, workload_kind, session_name, address, agent,
                       workload_home_address AS home_address,
                       workload_home_agent AS home_agent,
                       workload_first_seen AS home_since,
                       n_workload_address, n_workload_agent,
                       address IS DISTINCT FROM workload_home_address AS foreign_address,
                       n_workload_address = 0 AS new_address,
                       n_workload_agent = 0 AND event_time > workload_first_seen AS new_agent
                FROM behavior_scored
                WHERE workload IS NOT NULL AND NOT human AND NOT via_service
            ),
            shared AS (
                SELECT c.ev_key, list(DISTINCT p.subject ORDER BY p.subject) AS users
                FROM candidates c
                JOIN behavior_profile p ON p.subject_kind = 'identity'
                    AND p.dimension = 'address' AND p.value = c.address
                    AND p.first_seen <= c.event_time + INTERVAL {window} SECOND
                    AND p.last_seen >= c.event_time - INTERVAL {window} SECOND
                JOIN behavior_identities u ON u.identity = p.subject
                    AND u.identity_type IN ('IAMUser', 'Root')
                WHERE c.workload_kind = 'instance'
                GROUP BY c.ev_key
            )
            SELECT c.*, s.users AS shared_with
            FROM candidates c LEFT JOIN shared s ON s.ev_key = c.ev_key
            WHERE (c.workload_kind = 'instance'
                   AND (c.foreign_address OR c.new_agent OR s.users IS NOT NULL))
               OR (c.workload_kind <> 'instance' AND c.new_agent)
        """  # noqa: S608
        return sql, ()

    def severity(self, row: dict[str, Any]) -> Severity:
        shared = bool(row["shared_with"])
        if row["workload_kind"] == "instance":
            if row["foreign_address"] and (row["new_agent"] or shared):
                return Severity.CRITICAL
            if row["foreign_address"] or shared:
                return Severity.HIGH
            return Severity.LOW
        if row["new_address"] and row["new_agent"]:
            return Severity.HIGH
        return Severity.LOW

    def group(self, row: dict[str, Any]) -> str:
        return str(row["workload"])

    def describe(self, hits: Sequence[Hit], run: RunContext) -> Description:
        first = hits[0].facts
        kind = first["workload_kind"]
        addresses = Counter(hit.facts["address"] for hit in hits)
        agents = Counter(hit.facts["agent"] for hit in hits)
        evidence = [
            f"{_KIND_NAMES[kind]} {first['workload']} has used {first['home_address']} "
            f"with client {first['home_agent']} since {moment(first['home_since'])}",
            f"used from {listing(list(addresses))} with client {listing(list(agents))} "
            f"({len(hits)} event{'s' if len(hits) != 1 else ''})",
        ]
        users = sorted({user for hit in hits for user in hit.facts["shared_with"] or ()})
        if users:
            evidence.append(
                f"address also used by long-term credentials of {listing(users)} within "
                f"{int(run.settings.shared_address_window.total_seconds() // 60)} minutes"
            )
        baseline = {
            "kind": kind,
            "workload": first["workload"],
            "home_address": first["home_address"],
            "home_agent": first["home_agent"],
            "home_since": moment(first["home_since"]),
            "observed_addresses": sorted(a for a in addresses if a),
            "observed_agents": sorted(a for a in agents if a),
            "shared_with": users,
        }
        return Description(evidence, baseline, list(self.techniques))


_KIND_NAMES = {
    "instance": "EC2 instance-role session",
    "session": "role session",
    "key": "long-lived key",
    "service_account": "service account",
}
