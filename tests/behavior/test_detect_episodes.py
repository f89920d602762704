"""Attack episodes written for the tests, in accounts, names and addresses of their own.

Several workloads in two accounts behave normally for two weeks; then each episode does one
thing. Every detector must fire on its episode alone, and the routine traffic around it
(rotating instance keys, calls through AWS services and VPC endpoints, Lambda addresses that
change every day, an application reading its own secrets) must raise nothing.
"""

from __future__ import annotations

import pytest
from behavior_support import (
    at,
    cloudtrail_event,
    detect,
    every_alert,
    iam_user,
    role_session,
    routine,
    write_delivery,
)

from warden.governance.model import Severity

RETAIL = "480912345678"
DATA = "615203948571"
BOTO = "Boto3/1.34.2 md/Botocore#1.34.2 ua/2.0 os/linux#6.1 lang/python#3.11.8"
LAMBDA = "Boto3/1.28.0 Python/3.11.6 Linux/5.10 exec-env/AWS_Lambda_python3.11 Botocore/1.31.0"
CLI = "aws-cli/2.13.0 Python/3.11.4 Linux/6.2.0 exe/x86_64.ubuntu.22 prompt/off"
ATTACKER_CLI = "aws-cli/2.15.30 Python/3.11.8 Darwin/23.1.0 source/arm64 prompt/off"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/122.0"
NORMAL_DAYS = range(1, 13)


