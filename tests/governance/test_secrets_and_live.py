"""Leaked secrets linked to identities, and live collection against a local moto server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import boto3
import pytest
from moto.server import ThreadedMotoServer

from warden.governance import AuditOptions, run_audit
from warden.governance.sample import sample_options

AS_OF = datetime(2024, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Secret:
    """A stand-in with the non-secret fields of a warden.scan finding."""

    rule_id: str
    rule_name: str
    provider: str
    long_lived: bool | None
    path: str
    line: int
    redacted: str
    fingerprint: str
    identifier: str | None = None
    commit: str | None = None


def scanner_of(*secrets: Secret):
    def scan(_path):
        return list(secrets)

    return scan


def aws_key(key_id: str, fingerprint: str) -> Secret:
    return Secret(
        "aws-access-key",
        "AWS access key",
        "aws",
        True,
        "deploy/env.sh",
        3,
        key_id[:8] + "…",
        fingerprint,
        identifier=key_id,
    )


def test_leaked_key_linked_through_cloudtrail(tmp_path):
    options = sample_options()
    options.secrets = [tmp_path]
    options.secret_scanner = scanner_of(aws_key("AKIAEXAMPLEDEPLOY001", "f1"))
    report = run_audit(options)
    finding = next(f for f in report.findings if f.check == "NHI2-LEAKED-SECRET")
    assert finding.identity == "arn:aws:iam::210987654321:user/ci-deployer"
    assert str(finding.severity) == "critical"
    assert finding.details["linked"] is True
    assert "deploy/env.sh:3" in finding.evidence[0]


def test_unlinked_key_reported_as_such(tmp_path):
    report = run_audit(
        AuditOptions(
            secrets=[tmp_path],
            as_of=AS_OF,
            secret_scanner=scanner_of(aws_key("AKIAUNKNOWN000000001", "f2")),
        )
    )
    finding = next(f for f in report.findings if f.check == "NHI2-LEAKED-SECRET")
    assert finding.identity == "leaked:f2"
    assert finding.details["linked"] is False
    assert "could not be linked: AKIAUNKNOWN000000001" in finding.evidence[1]
    assert any(i.id == "leaked:f2" for i in report.identities)


def test_scanner_failure_is_a_warning(tmp_path):
    def failing(_path):
        raise FileNotFoundError("no such folder")

    report = run_audit(
        AuditOptions(secrets=[tmp_path / "missing"], as_of=AS_OF, secret_scanner=failing)
    )
    assert report.warnings[0].message == "secret scan failed: no such folder"
    assert report.findings == []


@pytest.fixture
def moto_endpoint(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield f"http://{host}:{port}"
    server.stop()


def test_live_collection_links_listed_keys(moto_endpoint, tmp_path):
    session = boto3.session.Session(region_name="us-east-1")
    iam = session.client("iam", endpoint_url=moto_endpoint)
    iam.create_user(UserName="nightly-export", Tags=[{"Key": "owner", "Value": "team-data"}])
    key_id = iam.create_access_key(UserName="nightly-export")["AccessKey"]["AccessKeyId"]
    iam.create_role(
        RoleName="open-role",
        AssumeRolePolicyDocument=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},'
            '"Action":"sts:AssumeRole"}]}'
        ),
    )

    class EndpointSession:
        def client(self, name):
            return session.client(name, endpoint_url=moto_endpoint)

    report = run_audit(
        AuditOptions(
            aws_live=True,
            aws_session=EndpointSession(),
            secrets=[tmp_path],
            secret_scanner=scanner_of(aws_key(key_id, "f3")),
            workspace=tmp_path / "ws",
            as_of=datetime.now(UTC),
        )
    )

    user = next(i for i in report.identities if i.name == "nightly-export")
    assert user.owner == "team-data"
    assert key_id in user.credentials
    leaked = next(f for f in report.findings if f.check == "NHI2-LEAKED-SECRET")
    assert leaked.identity == user.id
    trust = next(f for f in report.findings if f.check == "NHI5-PERMISSIVE-TRUST")
    assert trust.identity.endswith(":role/open-role")
    assert str(trust.severity) == "critical"
    assert (tmp_path / "ws" / "aws-live" / "credential-report.csv").exists()


def test_live_collection_failure_is_a_warning(tmp_path):
    class BrokenSession:
        def client(self, name):
            return boto3.session.Session(region_name="us-east-1").client(
                name,
                endpoint_url="http://127.0.0.1:9",
                aws_access_key_id="x",
                aws_secret_access_key="y",
                config=__import__("botocore.config").config.Config(
                    retries={"max_attempts": 1}, connect_timeout=1
                ),
            )

    report = run_audit(AuditOptions(aws_live=True, aws_session=BrokenSession(), as_of=AS_OF))
    assert "live collection failed" in report.warnings[0].message


def test_real_scanner_links_key_seen_in_cloudtrail(tmp_path):
    pytest.importorskip("warden.scan", reason="the secret scanner is not installed")
    from test_log_ingestion import event, write_records

    key_id = "AKIAQ3EGRXNB7TCM2H5L"
    write_records(tmp_path / "logs" / "one.json", [event(1, user="export-bot", key=key_id)])
    code = tmp_path / "repo"
    code.mkdir()
    (code / "settings.env").write_text(
        f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY=u8Jq2vQx7Lw0Zp4Rk9Nc3Ty6Hb1Md5Fs8Ge2Va7W\n"
    )
    report = run_audit(
        AuditOptions(
            cloudtrail=[tmp_path / "logs"], secrets=[code], workspace=tmp_path / "ws", as_of=AS_OF
        )
    )
    leaked = [f for f in report.findings if f.check == "NHI2-LEAKED-SECRET"]
    assert [f.identity for f in leaked] == ["arn:aws:iam::111122223333:user/export-bot"]
    assert leaked[0].details["path"] == "settings.env"
    assert "u8Jq2vQx" not in str(report.to_json())
