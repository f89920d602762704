"""User-agent families: the kind of client behind a user agent, without its version.

A family names the program that made the call, so that a baseline survives upgrades
("aws-cli/2.13.5" and "aws-cli/2.15.0" are both `aws-cli`) while a different client is
noticed. The rules, in order:

- no user agent: no family;
- `AWS Internal` and service principals (`*.amazonaws.com`) are AWS acting for the caller:
  `aws-internal` and `aws-service`;
- `Mozilla/…` is a browser: `browser`;
- an AWS Partner Network prefix (`APN/1.0 <partner>/<version> <product>/<version> …`) is
  skipped, so the product names the family (Terraform's provider sends one);
- otherwise the first product token, lowercased, without a trailing UUID or long run of
  digits that some tools append per run (`tool_<uuid>` gives `tool`);
- an AWS SDK token followed, after its comment, by an application token (the SSM agent
  sends `aws-sdk-go/<v> (<comment>) amazon-ssm-agent/<v>`) gives `<sdk> <application>`.
"""

from __future__ import annotations

import re

AWS_INTERNAL = "aws-internal"
AWS_SERVICE = "aws-service"
BROWSER = "browser"

_PARTNER_PREFIX = re.compile(r"^APN/\S+\s+\S+\s+")
_FIRST_TOKEN = re.compile(r"^([^/\s(),;\[\]]+)")
_RUN_SUFFIX = re.compile(
    r"[-_.]?(?:[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}|[0-9]{6,})$"
)
_APPLICATION = re.compile(r"\)\s+([A-Za-z][\w.-]*)/(?:\d|\s|$)")
# Tokens that describe the platform, the runtime or the SDK's settings, never the application.
_METADATA_TOKENS = frozenset(
    {
        "os", "lang", "md", "api", "ua", "cfg", "exec-env", "exe", "m", "ft", "app",
        "python", "go", "java", "linux", "darwin", "windows", "node", "nodejs", "ruby",
        "php", "dotnet", "vendor",
    }
)  # fmt: skip


def agent_family(user_agent: str | None) -> str | None:
    """Return the client family of `user_agent` (see the module's rules), or None."""
    if user_agent is None:
        return None
    text = user_agent.strip().lstrip("[").strip()
    if not text:
        return None
    if text == "AWS Internal":
        return AWS_INTERNAL
    if text.endswith(".amazonaws.com"):
        return AWS_SERVICE
    if text.startswith("Mozilla/"):
        return BROWSER
    text = _PARTNER_PREFIX.sub("", text)
    match = _FIRST_TOKEN.match(text)
    if match is None:
        return None
    family = _RUN_SUFFIX.sub("", match.group(1).lower()) or match.group(1).lower()
    if family.startswith("aws-sdk-"):
        application = _APPLICATION.search(text)
        if application and application.group(1).lower() not in _METADATA_TOKENS:
            family = f"{family} {application.group(1).lower()}"
    return family