def _scenario() -> tuple[list[dict], dict[str, list[dict]]]:
    records: list[dict] = []
    episodes: dict[str, list[dict]] = {}

    # Instance-role session of an order worker; its keys rotate on day 6.
    first_key = role_session(RETAIL, "orders-worker", "i-0a1b2c3d4e5f60718", "ASIAEXAMPLEORDERS01")
    second_key = role_session(RETAIL, "orders-worker", "i-0a1b2c3d4e5f60718", "ASIAEXAMPLEORDERS02")
    actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "s3:GetObject", "dynamodb:PutItem"]
    records += routine(first_key, range(1, 6), actions, address="203.0.113.45", agent=BOTO)
    records += routine(second_key, range(6, 13), actions, address="203.0.113.45", agent=BOTO)
    episodes["allowed"] = [
        cloudtrail_event(
            second_key,
            at(7, 12),
            "s3:GetObject",
            address="10.20.1.15",
            agent=BOTO,
            vpc_endpoint="vpce-0example1234",
        ),
        cloudtrail_event(
            second_key,
            at(7, 13),
            "kms:Decrypt",
            address="",
            agent="",
            invoked_by="sqs.amazonaws.com",
        ),
    ]
    episodes["stolen"] = [
        cloudtrail_event(
            second_key, at(12, 14, 5, second), action, address="198.51.100.77", agent=ATTACKER_CLI
        )
        for second, action in enumerate(
            ["sts:GetCallerIdentity", "s3:ListBuckets", "iam:ListRoles"]
        )
    ]

    # A deploy user that goes quiet for five weeks.
    deployer = iam_user(RETAIL, "ci-deployer", "AKIAEXAMPLEDEPLOY001")
    records += routine(
        deployer,
        range(1, 11),
        ["cloudformation:DescribeStacks", "s3:PutObject"],
        address="192.0.2.10",
        agent=CLI,
    )
    episodes["dormant"] = routine(
        deployer,
        [50],
        ["cloudformation:DescribeStacks"],
        address="192.0.2.10",
        agent=CLI,
        per_day=2,
    )

    # Peers in the data account, all calling sts:GetCallerIdentity.
    for role, own in (
        ("etl-job", "glue:StartJobRun"),
        ("billing-export", "ce:GetCostAndUsage"),
        ("search-indexer", "es:ESHttpGet"),
    ):
        session = role_session(DATA, role, role, f"ASIAEXAMPLE{role.upper().replace('-', '')[:8]}")
        records += routine(
            session, NORMAL_DAYS, [own, "sts:GetCallerIdentity"], address="203.0.113.60", agent=BOTO
        )

    # A Lambda function: a new address every day, one client.
    reporting = role_session(DATA, "reporting-job", "reporting-job", "ASIAEXAMPLEREPORT001")
    for day in NORMAL_DAYS:
        records += routine(
            reporting,
            [day],
            ["athena:StartQueryExecution", "s3:GetObject"],
            address=f"198.18.{day}.{day * 7}",
            agent=LAMBDA,
        )
    episodes["peer-common"] = [
        cloudtrail_event(
            reporting, at(13, 9), "sts:GetCallerIdentity", address="198.18.13.91", agent=LAMBDA
        )
    ]
    episodes["new-action"] = [
        cloudtrail_event(
            reporting,
            at(13, 9, 5),
            "kms:ScheduleKeyDeletion",
            address="198.18.13.91",
            agent=LAMBDA,
            request={"keyId": "mrk-example", "pendingWindowInDays": 7},
        )
    ]

    # An inventory job that enumerates everything at once.
    inventory = role_session(RETAIL, "inventory-sync", "inventory-sync", "ASIAEXAMPLEINVENT001")
    records += routine(
        inventory, NORMAL_DAYS, ["ec2:DescribeInstances"], address="203.0.113.80", agent=BOTO
    )
    listing = [
        "ec2:DescribeVpcs",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSnapshots",
        "ec2:DescribeImages",
        "ec2:DescribeVolumes",
        "ec2:DescribeKeyPairs",
        "ec2:DescribeRouteTables",
        "iam:ListUsers",
        "iam:ListRoles",
        "iam:ListPolicies",
        "iam:ListGroups",
        "iam:ListAccessKeys",
        "s3:ListBuckets",
        "rds:DescribeDBInstances",
        "lambda:ListFunctions20150331",
        "sns:ListTopics",
        "sqs:ListQueues",
        "kms:ListKeys",
        "secretsmanager:ListSecrets",
        "dynamodb:ListTables",
        "ecr:DescribeRepositories",
        "eks:ListClusters",
        "cloudtrail:DescribeTrails",
        "guardduty:ListDetectors",
    ]
    episodes["enumeration"] = [
        cloudtrail_event(
            inventory,
            at(13, 16, index // 10, (index * 7) % 60),
            action,
            address="203.0.113.80",
            agent=BOTO,
            read_only=True,
        )
        for index, action in enumerate(listing)
    ]

    # An API that reads its own three secrets every morning, then many others.
    billing = role_session(RETAIL, "billing-api", "billing-api", "ASIAEXAMPLEBILLING01")
    for day in NORMAL_DAYS:
        for name in ("db-password", "stripe-key", "smtp-password"):
            records.append(
                cloudtrail_event(
                    billing,
                    at(day, 8, 0, len(name)),
                    "secretsmanager:GetSecretValue",
                    address="203.0.113.90",
                    agent=BOTO,
                    request={"secretId": f"prod/billing/{name}"},
                )
            )
    episodes["bulk-secrets"] = [
        cloudtrail_event(
            billing,
            at(14, 2, n // 6, n * 3 % 60),
            "secretsmanager:GetSecretValue",
            address="203.0.113.90",
            agent=BOTO,
            request={"secretId": f"prod/other-team/secret-{n}"},
        )
        for n in range(15)
    ]

    # A provisioning role that creates a key for someone else.
    provisioner = role_session(RETAIL, "provisioner", "provisioner", "ASIAEXAMPLEPROVIS001")
    records += routine(
        provisioner,
        NORMAL_DAYS,
        ["cloudformation:DescribeStacks"],
        address="203.0.113.95",
        agent=BOTO,
    )
    episodes["persistence"] = [
        cloudtrail_event(
            provisioner,
            at(14, 3),
            "iam:CreateAccessKey",
            address="203.0.113.95",
            agent=BOTO,
            request={"userName": "ops-breakglass"},
        ),
        cloudtrail_event(
            provisioner,
            at(14, 3, 1),
            "iam:AttachUserPolicy",
            address="203.0.113.95",
            agent=BOTO,
            request={
                "userName": "ops-breakglass",
                "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess",
            },
        ),
    ]

    # Someone opens the ETL role in the console.
    etl_console = role_session(DATA, "etl-job", "jane.doe", "ASIAEXAMPLECONSOLE01")
    episodes["human-use"] = [
        cloudtrail_event(
            etl_console,
            at(15, 11, minute),
            action,
            address="192.0.2.150",
            agent=BROWSER,
            console=True,
        )
        for minute, action in enumerate(["glue:GetJobs", "glue:GetJobRuns"])
    ]

    # A known call from the other side of the world, at night, denied: no rule names it.
    indexer = role_session(DATA, "search-indexer", "search-indexer", "ASIAEXAMPLESEARCHI1")
    episodes["learned"] = [
        cloudtrail_event(
            indexer,
            at(16, 3, 17),
            "es:ESHttpGet",
            address="192.0.2.200",
            agent=BOTO,
            region="ap-southeast-2",
            error="AccessDenied",
        )
    ]

    # A person who stops the trail: reported, but apart.
    alice = iam_user(RETAIL, "alice", "ASIAEXAMPLEALICE0001")
    records += [
        cloudtrail_event(
            alice, at(day, 9), "signin:ConsoleLogin", address="192.0.2.33", agent=BROWSER
        )
        for day in NORMAL_DAYS
    ]
    episodes["human-evasion"] = [
        cloudtrail_event(
            alice,
            at(17, 9),
            "cloudtrail:StopLogging",
            address="192.0.2.33",
            agent=BROWSER,
            request={"name": "org-trail"},
        )
    ]
    return records, episodes


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    root = tmp_path_factory.mktemp("episodes")
    records, episodes = _scenario()
    write_delivery(root / "cloudtrail" / "routine.json", records)
    for name, events in episodes.items():
        write_delivery(root / "cloudtrail" / f"{name}.json.gz", events, compress=True)
    report = detect(root / "workspace", [root / "cloudtrail"])
    return report, episodes


def _alerts_on(report, events, humans=False):
    ids = {event["eventID"] for event in events}
    alerts = every_alert(report) if humans else report.alerts
    return [a for a in alerts if set(a.event_ids) & ids]


def _only(report, events, humans=False):
    alerts = _alerts_on(report, events, humans)
    assert len(alerts) == 1, [(a.detector, a.identity) for a in alerts]
    return alerts[0]


def test_stolen_instance_session_is_top(scenario):
    report, episodes = scenario
    alert = _only(report, episodes["stolen"])
    assert alert.detector == "off-workload-credential"
    assert alert.severity == Severity.CRITICAL
    assert sorted(alert.event_ids) == sorted(e["eventID"] for e in episodes["stolen"])
    assert report.alerts[0].id == alert.id
    assert alert.baseline["home_address"] == "203.0.113.45"


def test_endpoint_service_and_rotation_allowed(scenario):
    report, episodes = scenario
    assert _alerts_on(report, episodes["allowed"], humans=True) == []
    worker = [a for a in every_alert(report) if a.identity.endswith(":role/orders-worker")]
    assert [a.detector for a in worker] == ["off-workload-credential"]


def test_dormant_user_wakes(scenario):
    report, episodes = scenario
    alert = _only(report, episodes["dormant"])
    assert alert.detector == "dormant-wake-up"
    assert alert.baseline["idle_days"] >= 30
    assert len(alert.event_ids) == len(episodes["dormant"])


def test_rare_new_write_reported(scenario):
    report, episodes = scenario
    alert = _only(report, episodes["new-action"])
    assert alert.detector == "new-action"
    assert alert.severity == Severity.MEDIUM
    assert alert.baseline["new_actions"] == ["kms:ScheduleKeyDeletion"]


def test_action_common_among_peers_ignored(scenario):
    report, episodes = scenario
    assert _alerts_on(report, episodes["peer-common"], humans=True) == []


def test_lambda_address_churn_ignored(scenario):
    report, _episodes = scenario
    reporting = [a for a in every_alert(report) if a.identity.endswith(":role/reporting-job")]
    assert [a.detector for a in reporting] == ["new-action"]


def test_enumeration_burst_reported(scenario):
    report, episodes = scenario
    alert = _only(report, episodes["enumeration"])
    assert alert.detector == "enumeration-burst"
    assert len(alert.event_ids) == len(episodes["enumeration"])


def test_bulk_secret_reads_reported(scenario):
    report, episodes = scenario
    alert = _only(report, episodes["bulk-secrets"])
    assert alert.detector == "bulk-secret-access"
    assert alert.severity == Severity.HIGH
    assert alert.baseline["new_secrets"] >= 10


def test_own_secrets_each_morning_ignored(scenario):
    report, _episodes = scenario
    billing = [a for a in every_alert(report) if a.identity.endswith(":role/billing-api")]
    assert [a.detector for a in billing] == ["bulk-secret-access"]
    assert billing[0].first_event_time.day == 16


def test_key_for_another_user_reported(scenario):
    report, episodes = scenario
    alert = _only(report, episodes["persistence"])
    assert alert.detector == "nhi-persistence"
    assert alert.severity == Severity.HIGH
    assert set(alert.techniques) == {"T1098.001", "T1098.003"}


def test_console_use_of_role_reported(scenario):
    report, episodes = scenario
    alert = _only(report, episodes["human-use"])
    assert alert.detector == "human-use-of-nhi"
    assert alert.severity == Severity.HIGH


def test_learned_detector_explains_itself(scenario):
    report, episodes = scenario
    alert = _only(report, episodes["learned"])
    assert alert.detector == "learned-anomaly"
    assert alert.score >= report.settings.anomaly_threshold
    drivers = {driver.feature for driver in alert.drivers}
    assert drivers & {"region_novelty", "network_novelty", "address_novelty", "hour_novelty"}


def test_person_reported_apart(scenario):
    report, episodes = scenario
    assert _alerts_on(report, episodes["human-evasion"]) == []
    alert = _only(report, episodes["human-evasion"], humans=True)
    assert alert.human is True
    assert alert.detector == "defence-evasion"


def test_nothing_else_alerts(scenario):
    report, episodes = scenario
    episode_ids = {e["eventID"] for events in episodes.values() for e in events}
    stray = [
        (a.detector, a.identity) for a in every_alert(report) if not set(a.event_ids) & episode_ids
    ]
    assert stray == []
