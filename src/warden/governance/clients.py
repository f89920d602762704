"""What the user agent of an AWS API call shows about the client that made it.

CloudTrail records the caller's user agent. A command-line tool or an SDK names itself in
it ("aws-cli/2.15.0 ...", "Boto3/1.34.0 ..."), and a browser sends "Mozilla/...". The
AWS console's own back ends call on a signed-in person's behalf with agents that name a
console ("[S3Console/0.4, aws-internal/3 ...]"), and AWS services acting for the caller
appear as "AWS Internal" or as the service's host name. SDKs running on AWS compute add
the execution environment ("exec-env/AWS_Lambda_python3.12").
"""

from __future__ import annotations

import re

# Source addresses and user agents of AWS acting for the caller, not of a client.
SERVICE_ADDRESSES = ("AWS Internal",)
# AWS_EXECUTION_ENV values that SDKs report, by prefix, with the compute service they mean.
_EXECUTION_ENVIRONMENTS = (
    ("aws_lambda", "AWS Lambda"),
    ("aws_ecs", "Amazon ECS"),
)
_EXECUTION_ENVIRONMENT = re.compile(r"exec-env[/#]([\w.-]+)", re.IGNORECASE)
# "APN/<version> <partner>/<version> " before the product's own token.
_PARTNER_PREFIX = re.compile(r"^APN/\S+\s+\S+\s+")
_RUN_SUFFIX = re.compile(
    r"[-_.]?(?:[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}|[0-9]{6,})$"
)


def user_agent_family(agent: str) -> str | None:
    """Return the client's name from a user agent ("aws-cli/2.13 ..." gives "aws-cli").

    An AWS Partner Network prefix ("APN/1.0 <partner>/1.0 Terraform/1.5 ...") is skipped,
    so the product after it names the client. A UUID or a run of six or more digits at the
    end of the name is dropped, because some tools append one per run. Returns None for
    AWS services.
    """
    text = agent.strip().lstrip("[")
    if not text or text in SERVICE_ADDRESSES or text.endswith(".amazonaws.com"):
        return None
    text = _PARTNER_PREFIX.sub("", text)
    for separator in ("/", " ", "(", ",", "]"):
        text = text.split(separator, 1)[0]
    name = text.lower()
    return _RUN_SUFFIX.sub("", name) or name or None


def is_browser(agent: str) -> bool:
    return agent.strip().lstrip("[").startswith("Mozilla/")


def software_family(agent: str) -> str | None:
    """Return the family of a client that calls the API itself, such as a CLI or an SDK.

    Returns None for browsers, for the console's back ends (a family naming a console, or
    an agent marked `aws-internal`) and for AWS services, because a person or AWS drives
    those calls.
    """
    family = user_agent_family(agent)
    if family is None or is_browser(agent):
        return None
    if "console" in family or "aws-internal" in agent.lower():
        return None
    return family


def compute_environment(agent: str) -> str | None:
    """Return the AWS compute service named in an SDK's user agent, such as "AWS Lambda"."""
    match = _EXECUTION_ENVIRONMENT.search(agent)
    if match is None:
        return None
    value = match.group(1).lower()
    for prefix, service in _EXECUTION_ENVIRONMENTS:
        if value.startswith(prefix):
            return service
    return None
