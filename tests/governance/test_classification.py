"""Human or non-human: tags against machine evidence, and console use of workload keys.

The identities are built in memory with the facts the sources would record, so each case
shows which fact decides.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from warden.governance.checks import CheckContext, Thresholds, check_human_use
from warden.governance.classify import classify
from warden.governance.clients import compute_environment, software_family, user_agent_family
from warden.governance.model import Identity, Inventory, Kind, Provider

AS_OF = datetime(2024, 6, 1, tzinfo=UTC)
ARN = "arn:aws:iam::123456789012:user/"
HUMAN_TAG = {"identity-type": "human"}


def aws_user(
    name: str = "deployer",
    *,
    tags: dict[str, str] | None = None,
    agents: tuple[str, ...] = (),
    calls: int = 0,
    last_used: datetime | None = None,
    active: bool = True,
    **facts: object,
) -> Identity:
    """Return an IAM user with one long-lived access key, used as the arguments describe."""
    user = Identity(id=f"{ARN}{name}", kind=Kind.AWS_USER, provider=Provider.AWS, name=name)
    user.tags.update(tags or {})
    user.facts.update(facts)
    key = user.credential("AKIAIOSFODNN7EXAMPLE", "aws_access_key")
    key.long_lived = True
    key.active = active
    key.user_agents = agents
    key.event_count = calls
    key.last_used_at = last_used
    return user


def classified(identity: Identity) -> Identity:
    classify(identity)
    return identity


def test_human_tag_kept_without_key_use():
    user = classified(aws_user(tags=HUMAN_TAG))

    assert user.human is True
    assert user.classification == "declared human by tag identity-type"


def test_human_tag_overruled_by_sdk_use():
    user = classified(aws_user(tags=HUMAN_TAG, agents=("Boto3/1.34.0 Python/3.12",), calls=40))

    assert user.human is False
    assert user.classification == (
        "tagged human by identity-type, but its access keys are used by software (boto3) "
        "and it never signs in to the console"
    )


def test_human_tag_overruled_by_report_key_use():
    user = classified(aws_user(tags=HUMAN_TAG, last_used=datetime(2024, 5, 30, tzinfo=UTC)))

    assert user.human is False
    assert "access key last used 2024-05-30" in user.classification
    assert user.facts["software_key_use"] == [
        "access key AKIAIOSFODNN7EXAMPLE last used 2024-05-30, client not recorded"
    ]


def test_human_tag_kept_for_browser_only_key():
    user = classified(aws_user(tags=HUMAN_TAG, agents=("Mozilla/5.0 (X11)",), calls=3))

    assert user.human is True
    assert "software_key_use" not in user.facts


def test_human_tag_kept_for_inactive_key():
    user = classified(aws_user(tags=HUMAN_TAG, agents=("aws-cli/2.15.0",), calls=3, active=False))

    assert user.human is True


def test_service_tag_still_wins():
    user = classified(aws_user(tags={"warden.io/identity-type": "service"}, console_events=2))

    assert user.human is False
    assert user.classification == "declared non-human by tag warden.io/identity-type"


def test_console_sign_ins_alone_are_human():
    user = classified(aws_user(console_events=3))

    assert user.human is True
    assert user.classification == "console sign-ins seen in CloudTrail"


def test_console_agents_are_not_software():
    agents = ("[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.488]", "AWS Internal")
    user = classified(aws_user(agents=agents, calls=20, console_events=3))

    assert user.human is True


@pytest.mark.parametrize(
    ("facts", "console"),
    [
        ({"console_events": 4}, "console sign-ins seen in CloudTrail"),
        (
            {"password_enabled": True, "password_last_used": datetime(2024, 5, 2, tzinfo=UTC)},
            "console password in use",
        ),
    ],
    ids=["sign_in_events", "password_in_use"],
)
def test_console_use_of_sdk_key_is_non_human(facts, console):
    user = classified(aws_user(agents=("aws-cli/2.15.0 Python/3.11",), calls=50, **facts))

    assert user.human is False
    assert user.classification == (
        f"access keys used by software (aws-cli) and {console}: a non-human identity "
        "used by a person"
    )


def test_tagged_human_with_console_and_sdk_key():
    user = classified(
        aws_user(tags=HUMAN_TAG, agents=("aws-cli/2.15.0",), calls=5, console_events=1)
    )

    assert user.human is False
    assert user.classification.startswith("tagged human by identity-type, but its access keys")
    assert user.classification.endswith("a non-human identity used by a person")


def test_unused_password_keeps_key_user_non_human():
    user = classified(aws_user(agents=("aws-cli/2.15.0",), calls=5, password_enabled=True))

    assert user.human is False
    assert user.classification == "access keys; console password enabled but never used"


def test_console_finding_names_the_workload_key():
    user = classified(
        aws_user(agents=("aws-cli/2.15.0", "Boto3/1.34.0"), calls=50, console_events=1)
    )
    context = CheckContext(Inventory(), AS_OF, Thresholds())

    findings = list(check_human_use(user, context))

    console = next(f for f in findings if f.check == "NHI10-CONSOLE")
    assert console.title == "Console use of a workload identity"
    assert console.evidence == (
        "1 console events in CloudTrail",
        "access key AKIAIOSFODNN7EXAMPLE used by aws-cli, boto3 in 50 calls",
    )


def test_lambda_environment_named_as_compute():
    agent = "Boto3/1.34.0 md/Botocore#1.34.0 os/linux#5.10 exec-env/AWS_Lambda_python3.12"
    user = classified(aws_user(tags=HUMAN_TAG, agents=(agent,), calls=9))

    assert user.human is False
    assert "(boto3, AWS Lambda)" in user.classification


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (Kind.K8S_SERVICE_ACCOUNT, "it is a Kubernetes service account"),
        (Kind.GITHUB_DEPLOY_KEY, "it is a GitHub deploy key"),
        (Kind.WARDEN_ENTRY, "it is a Warden workload identity"),
    ],
)
def test_human_label_overruled_by_kind(kind, reason):
    identity = Identity(id="x", kind=kind, provider=Provider.KUBERNETES, name="x")
    identity.tags["annotation:warden.io/identity-type"] = "person"

    classify(identity)

    assert identity.human is False
    assert identity.classification == (
        f"tagged human by annotation:warden.io/identity-type, but {reason}"
    )


def test_human_tag_overruled_by_instance_profile():
    role = Identity(
        id="arn:aws:iam::1:role/app", kind=Kind.AWS_ROLE, provider=Provider.AWS, name="app"
    )
    role.tags["identity-type"] = "human"
    role.facts.update(path="/", instance_profiles=["app"])

    classify(role)

    assert role.human is False
    assert role.classification.endswith("but it is a role attached to an instance profile")


def test_human_tag_kept_on_plain_role():
    role = Identity(
        id="arn:aws:iam::1:role/ops", kind=Kind.AWS_ROLE, provider=Provider.AWS, name="ops"
    )
    role.tags["identity-type"] = "human"
    role.facts["path"] = "/"

    classify(role)

    assert role.human is True


def test_sso_name_overruled_by_instance_sessions():
    name = "AWSReservedSSO_Admin_0123456789abcdef"
    role = Identity(
        id=f"arn:aws:iam::1:role/{name}", kind=Kind.AWS_ROLE, provider=Provider.AWS, name=name
    )
    role.facts["instance_sessions"] = 12

    classify(role)

    assert role.human is False
    assert role.classification.startswith("named like an SSO role, but it is a role assumed by EC2")


@pytest.mark.parametrize(
    ("agent", "family", "software"),
    [
        ("aws-cli/2.15.0 Python/3.11.6", "aws-cli", "aws-cli"),
        ("[Boto3/1.26.165 Python/3.10.6 Botocore/1.29.165]", "boto3", "boto3"),
        (
            "APN/1.0 HashiCorp/1.0 Terraform/1.1.2 (+https://www.terraform.io) "
            "terraform-provider-aws/4.67.0",
            "terraform",
            "terraform",
        ),
        ("scanner_0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "scanner", "scanner"),
        ("[scanner_0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d]", "scanner", "scanner"),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:109.0)", "mozilla", None),
        ("[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.488]", "s3console", None),
        ("RDS Console, aws-internal/3 aws-sdk-java/1.11.975", "rds", None),
        ("AWS Internal", None, None),
        ("ec2.amazonaws.com", None, None),
    ],
)
def test_user_agent_families(agent, family, software):
    assert user_agent_family(agent) == family
    assert software_family(agent) == software


def test_compute_environments():
    assert compute_environment("aws-sdk-go-v2/1.21 exec-env/AWS_ECS_FARGATE") == "Amazon ECS"
    assert compute_environment("aws-cli/2.15.0 exec-env/CloudShell") is None
    assert compute_environment("aws-cli/2.15.0") is None
