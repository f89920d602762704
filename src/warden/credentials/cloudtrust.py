"""What an operator creates in a cloud so that it accepts Warden's federation tokens.

Each function returns a `TrustPlan`: the OIDC provider to register, the policy whose
conditions pin the token's `aud` and `sub` exactly, and the matching `token_exchange` rule
for Warden's configuration. Nothing here calls a cloud: `warden cloud-trust` prints the plan.

Facts the plans rely on, from the providers' documentation:

- AWS: an IAM OIDC provider is named by the issuer's host and path. A role's trust policy
  allows `sts:AssumeRoleWithWebIdentity` for that provider, and its StringEquals condition
  compares the keys `<host/path>:aud` and `<host/path>:sub`. AWS verifies the JWKS endpoint's
  TLS certificate through its library of trusted CAs, so no thumbprint is needed for a
  certificate from a public CA.
- GCP: a workload identity pool provider lists its allowed audiences; the default audience is
  the provider's full resource name. The mapping `google.subject=assertion.sub` is limited to
  127 characters. A principal is `principal://iam.googleapis.com/projects/<number>/locations/
  global/workloadIdentityPools/<pool>/subject/<sub>`.
- Azure: a federated identity credential matches `iss` and `sub` exactly; its audience is
  `api://AzureADTokenExchange` unless chosen otherwise, and only RSA keys are accepted.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from warden.credentials.exchange import MAX_SUBJECT_LENGTH
from warden.credentials.oidc import validate_issuer
from warden.spiffe import SpiffeError, SpiffeId

AWS_AUDIENCE = "sts.amazonaws.com"
AZURE_AUDIENCE = "api://AzureADTokenExchange"
_ROLE_ARN = re.compile(r"arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})")
_GCP_ID = re.compile(r"[a-z][a-z0-9-]{2,31}")


@dataclass(frozen=True)
class TrustStep:
    """One thing to create: a title, and a shell command or a JSON document."""

    title: str
    command: str = ""
    document: dict[str, Any] | None = None
    note: str = ""


@dataclass(frozen=True)
class TrustPlan:
    """The steps that make a cloud trust one SPIFFE ID's tokens for one audience."""

    cloud: str
    issuer: str
    spiffe_id: str
    audience: str
    steps: tuple[TrustStep, ...]
    warden_rule: str
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "issuer": self.issuer,
            "spiffe_id": self.spiffe_id,
            "audience": self.audience,
            "steps": [
                {
                    key: value
                    for key, value in (
                        ("title", step.title),
                        ("command", step.command),
                        ("document", step.document),
                        ("note", step.note),
                    )
                    if value
                }
                for step in self.steps
            ],
            "warden_config": self.warden_rule,
            "notes": list(self.notes),
        }


def _subject(spiffe_id: str, *, limit: int | None = None) -> str:
    try:
        parsed = SpiffeId.parse(spiffe_id)
    except SpiffeError as error:
        raise ValueError(f"invalid -spiffeID: {error}") from None
    subject = str(parsed)
    if limit is not None and len(subject) > limit:
        raise ValueError(
            f"SPIFFE ID {subject} is {len(subject)} characters long, and this cloud limits sub to "
            f"{limit}; register the workload under a shorter SPIFFE ID"
        )
    return subject


def _warden_rule(spiffe_id: str, audience: str) -> str:
    return (
        "token_exchange {\n"
        f"  allow {json.dumps(spiffe_id)} {{\n"
        f"    audiences = [{json.dumps(audience)}]\n"
        "  }\n"
        "}"
    )


def _provider_name(issuer: str) -> str:
    parts = urlsplit(issuer)
    return f"{parts.hostname}{parts.path}"


def aws_plan(issuer: str, role_arn: str, spiffe_id: str, audience: str = AWS_AUDIENCE) -> TrustPlan:
    """Return the IAM OIDC provider and role trust policy for `spiffe_id`."""
    issuer = validate_issuer(issuer)
    subject = _subject(spiffe_id, limit=MAX_SUBJECT_LENGTH)
    match = _ROLE_ARN.fullmatch(role_arn)
    if match is None:
        raise ValueError(
            f"invalid -role-arn {role_arn!r}: expected arn:aws:iam::<12-digit account>:role/<name>"
        )
    partition, account, role_name = match.groups()
    provider = _provider_name(issuer)
    provider_arn = f"arn:{partition}:iam::{account}:oidc-provider/{provider}"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {f"{provider}:aud": audience, f"{provider}:sub": subject}
                },
            }
        ],
    }
    steps = (
        TrustStep(
            "Register Warden as an IAM OIDC provider (once per account)",
            shlex.join(
                [
                    "aws",
                    "iam",
                    "create-open-id-connect-provider",
                    "--url",
                    issuer,
                    "--client-id-list",
                    audience,
                ]
            ),
            note="If the provider exists, add the audience with add-client-id-to-open-id-connect-provider.",
        ),
        TrustStep(f"Trust policy of role {role_name} (save as trust-policy.json)", document=policy),
        TrustStep(
            "Set the role's trust policy",
            shlex.join(
                [
                    "aws",
                    "iam",
                    "update-assume-role-policy",
                    "--role-name",
                    role_name,
                    "--policy-document",
                    "file://trust-policy.json",
                ]
            ),
        ),
        TrustStep(
            "The workload assumes the role with an exchanged token",
            shlex.join(
                [
                    "aws",
                    "sts",
                    "assume-role-with-web-identity",
                    "--role-arn",
                    role_arn,
                    "--role-session-name",
                    "warden",
                    "--web-identity-token",
                ]
            )
            # Left unquoted by shlex so that the shell runs the command substitution.
            + f' "$(warden creds token -audience {shlex.quote(audience)})"',
        ),
    )
    return TrustPlan("aws", issuer, subject, audience, steps, _warden_rule(subject, audience))


