"""Attacks on `warden audit`: its sources, workspace, policy evaluation and reports.

Every test builds its own input under tmp_path and audits it in this process or as `warden
audit` in a child process. Nothing here contacts a host: the datastore tests aim at a closed
port on 127.0.0.1.

Each test marked `xfail(strict=True)` reproduces a problem the audit still has, and its
reason names the problem. The others are attacks the audit withstands, kept as regression
tests.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from rich.console import Console

from warden.governance import (
    AuditError,
    AuditOptions,
    AuditReport,
    jsonstream,
    render_html,
    render_table,
    run_audit,
)

AS_OF = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
ACCOUNT = "123456789012"
ARN = f"arn:aws:iam::{ACCOUNT}:"
WARDEN = [sys.executable, "-m", "warden"]
ADMIN = {"Effect": "Allow", "Action": "*", "Resource": "*"}


def write_json(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def audit(**options: Any) -> AuditReport:
    return run_audit(AuditOptions(as_of=AS_OF, **options))


def warden(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WARDEN, *arguments], capture_output=True, text=True, timeout=120, check=False
    )


def panel_text(stderr: str) -> str:
    """Return the text of Typer's error panel without its borders, wrapping and spaces."""
    return "".join(stderr.replace("│", "").split())


def report_text(report: AuditReport) -> str:
    return json.dumps(report.to_json())


def identity_ids(report: AuditReport) -> set[str]:
    return {identity.id for identity in report.identities + report.humans}


def iam_user(name: str, statements: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "UserName": name,
        "Arn": f"{ARN}user/{name}",
        "Path": "/",
        "CreateDate": "2024-01-01T00:00:00Z",
        "UserPolicyList": [{"PolicyName": "inline", "PolicyDocument": {"Statement": statements}}],
        "GroupList": [],
        "AttachedManagedPolicies": [],
        "Tags": [],
        **fields,
    }


def iam_role(name: str, statements: list[dict[str, Any]], trusted: str) -> dict[str, Any]:
    return {
        "RoleName": name,
        "Arn": f"{ARN}role/{name}",
        "Path": "/",
        "CreateDate": "2024-01-01T00:00:00Z",
        "AssumeRolePolicyDocument": {
            "Statement": [
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": trusted}}
            ]
        },
        "RolePolicyList": [{"PolicyName": "inline", "PolicyDocument": {"Statement": statements}}],
        "AttachedManagedPolicies": [],
        "InstanceProfileList": [],
        "Tags": [],
    }


def authorization_details(
    users: list[dict[str, Any]], roles: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "UserDetailList": users,
        "RoleDetailList": roles or [],
        "GroupDetailList": [],
        "Policies": [],
    }


def cloudtrail_event(number: int, user: str = "ci", **fields: Any) -> dict[str, Any]:
    return {
        "eventVersion": "1.08",
        "eventID": f"event-{number}",
        "eventTime": f"2024-05-01T00:{number // 60 % 60:02d}:{number % 60:02d}Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15.0",
        "userIdentity": {
            "type": "IAMUser",
            "arn": f"{ARN}user/{user}",
            "accountId": ACCOUNT,
            "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
            "userName": user,
        },
        **fields,
    }


