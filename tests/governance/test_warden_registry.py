"""Warden's own registry as a source: a real SQLite datastore, and a stand-in reader for leases."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from warden.governance import AuditOptions, run_audit
from warden.store import AuditEvent, Datastore, EntrySpec

AS_OF = datetime(2030, 6, 1, tzinfo=UTC)
CREATED = datetime(2030, 1, 1, tzinfo=UTC)
AGENT = "spiffe://example.org/spire/agent/join_token/t1"


@pytest.fixture
def datastore_path(tmp_path):
    path = tmp_path / "datastore.sqlite3"
    with Datastore.open(path, clock=lambda: CREATED) as store:
        live = store.create_entry(
            EntrySpec(
                spiffe_id="spiffe://example.org/billing",
                parent_id=AGENT,
                selectors=("k8s:ns:billing",),
                owner="team-billing",
                x509_svid_ttl=900,
            ),
            actor="unix:alice",
        )
        store.create_entry(
            EntrySpec(
                spiffe_id="spiffe://example.org/old-batch",
                parent_id=AGENT,
                selectors=("k8s:ns:batch",),
                owner="ex-employee",
                x509_svid_ttl=900,
            ),
            actor="unix:alice",
        )
        store.record_deliveries([(live.id, AS_OF - timedelta(days=2))])
        store.record_attestation(
            AGENT,
            attestation_type="join_token",
            serial_number="0a",
            expires_at=AS_OF + timedelta(hours=1),
            owner="alice",
            selectors=["join_token:t1"],
            actor="server",
        )
        store.append_audit(
            [
                AuditEvent(
                    action="svid.x509.sign", actor=AGENT, subject="spiffe://example.org/billing"
                )
            ]
        )
    return path


def test_entries_and_agents_from_datastore(datastore_path, tmp_path):
    roster = tmp_path / "roster.txt"
    roster.write_text("team-billing\nalice\n")
    report = run_audit(
        AuditOptions(
            warden_datastores=[str(datastore_path)],
            roster=roster,
            as_of=AS_OF,
            workspace=tmp_path / "workspace",
        )
    )

    identities = {i.id: i for i in report.identities}
    billing = identities["spiffe://example.org/billing"]
    assert billing.owner == "team-billing"
    assert billing.owner_source == "registry"
    assert billing.last_used_at == AS_OF - timedelta(days=2)
    agent = identities[AGENT]
    assert agent.kind == "warden_agent"
    assert agent.credentials["svid:0a"].expires_at == AS_OF + timedelta(hours=1)

    checks = {(f.check, f.identity) for f in report.findings}
    assert ("NHI1-OWNER-LEFT", "spiffe://example.org/old-batch") in checks
    assert ("NHI1-DORMANT", "spiffe://example.org/old-batch") in checks
    assert not any(identity == "spiffe://example.org/billing" for _check, identity in checks)
    source = next(s for s in report.sources if s["type"] == "warden_registry")
    assert source["audit_records"] == 4  # entry creations, attestation, signing


def test_audit_records_are_read_once(datastore_path, tmp_path):
    workspace = tmp_path / "workspace"
    options = AuditOptions(
        warden_datastores=[str(datastore_path)], as_of=AS_OF, workspace=workspace
    )
    first = run_audit(options)
    second = run_audit(options)
    counts = [
        next(s for s in r.sources if s["type"] == "warden_registry")["audit_records"]
        for r in (first, second)
    ]
    assert counts == [4, 0]


def test_unreadable_datastore_is_a_warning(tmp_path):
    missing = tmp_path / "not-a-datastore.sqlite3"
    missing.write_text("not sqlite")
    report = run_audit(AuditOptions(warden_datastores=[str(missing)], as_of=AS_OF))
    assert len(report.warnings) == 1
    assert "cannot open datastore" in report.warnings[0].message


def test_password_redacted_from_label(tmp_path):
    url = "postgresql://warden:s3cret-value@127.0.0.1:1/warden"
    report = run_audit(AuditOptions(warden_datastores=[url], as_of=AS_OF))
    assert "s3cret-value" not in str(report.to_json())
    assert report.warnings[0].path == "postgresql://warden:***@127.0.0.1:1/warden"


@dataclass(frozen=True)
class Lease:
    lease_id: str
    kind: str
    spiffe_id: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None
    owners: tuple[str, ...] = ()


@dataclass
class StandInReader:
    """The registry read interface with leases, which the datastore does not store yet."""

    leases_list: list[Lease] = field(default_factory=list)

    def entries(self):
        return []

    def agents(self):
        return []

    def leases(self):
        return self.leases_list


def test_leases_become_credentials():
    reader = StandInReader(
        [
            Lease(
                "l-1", "database", "spiffe://example.org/api", CREATED, CREATED + timedelta(hours=1)
            ),
            Lease("l-2", "database", "spiffe://example.org/api", CREATED, None),
        ]
    )
    report = run_audit(AuditOptions(warden_readers=[reader], as_of=AS_OF))
    api = next(i for i in report.identities if i.id == "spiffe://example.org/api")
    assert api.credentials["lease:l-1"].long_lived is False
    assert api.credentials["lease:l-2"].long_lived is True
    old = next(f for f in report.findings if f.check == "NHI7-OLD-SECRET")
    assert "lease:l-2" in old.evidence[0]