def gcp_plan(
    issuer: str,
    project_number: str,
    pool: str,
    provider: str,
    spiffe_id: str,
    service_account: str | None = None,
) -> TrustPlan:
    """Return the workload identity pool provider and the principal binding for `spiffe_id`."""
    issuer = validate_issuer(issuer)
    subject = _subject(spiffe_id, limit=MAX_SUBJECT_LENGTH)
    if not project_number.isdigit():
        raise ValueError(
            f"invalid -project-number {project_number!r}: the project number is all digits "
            "(gcloud projects describe PROJECT --format='value(projectNumber)')"
        )
    for flag, value in (("-pool", pool), ("-provider", provider)):
        if not _GCP_ID.fullmatch(value):
            raise ValueError(
                f"invalid {flag} {value!r}: use 3 to 32 lowercase letters, digits or '-', "
                "starting with a letter"
            )
    pool_name = f"projects/{project_number}/locations/global/workloadIdentityPools/{pool}"
    audience = f"//iam.googleapis.com/{pool_name}/providers/{provider}"
    principal = f"principal://iam.googleapis.com/{pool_name}/subject/{subject}"
    steps = [
        TrustStep(
            "Create the workload identity pool (once)",
            shlex.join(
                ["gcloud", "iam", "workload-identity-pools", "create", pool, "--location=global"]
            ),
        ),
        TrustStep(
            "Register Warden as the pool's OIDC provider",
            shlex.join(
                [
                    "gcloud",
                    "iam",
                    "workload-identity-pools",
                    "providers",
                    "create-oidc",
                    provider,
                    "--location=global",
                    f"--workload-identity-pool={pool}",
                    f"--issuer-uri={issuer}",
                    f"--allowed-audiences={audience}",
                    "--attribute-mapping=google.subject=assertion.sub",
                    f'--attribute-condition=assertion.sub == "{subject}"',
                ]
            ),
        ),
    ]
    if service_account:
        steps.append(
            TrustStep(
                f"Let the workload impersonate {service_account}",
                shlex.join(
                    [
                        "gcloud",
                        "iam",
                        "service-accounts",
                        "add-iam-policy-binding",
                        service_account,
                        "--role=roles/iam.workloadIdentityUser",
                        f"--member={principal}",
                    ]
                ),
            )
        )
    else:
        steps.append(
            TrustStep(
                "Grant roles to the workload's principal on the resources it uses",
                note=f"member: {principal}",
            )
        )
    return TrustPlan(
        "gcp", issuer, subject, audience, tuple(steps), _warden_rule(subject, audience)
    )


def azure_plan(
    issuer: str,
    spiffe_id: str,
    *,
    identity: str | None = None,
    resource_group: str | None = None,
    app_id: str | None = None,
    name: str = "warden",
    audience: str = AZURE_AUDIENCE,
) -> TrustPlan:
    """Return the federated identity credential for a managed identity or an app registration."""
    issuer = validate_issuer(issuer)
    subject = _subject(spiffe_id)
    if app_id:
        parameters = {"name": name, "issuer": issuer, "subject": subject, "audiences": [audience]}
        command = shlex.join(
            [
                "az",
                "ad",
                "app",
                "federated-credential",
                "create",
                "--id",
                app_id,
                "--parameters",
                json.dumps(parameters),
            ]
        )
        title = f"Add a federated credential to app registration {app_id}"
    elif identity and resource_group:
        command = shlex.join(
            [
                "az",
                "identity",
                "federated-credential",
                "create",
                "--name",
                name,
                "--identity-name",
                identity,
                "--resource-group",
                resource_group,
                "--issuer",
                issuer,
                "--subject",
                subject,
                "--audiences",
                audience,
            ]
        )
        title = f"Add a federated credential to managed identity {identity}"
    else:
        raise ValueError(
            "name what Azure should trust: -identity and -resource-group for a managed identity, "
            "or -app-id for an app registration"
        )
    notes = ("Azure accepts RSA keys only; keep Warden's federation keys at their RS256 default.",)
    return TrustPlan(
        "azure",
        issuer,
        subject,
        audience,
        (TrustStep(title, command),),
        _warden_rule(subject, audience),
        notes,
    )