def closed_port() -> int:
    """Return a loopback port that nothing listens on, so a connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Source files that are valid JSON but not in the documented shape. Each file also contains
# one well-formed item, which the audit must still read.

GOOD_USER = iam_user("good", [])
AUTHORIZATION_CASES: dict[str, dict[str, list[Any]]] = {
    "user_not_object": {"UserDetailList": ["x"]},
    "arn_not_text": {"UserDetailList": [{"UserName": "bad", "Arn": 5}]},
    "policy_not_object": {"Policies": ["x"]},
    "policy_version_not_object": {
        "Policies": [{"Arn": f"{ARN}policy/p", "PolicyVersionList": ["x"]}]
    },
    "group_policies_not_list": {"GroupDetailList": [{"GroupName": "g", "GroupPolicyList": "x"}]},
    "role_last_used_not_object": {
        "RoleDetailList": [{"RoleName": "r", "Arn": f"{ARN}role/r", "RoleLastUsed": "x"}]
    },
    "instance_profile_not_object": {
        "RoleDetailList": [{"RoleName": "r", "Arn": f"{ARN}role/r", "InstanceProfileList": ["x"]}]
    },
    "boundary_not_object": {"UserDetailList": [iam_user("bad", [], PermissionsBoundary="x")]},
    "attached_policy_not_object": {
        "UserDetailList": [iam_user("bad", [], AttachedManagedPolicies=["arn"])]
    },
}


@pytest.mark.parametrize("case", sorted(AUTHORIZATION_CASES))
def test_misshapen_authorization_details_warn(tmp_path, case):
    document = authorization_details([GOOD_USER])
    for key, items in AUTHORIZATION_CASES[case].items():
        document[key] = document[key] + items
    path = write_json(tmp_path / "details.json", document)

    report = audit(aws_authorization_details=[path])

    assert f"{ARN}user/good" in identity_ids(report)
    assert any(warning.path == str(path) for warning in report.warnings)


GOOD_SERVICE_ACCOUNT = {"kind": "ServiceAccount", "metadata": {"name": "good", "namespace": "apps"}}
KUBERNETES_CASES: dict[str, dict[str, Any]] = {
    "metadata_not_object": {"kind": "ServiceAccount", "metadata": "x"},
    "labels_not_object": {"kind": "ServiceAccount", "metadata": {"name": "a", "labels": ["x"]}},
    "pod_spec_not_object": {"kind": "Pod", "metadata": {"name": "p"}, "spec": "x"},
    "secret_annotations_not_object": {
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "s", "annotations": ["x"]},
    },
    "role_ref_not_object": {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "b"},
        "roleRef": "cluster-admin",
        "subjects": [{"kind": "ServiceAccount", "name": "a", "namespace": "apps"}],
    },
}


@pytest.mark.parametrize("case", sorted(KUBERNETES_CASES))
def test_misshapen_kubernetes_objects_warn(tmp_path, case):
    items = [KUBERNETES_CASES[case], GOOD_SERVICE_ACCOUNT]
    path = write_json(tmp_path / "objects.json", {"kind": "List", "items": items})

    report = audit(k8s_objects=[path])

    assert "system:serviceaccount:apps:good" in identity_ids(report)
    assert any(warning.path == str(path) for warning in report.warnings)


GOOD_DEPLOY_KEY = {
    "id": 7,
    "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample",
    "url": "https://api.github.com/repos/acme/app/keys/7",
    "title": "deploy",
    "read_only": True,
    "created_at": "2024-01-01T00:00:00Z",
}
GITHUB_CASES: dict[str, dict[str, Any]] = {
    "account_not_object": {"app_slug": "ci-bot", "account": "acme"},
    "permissions_not_object": {
        "app_slug": "ci-bot",
        "account": {"login": "acme"},
        "permissions": ["contents"],
    },
}


@pytest.mark.parametrize("case", sorted(GITHUB_CASES))
def test_misshapen_github_export_warns(tmp_path, case):
    path = write_json(tmp_path / "github.json", [GITHUB_CASES[case], GOOD_DEPLOY_KEY])

    report = audit(github=[path])

    assert "github:acme/app:deploy-key:7" in identity_ids(report)
    assert any(warning.path == str(path) for warning in report.warnings)


def test_oversized_csv_field_costs_one_row(tmp_path):
    path = tmp_path / "credential-report.csv"
    path.write_text(
        "user,arn,user_creation_time,password_enabled\n"
        f"big,{ARN}user/big,{'x' * 200_000},false\n"
        f"good,{ARN}user/good,2024-01-01T00:00:00+00:00,false\n",
        encoding="utf-8",
    )

    report = audit(aws_credential_reports=[path])

    assert f"{ARN}user/good" in identity_ids(report)
    assert any(w.path == str(path) and w.line == 2 for w in report.warnings)


def test_misshapen_audit_object_spares_workspace(tmp_path):
    # The object of a create request is applied when the workspace is summarised, so a bad
    # one stored in a kept workspace would break every later audit of it.
    events = [
        {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "auditID": f"audit-{index}",
            "stage": "ResponseComplete",
            "verb": "create",
            "user": {"username": "kubernetes-admin"},
            "objectRef": {"resource": resource, "namespace": "apps", "name": "x"},
            "responseStatus": {"code": 201},
            "requestReceivedTimestamp": "2024-05-01T00:00:00Z",
            "requestObject": request,
        }
        for index, (resource, request) in enumerate(
            [
                ("serviceaccounts", {"kind": "ServiceAccount", "metadata": "x"}),
                (
                    "secrets",
                    {
                        "kind": "Secret",
                        "type": "kubernetes.io/service-account-token",
                        "metadata": {"annotations": ["x"]},
                    },
                ),
                (
                    "serviceaccounts",
                    {"kind": "ServiceAccount", "metadata": {"name": "good", "namespace": "apps"}},
                ),
            ]
        )
    ]
    log = tmp_path / "audit.jsonl"
    log.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
    workspace = tmp_path / "workspace"

    first = audit(k8s_audit=[log], workspace=workspace)
    again = audit(workspace=workspace)

    for report in (first, again):
        assert "system:serviceaccount:apps:good" in identity_ids(report)
        assert any("audit.jsonl" in warning.path for warning in report.warnings)


# Terminal output: identity names, owners and suppressions come from the input, so they must
# reach the terminal as plain text.

HOSTILE_OWNER = "[link=https://attacker.example/]hand over[/link]\x1b]8;;https://x\x1b\\\x1b[2J"


def test_table_prints_names_as_plain_text(tmp_path):
    objects = write_json(
        tmp_path / "objects.json",
        {
            "kind": "List",
            "items": [
                {
                    "kind": "ServiceAccount",
                    "metadata": {
                        "name": "evil[/bold]",
                        "namespace": "apps",
                        "annotations": {"owner": HOSTILE_OWNER},
                    },
                }
            ],
        },
    )
    suppressions = tmp_path / "suppressions.yaml"
    suppressions.write_text(
        "- check: '*'\n"
        "  identity: '*evil[/bold]*'\n"
        "  accepted_by: '[/red]someone'\n"
        "  reason: old\n"
        "  expires: 2024-01-01\n",
        encoding="utf-8",
    )
    report = audit(k8s_objects=[objects], suppressions=suppressions)
    buffer = io.StringIO()

    render_table(report, Console(file=buffer, force_terminal=True, width=400))

    output = buffer.getvalue()
    assert "evil[/bold]" in output
    assert "[link=https://attacker.example/]" in output
    assert "\x1b]8;" not in output
    assert "\x1b[2J" not in output


def test_cli_error_with_markup_exits_two(tmp_path):
    objects = write_json(tmp_path / "objects.json", {"kind": "List", "items": []})
    missing = tmp_path / "accepted[/bold].yaml"

    result = warden("audit", "--k8s-objects", str(objects), "--suppressions", str(missing))

    assert result.returncode == 2, result.stderr
    assert "accepted[/bold].yaml" in result.stderr
    assert "Traceback" not in result.stderr


# Configuration files: a file that cannot be used stops the audit with AuditError (exit
# code 2), never with a traceback.


@pytest.mark.parametrize(
    ("option", "name", "text"),
    [
        ("suppressions", "suppressions.yaml", "- check: '*'\n  identity: [unclosed\n"),
        ("suppressions", "suppressions.yaml", "check: '*'\nidentity: '*'\n"),
        (
            "suppressions",
            "suppressions.yaml",
            "- check: '*'\n  identity: '*'\n  accepted_by: [a, b]\n  reason: r\n"
            "  expires: 2030-01-01\n",
        ),
        ("ownership_map", "owners.yaml", "'ci-*': [unclosed\n"),
        ("suppressions", "suppressions.yaml", "[" * 5000 + "]" * 5000 + "\n"),
        ("ownership_map", "owners.json", "[" * 5000 + "]" * 5000),
        ("roster", "missing.txt", None),
        ("roster", "roster-directory", "directory"),
    ],
    ids=[
        "suppressions_invalid_yaml",
        "suppressions_mapping_without_list",
        "suppression_field_not_text",
        "ownership_map_invalid_yaml",
        "suppressions_nested_too_deeply",
        "ownership_map_nested_too_deeply",
        "roster_missing",
        "roster_is_directory",
    ],
)
def test_unusable_configuration_is_audit_error(tmp_path, option, name, text):
    objects = write_json(tmp_path / "objects.json", {"kind": "List", "items": []})
    path = tmp_path / name
    if text == "directory":
        path.mkdir()
    elif text is not None:
        path.write_text(text, encoding="utf-8")

    with pytest.raises(AuditError, match=name):
        audit(k8s_objects=[objects], **{option: path})


@pytest.mark.timeout(60)
def test_suppression_alias_bomb_rejected(tmp_path):
    # Nine levels of nine aliases: str() of the reason would build 9**9 items.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 9)}]")
    lines.append("suppressions:")
    lines.append(
        "  - {check: '*', identity: '*', accepted_by: me, reason: *a9, expires: 2030-01-01}"
    )
    path = tmp_path / "suppressions.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    objects = write_json(tmp_path / "objects.json", {"kind": "List", "items": []})

    with pytest.raises(AuditError, match="reason"):
        audit(k8s_objects=[objects], suppressions=path)


def test_suppression_without_end_date_applies(tmp_path):
    objects = write_json(
        tmp_path / "objects.json", {"kind": "List", "items": [GOOD_SERVICE_ACCOUNT]}
    )
    path = tmp_path / "suppressions.yaml"
    path.write_text(
        "- {check: NHI1-NO-OWNER, identity: '*:good', accepted_by: me, reason: standby,"
        " expires: 9999-12-31}\n",
        encoding="utf-8",
    )

    report = audit(k8s_objects=[objects], suppressions=path)

    assert [f.check for f in report.suppressed] == ["NHI1-NO-OWNER"]
    assert report.expired_suppressions == []


# The workspace.


def test_workspace_in_use_is_audit_error(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; held = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "time.sleep(60)",
            str(workspace / "warden.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        objects = write_json(tmp_path / "objects.json", {"kind": "List", "items": []})

        with pytest.raises(AuditError, match="in use"):
            audit(k8s_objects=[objects], workspace=workspace)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("damage", ["not_duckdb", "path_is_file"])
def test_unusable_workspace_is_audit_error(tmp_path, damage):
    workspace = tmp_path / "workspace"
    if damage == "path_is_file":
        workspace.write_text("not a directory", encoding="utf-8")
    else:
        workspace.mkdir()
        (workspace / "warden.duckdb").write_bytes(b"not a database" * 1000)
    objects = write_json(tmp_path / "objects.json", {"kind": "List", "items": []})

    with pytest.raises(AuditError, match="workspace"):
        audit(k8s_objects=[objects], workspace=workspace)


def test_missing_workspace_alone_is_rejected(tmp_path):
    # A CI gate that audits a kept workspace must not pass because its path is wrong.
    missing = tmp_path / "no-such-workspace"

    result = warden("audit", "--workspace", str(missing), "--fail-on", "low")

    assert result.returncode == 2, result.stderr
    assert "noearlieraudit" in panel_text(result.stderr)
    assert not missing.exists()


def test_missing_source_path_is_rejected(tmp_path):
    objects = write_json(tmp_path / "objects.json", {"kind": "List", "items": []})
    missing = tmp_path / "cloudtrail-typo"

    result = warden(
        "audit", "--k8s-objects", str(objects), "--cloudtrail", str(missing), "--fail-on", "low"
    )

    assert result.returncode == 2, result.stderr
    assert "cloudtrail-typo" in panel_text(result.stderr)


def test_killed_ingest_then_rerun_counts_once(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    number = 0
    for index in range(300):
        events = []
        for _ in range(200):
            number += 1
            events.append(cloudtrail_event(number, user=f"user-{number % 20}"))
        (logs / f"delivery-{index:04d}.json.gz").write_bytes(
            gzip.compress(json.dumps({"Records": events}).encode())
        )
    workspace = tmp_path / "workspace"
    command = [
        *WARDEN,
        "audit",
        "--cloudtrail",
        str(logs),
        "--workspace",
        str(workspace),
        "--format",
        "json",
        "--as-of",
        "2024-06-01",
    ]
    # Kill the audit once the workspace exists, in the middle of reading the logs.
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (workspace / "warden.duckdb").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    child.send_signal(signal.SIGKILL)
    child.wait()

    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert sum(i["facts"].get("event_count", 0) for i in document["identities"]) == number
    with duckdb.connect(str(workspace / "warden.duckdb"), read_only=True) as connection:
        stored = connection.execute("SELECT count(*), count(DISTINCT event_id) FROM activity")
        assert stored.fetchone() == (number, number)


# Log directories.


@pytest.mark.timeout(60)
@pytest.mark.parametrize("special", ["fifo", "device_link"])
def test_special_file_in_log_directory_skipped(tmp_path, special):
    logs = tmp_path / "logs"
    write_json(logs / "good.json", {"Records": [cloudtrail_event(1)]})
    trap = logs / "trap.json"
    if special == "fifo":
        os.mkfifo(trap)
    else:
        trap.symlink_to("/dev/zero")

    report = audit(cloudtrail=[logs])

    assert f"{ARN}user/ci" in identity_ids(report)
    assert any(warning.path == str(trap) for warning in report.warnings)


@pytest.mark.timeout(60)
def test_fifo_in_github_directory_skipped(tmp_path):
    export = tmp_path / "github"
    write_json(export / "keys.json", [GOOD_DEPLOY_KEY])
    os.mkfifo(export / "trap.json")

    report = audit(github=[export])

    assert "github:acme/app:deploy-key:7" in identity_ids(report)
    assert any(warning.path == str(export / "trap.json") for warning in report.warnings)


def test_fifo_in_secrets_directory_skipped(tmp_path):
    pytest.importorskip("warden.scan", reason="the secret scanner is not installed")
    code = tmp_path / "repo"
    code.mkdir()
    (code / "settings.env").write_text("LOG_LEVEL=info\n", encoding="utf-8")
    os.mkfifo(code / "trap.env")

    result = subprocess.run(
        [*WARDEN, "audit", "--secrets", str(code), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def test_glob_characters_in_file_names(tmp_path):
    logs = tmp_path / "logs"
    number = 0
    for name in ("a1", "a[1]", "*", "b?"):
        events = []
        for _ in range(3):
            number += 1
            events.append(cloudtrail_event(number))
        write_json(logs / f"{name}.json", {"Records": events})

    report = audit(cloudtrail=[logs])

    assert report.sources[0]["events_ingested"] == number
    assert report.sources[0]["files_read"] == 4
    assert report.warnings == []


def test_quote_in_damaged_file_name(tmp_path):
    # A damaged file's name is written into the SQL that stores its recovered events.
    logs = tmp_path / "logs"
    logs.mkdir()
    damaged = logs / "x'); DROP TABLE activity; --.json"
    text = json.dumps({"Records": [cloudtrail_event(1), cloudtrail_event(2)]})
    damaged.write_text(text[:-2] + ', {"eventID": "cut', encoding="utf-8")
    workspace = tmp_path / "workspace"

    report = audit(cloudtrail=[logs], workspace=workspace)

    assert report.sources[0]["events_ingested"] == 2
    assert any(warning.path == str(damaged) for warning in report.warnings)
    with duckdb.connect(str(workspace / "warden.duckdb"), read_only=True) as connection:
        files = connection.execute("SELECT DISTINCT file FROM activity").fetchall()
        assert files == [(str(damaged),)]


def test_plain_text_line_does_not_read_ahead(tmp_path, monkeypatch):
    path = tmp_path / "syslog.jsonl"
    path.write_bytes(b"Jul 10 12:00:00 host sshd[4242]: Accepted publickey for deploy\n" * 40_000)
    monkeypatch.setattr(jsonstream, "CHUNK_CHARS", 4096)
    fills = 0
    original = jsonstream._Buffer.fill

    def counting_fill(self: Any) -> bool:
        nonlocal fills
        fills += 1
        return original(self)

    monkeypatch.setattr(jsonstream._Buffer, "fill", counting_fill)
    events = jsonstream.iter_events(path)

    problems = [next(events) for _ in range(3)]

    assert all(isinstance(item, jsonstream.StreamProblem) for item in problems)
    assert [item.line for item in problems] == [1, 2, 3]
    assert fills <= 2


def test_warnings_per_damaged_file_are_capped(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [json.dumps(cloudtrail_event(1)), *(["not json"] * 5000)]
    (logs / "export.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = audit(cloudtrail=[logs])

    assert f"{ARN}user/ci" in identity_ids(report)
    assert 1 < len(report.warnings) <= 30
    assert any("5000" in warning.message for warning in report.warnings)


@pytest.mark.parametrize("damaged", [True, False], ids=["truncated", "complete"])
def test_lone_surrogate_escape_in_event(tmp_path, damaged):
    logs = tmp_path / "logs"
    logs.mkdir()
    text = json.dumps({"Records": [cloudtrail_event(1, userAgent="agent\ud800x")]})
    if damaged:
        text = text[:-2] + ', {"eventID": "cut'
    (logs / "delivery.json").write_text(text, encoding="utf-8")

    report = audit(cloudtrail=[logs])

    assert f"{ARN}user/ci" in identity_ids(report)
    json.loads(report_text(report))


def test_damaged_log_read_without_orjson(tmp_path):
    # orjson is installed here only as a test tool's dependency, not Warden's.
    logs = tmp_path / "logs"
    logs.mkdir()
    text = json.dumps({"Records": [cloudtrail_event(1)]})
    (logs / "delivery.json").write_text(text[:-2] + ', {"eventID": "cut', encoding="utf-8")
    script = (
        "import sys, datetime as dt\n"
        "sys.modules['orjson'] = None\n"
        "from pathlib import Path\n"
        "from warden.governance import AuditOptions, run_audit\n"
        "report = run_audit(AuditOptions(cloudtrail=[Path(sys.argv[1])],"
        " as_of=dt.datetime(2024, 6, 1, tzinfo=dt.UTC)))\n"
        "print(sorted(i.id for i in report.identities))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script, str(logs)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert f"{ARN}user/ci" in result.stdout


def test_deep_nesting_is_a_warning(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    objects = tmp_path / "objects.json"
    objects.write_text('{"kind": "List", "items": ' + deep + "}", encoding="utf-8")
    good = write_json(tmp_path / "good.json", {"kind": "List", "items": [GOOD_SERVICE_ACCOUNT]})
    logs = tmp_path / "logs"
    logs.mkdir()
    # Truncated, so that the streaming reader reads it after DuckDB rejects it.
    event = json.dumps(cloudtrail_event(1))
    (logs / "delivery.json").write_text(
        '{"Records": [' + event + ', {"eventID": "deep", "requestParameters": ' + deep[:-10],
        encoding="utf-8",
    )

    report = audit(k8s_objects=[objects, good], cloudtrail=[logs])

    assert "system:serviceaccount:apps:good" in identity_ids(report)
    assert f"{ARN}user/ci" in identity_ids(report)
    assert any(warning.path == str(objects) for warning in report.warnings)
    assert any(warning.path == str(logs / "delivery.json") for warning in report.warnings)


def test_non_finite_numbers_keep_report_json(tmp_path):
    objects = tmp_path / "objects.json"
    objects.write_text(
        '{"kind": "List", "items": [{"kind": "ServiceAccount", "metadata": {"name": "a",'
        ' "namespace": "apps"}, "automountServiceAccountToken": NaN}]}',
        encoding="utf-8",
    )
    github = tmp_path / "github.json"
    github.write_text(
        '[{"app_slug": "bot", "account": {"login": "acme"}, "permissions": {"contents": Infinity}}]',
        encoding="utf-8",
    )

    report = audit(k8s_objects=[objects], github=[github])

    def reject(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    json.loads(report_text(report), parse_constant=reject)


# The datastore connection string.


@pytest.mark.parametrize(
    ("location", "password"),
    [
        (
            "dbname=warden user=auditor password=Kw7-keyword host=127.0.0.1 port={port}",
            "Kw7-keyword",
        ),
        ("postgresql://auditor@127.0.0.1:{port}/warden?password=Qz4-query", "Qz4-query"),
        ("postgresql://:Vn2-nouser@127.0.0.1:{port}/warden", "Vn2-nouser"),
        ("postgresql://auditor:Ab@Jx9-at@127.0.0.1:notaport/warden", "Jx9-at"),
    ],
    ids=["keyword_form", "query_parameter", "no_user_name", "at_sign_in_password"],
)
def test_datastore_password_not_in_report(tmp_path, caplog, location, password):
    location = location.format(port=closed_port())

    report = audit(warden_datastores=[location])

    assert report.warnings, "the datastore cannot be reached, which must be reported"
    assert password not in report_text(report)
    assert password not in render_html(report)
    assert password not in caplog.text


# IAM policy evaluation: a Deny that the caller can avoid cancels nothing.


def test_avoidable_deny_keeps_admin_finding(tmp_path):
    deny_plain_http = {
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    # Revokes sessions issued before a moment 4 hours before the as-of time; a new session
    # is not denied.
    deny_old_sessions = {
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2024-05-31T20:00:00Z"}},
    }
    deny_always = {
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": ["true", "false"]}},
    }
    escalate = {"Effect": "Allow", "Action": "iam:AttachUserPolicy", "Resource": "*"}
    users = [
        iam_user("admin-tls", [ADMIN, deny_plain_http]),
        iam_user("admin-revoked", [ADMIN, deny_old_sessions]),
        iam_user("escalate-tls", [escalate, deny_plain_http]),
        iam_user("admin-denied", [ADMIN, deny_always]),
    ]
    path = write_json(tmp_path / "details.json", authorization_details(users))

    report = audit(aws_authorization_details=[path])

    found = {(f.identity.rsplit("/", 1)[-1], f.check) for f in report.findings}
    assert ("admin-tls", "NHI5-ADMIN") in found
    assert ("admin-revoked", "NHI5-ADMIN") in found
    assert ("escalate-tls", "NHI5-PRIVESC") in found
    assert not {check for name, check in found if name == "admin-denied"} & {
        "NHI5-ADMIN",
        "NHI5-PRIVESC",
    }


def test_avoidable_trust_deny_keeps_role_hop(tmp_path):
    user = iam_user("ci", [])
    role = iam_role("admin-role", [ADMIN], f"{ARN}user/ci")
    role["AssumeRolePolicyDocument"]["Statement"].append(
        {
            "Effect": "Deny",
            "Action": "sts:AssumeRole",
            "Principal": {"AWS": f"{ARN}user/ci"},
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    path = write_json(tmp_path / "details.json", authorization_details([user], [role]))

    report = audit(aws_authorization_details=[path])

    escalations = [
        f for f in report.findings if f.check == "NHI5-PRIVESC" and f.identity == f"{ARN}user/ci"
    ]
    assert escalations
    assert escalations[0].details["paths"][0]["hops"][0]["role"] == role["Arn"]


def test_web_identity_trust_without_subject(tmp_path):
    provider = f"{ARN}oidc-provider/ci.example.org"
    roles = []
    for name, condition in (
        ("deploy-any-repo", {"StringEquals": {"ci.example.org:aud": "sts.amazonaws.com"}}),
        ("deploy-wildcard", {"StringLike": {"ci.example.org:sub": "*"}}),
        ("deploy-one-repo", {"StringLike": {"ci.example.org:sub": "repo:acme/app:*"}}),
        ("deploy-star-in-list", {"StringLike": {"ci.example.org:sub": ["repo:acme/app:*", "*"]}}),
        ("deploy-all-but-one", {"StringNotEquals": {"ci.example.org:sub": "repo:acme/old:main"}}),
    ):
        role = iam_role(name, [], f"{ARN}root")
        role["AssumeRolePolicyDocument"] = {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Principal": {"Federated": provider},
                    "Condition": condition,
                }
            ]
        }
        roles.append(role)
    path = write_json(tmp_path / "details.json", authorization_details([], roles))

    report = audit(aws_authorization_details=[path])

    permissive = {
        f.identity.rsplit("/", 1)[-1] for f in report.findings if f.check == "NHI5-PERMISSIVE-TRUST"
    }
    assert "deploy-any-repo" in permissive
    assert "deploy-wildcard" in permissive
    assert "deploy-star-in-list" in permissive
    assert "deploy-all-but-one" in permissive
    assert "deploy-one-repo" not in permissive


def test_privesc_details_stay_bounded(tmp_path):
    # Every user may assume every role (the roles trust the account), and every role can
    # escalate: principals times roles paths, each naming every user as a target.
    assume = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}
    role_powers = {
        "Effect": "Allow",
        "Action": ["iam:CreateAccessKey", "iam:PutRolePolicy"],
        "Resource": "*",
    }
    users = [iam_user(f"user-{index}", [assume]) for index in range(60)]
    roles = [iam_role(f"role-{index}", [role_powers], f"{ARN}root") for index in range(60)]
    path = write_json(tmp_path / "details.json", authorization_details(users, roles))

    report = audit(aws_authorization_details=[path])

    finding = next(
        f for f in report.findings if f.check == "NHI5-PRIVESC" and f.identity.endswith("user-0")
    )
    details = finding.details
    assert details["paths_total"] > len(details["paths"])
    assert all(len(p["targets"]) <= 25 for p in details["paths"])
    assert len(report_text(report)) < 40_000_000


# Classification: declarations in tags are input, and a tag must not switch the checks off.


def test_sso_role_name_outside_sso_path_checked(tmp_path):
    backdoor = iam_role("AWSReservedSSO_Backdoor_0123456789abcdef", [ADMIN], "*")
    real = iam_role("AWSReservedSSO_ReadOnly_fedcba9876543210", [], f"{ARN}root")
    real["Path"] = "/aws-reserved/sso.amazonaws.com/"
    real["Arn"] = f"{ARN}role/aws-reserved/sso.amazonaws.com/{real['RoleName']}"
    path = write_json(tmp_path / "details.json", authorization_details([], [backdoor, real]))

    report = audit(aws_authorization_details=[path])

    checks = {f.check for f in report.findings if f.identity == backdoor["Arn"]}
    assert "NHI5-ADMIN" in checks
    assert "NHI5-PERMISSIVE-TRUST" in checks
    assert real["Arn"] in {identity.id for identity in report.humans}


def test_human_tag_does_not_hide_admin_keys(tmp_path):
    user = iam_user("ci-deployer", [ADMIN], Tags=[{"Key": "identity-type", "Value": "human"}])
    details = write_json(tmp_path / "details.json", authorization_details([user]))
    report_csv = tmp_path / "credential-report.csv"
    report_csv.write_text(
        "user,arn,user_creation_time,password_enabled,access_key_1_active,"
        "access_key_1_last_rotated,access_key_1_last_used_date\n"
        f"ci-deployer,{ARN}user/ci-deployer,2024-01-01T00:00:00+00:00,false,true,"
        "2024-01-01T00:00:00+00:00,2024-05-30T00:00:00+00:00\n",
        encoding="utf-8",
    )

    report = audit(aws_authorization_details=[details], aws_credential_reports=[report_csv])

    checks = {f.check for f in report.findings if f.identity == f"{ARN}user/ci-deployer"}
    assert "NHI5-ADMIN" in checks
    user = next(i for i in report.identities if i.id == f"{ARN}user/ci-deployer")
    assert user.classification.startswith("tagged human by identity-type, but")
    assert "never signs in to the console" in user.classification


def test_console_sign_in_on_key_user_reported(tmp_path):
    logs = tmp_path / "logs"
    sign_in = cloudtrail_event(
        1000,
        user="ci-deployer",
        eventSource="signin.amazonaws.com",
        eventName="ConsoleLogin",
        eventType="AwsConsoleSignIn",
        userAgent="Mozilla/5.0 (X11; Linux x86_64)",
        responseElements={"ConsoleLogin": "Success"},
    )
    del sign_in["userIdentity"]["accessKeyId"]
    events = [cloudtrail_event(number, user="ci-deployer") for number in range(50)]
    write_json(logs / "delivery.json", {"Records": [*events, sign_in]})

    report = audit(cloudtrail=[logs])

    console = [
        f
        for f in report.findings
        if f.identity == f"{ARN}user/ci-deployer" and f.check == "NHI10-CONSOLE"
    ]
    assert console
    assert any("AKIAIOSFODNN7EXAMPLE used by aws-cli" in line for line in console[0].evidence)


# Reports.


def test_html_report_escapes_input(tmp_path):
    hostile = '"><script>alert(1)</script><img src=https://attacker.example/x.png>'
    objects = write_json(
        tmp_path / "objects.json",
        {
            "kind": "List",
            "items": [
                {
                    "kind": "ServiceAccount",
                    "metadata": {
                        "name": f"sa{hostile}",
                        "namespace": "apps",
                        "annotations": {"owner": hostile},
                    },
                }
            ],
        },
    )

    page = render_html(audit(k8s_objects=[objects]))

    assert "<script>alert" not in page
    assert "<img" not in page
    assert "&lt;img src=https://attacker.example/x.png&gt;" in page
    assert page.count("<script>") == 1


def test_output_directory_is_input_error(tmp_path):
    objects = write_json(tmp_path / "objects.json", {"kind": "List", "items": []})
    target = tmp_path / "reports"
    target.mkdir()

    result = warden(
        "audit", "--k8s-objects", str(objects), "--format", "json", "--output", str(target)
    )

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert str(target) in result.stderr


def test_output_symlink_replaced_not_followed(tmp_path):
    objects = write_json(tmp_path / "objects.json", {"kind": "List", "items": []})
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    link = tmp_path / "report.json"
    link.symlink_to(victim)

    result = warden(
        "audit", "--k8s-objects", str(objects), "--format", "json", "--output", str(link)
    )

    assert result.returncode == 0, result.stderr
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert not link.is_symlink()
    assert json.loads(link.read_text(encoding="utf-8"))["schema_version"] == "1"


def test_leaked_secret_absent_from_every_format(tmp_path):
    pytest.importorskip("warden.scan", reason="the secret scanner is not installed")
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq4Lw0Zp9T"
    code = tmp_path / "repo"
    code.mkdir()
    (code / "deploy.env").write_text(
        f"AWS_ACCESS_KEY_ID=AKIAQ3EGRXNB7TCM2H5L\nAWS_SECRET_ACCESS_KEY={secret}\n",
        encoding="utf-8",
    )

    report = audit(secrets=[code], workspace=tmp_path / "workspace")
    buffer = io.StringIO()
    render_table(report, Console(file=buffer, width=300))

    assert any(f.check == "NHI2-LEAKED-SECRET" for f in report.findings)
    for text in (report_text(report), render_html(report), buffer.getvalue()):
        assert secret not in text
        assert secret[:12] not in text
