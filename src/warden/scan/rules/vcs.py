"""Version control and developer platform tokens: GitHub, GitLab, Bitbucket, Atlassian,
Sourcegraph."""

from __future__ import annotations

import re

from warden.scan import validators
from warden.scan.model import Confidence, Severity
from warden.scan.rule import Candidate, Check, Lifetime, PlaceholderPolicy, Rule, Tier
from warden.scan.rules import replacements as r


def _github_client(candidate: Candidate) -> Check:
    client = re.search(r"\b(Iv1\.[0-9a-f]{16}|Ov23[A-Za-z0-9]{16}|[0-9a-f]{20})\b", candidate.text)
    return Check(identifier=f"client {client.group(1)}" if client else None)


RULES = (
    Rule(
        id="github-pat",
        name="GitHub personal access token (classic)",
        provider="GitHub",
        kind="personal_access_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.CI_FEDERATION,
        description="`ghp_` followed by 30 random base62 characters and a 6-character base62 "
        "CRC32 of them. A wrong checksum means an edited or made-up token: low confidence.",
        pattern=r"\b(?P<secret>ghp_[A-Za-z0-9]{36})\b",
        check=validators.github_token,
        prefix="ghp_",
        examples=("GITHUB_TOKEN=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",),
        negative_examples=(
            "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "ghp_Ky9Pf34qY6Nb3wWD25RQ4F5ZR3qa7y3gm1",
        ),
    ),
    Rule(
        id="github-oauth-token",
        name="GitHub OAuth access token",
        provider="GitHub",
        kind="access_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.CI_FEDERATION,
        description="`gho_` followed by 36 base62 characters ending in a CRC32 checksum.",
        pattern=r"\b(?P<secret>gho_[A-Za-z0-9]{36})\b",
        check=validators.github_token,
        prefix="gho_",
        examples=("oauth_token: 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",),
        negative_examples=("gho_<token>",),
    ),
    Rule(
        id="github-app-token",
        name="GitHub App token",
        provider="GitHub",
        kind="access_token",
        tier=Tier.PROVIDER,
        severity=Severity.MEDIUM,
        replacement=r.CI_FEDERATION,
        description="`ghu_` (user-to-server) or `ghs_` (installation, one hour) followed by 36 "
        "base62 characters ending in a CRC32 checksum. Short-lived, but a copy in a "
        "repository means a workflow printed or stored it.",
        pattern=r"\b(?P<secret>gh[us]_[A-Za-z0-9]{36})\b",
        check=validators.github_token,
        lifetime=Lifetime.SHORT,
        prefix="gh",
        examples=(
            '"token": "ghu_CN6Zj4a3dDVhYRnKTbxTNJFoBinF5a42GyMy"',
            "git clone https://x-access-token:ghs_JXVuLkSIc47WQAmL9xVQ2zg4mZaouq416qWT@github.com/o/r",
        ),
        negative_examples=("ghs_0000000000000000000000000000000000000",),
    ),
    Rule(
        id="github-refresh-token",
        name="GitHub App refresh token",
        provider="GitHub",
        kind="refresh_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.CI_FEDERATION,
        description="`ghr_` followed by 36 base62 characters (76 in older tokens).",
        pattern=r"\b(?P<secret>ghr_[A-Za-z0-9]{36}(?:[A-Za-z0-9]{40})?)\b",
        check=validators.github_token,
        prefix="ghr_",
        examples=('"refresh_token": "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"',),
        negative_examples=("ghr_",),
    ),
    Rule(
        id="github-fine-grained-pat",
        name="GitHub fine-grained personal access token",
        provider="GitHub",
        kind="personal_access_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.CI_FEDERATION,
        description="`github_pat_` followed by 22 base62 characters, `_`, and 59 base62 "
        "characters.",
        pattern=r"\b(?P<secret>github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})\b",
        confidence=Confidence.HIGH,
        prefix="github_pat_",
        examples=(
            "GH_TOKEN=github_pat_11Xlx8RtCqtD1GDIWFmbKG_csE4Gt7T0LZQxwHd82XjFy7AG3BCxJeJXmDISWh"
            "BHMp1G201kWZCWUFxS6g",
        ),
        negative_examples=("github_pat_<token>",),
    ),
    Rule(
        id="github-oauth-client-secret",
        name="GitHub OAuth app client secret",
        provider="GitHub",
        kind="oauth_client_secret",
        tier=Tier.KEYED,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="40 hexadecimal characters assigned to a key naming a GitHub (or Gitalk) "
        "client secret. The identifier is the client id found nearby (20 hexadecimal "
        "characters, `Iv1.` or `Ov23`).",
        keys=r"(?:github|gitalk|\bgh)\w*?secret|client.?secret",
        min_length=16,
        value=r"[0-9a-f]{40}",
        context=r"github|gitalk|client.?id",
        check=_github_client,
        lines_before=4,
        lines_after=4,
        placeholder=PlaceholderPolicy.VALUE,
        examples=(
            "GITHUB_CLIENT_ID=Iv1.8a61f9b3a7aba766\n"
            "GITHUB_CLIENT_SECRET=f506b40928b5b7a767c76fb008f86bebb2737f6a",
        ),
        negative_examples=("GITHUB_CLIENT_SECRET=${{ secrets.GITHUB_CLIENT_SECRET }}",),
    ),
    Rule(
        id="gitlab-pat",
        name="GitLab personal, project or group access token",
        provider="GitLab",
        kind="personal_access_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.CI_FEDERATION,
        description="`glpat-` followed by 20 base64url characters (or longer, routable "
        "tokens of GitLab 17).",
        pattern=r"\b(?P<secret>glpat-[A-Za-z0-9_-]{20,})",
        anchor=r"glpat-[A-Za-z0-9_-]{20}",
        confidence=Confidence.HIGH,
        prefix="glpat-",
        examples=("GITLAB_TOKEN=glpat-pf9dqcUgxM9ZZ810pkf6",),
        negative_examples=("glpat-xxxxxxxxxxxxxxxxxxxx",),
    ),
    Rule(
        id="gitlab-pipeline-trigger-token",
        name="GitLab pipeline trigger token",
        provider="GitLab",
        kind="api_token",
        tier=Tier.PROVIDER,
        severity=Severity.MEDIUM,
        replacement=r.CI_FEDERATION,
        description="`glptt-` followed by 40 hexadecimal characters.",
        pattern=r"\b(?P<secret>glptt-[0-9a-f]{40})\b",
        confidence=Confidence.HIGH,
        prefix="glptt-",
        examples=("curl -F token=glptt-f506b40928b5b7a767c76fb008f86bebb2737f6a -F ref=main",),
        negative_examples=("glptt-",),
    ),
    Rule(
        id="gitlab-runner-token",
        name="GitLab runner registration or authentication token",
        provider="GitLab",
        kind="api_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.CI_FEDERATION,
        description="`GR1348941` followed by 20 base64url characters (registration token) or "
        "`glrt-` followed by 20 or more (authentication token).",
        pattern=r"\b(?P<secret>(?:GR1348941|glrt-)[A-Za-z0-9_-]{20,})",
        anchor=r"(?:GR1348941|glrt-)[A-Za-z0-9_-]{20}",
        confidence=Confidence.HIGH,
        examples=('--registration-token "GR1348941pf9dqcUgxM9ZZ810pkf6"',),
        negative_examples=("GR1348941",),
    ),
    Rule(
        id="gitlab-token",
        name="GitLab deploy, feed, OAuth or agent token",
        provider="GitLab",
        kind="api_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.CI_FEDERATION,
        description="`gldt-` (deploy), `glft-` (feed), `glsoat-` (SCIM), `gloas-` (OAuth "
        "application secret), `glcbt-` (CI/CD job), `glimt-` (incoming mail) or `glagent-` "
        "(cluster agent) followed by at least 20 base64url characters.",
        pattern=r"\b(?P<secret>(?P<type>gldt|glft|glsoat|gloas|glcbt|glimt|glagent)-[A-Za-z0-9_-]{20,})",
        anchor=r"(?:gldt|glft|glsoat|gloas|glcbt|glimt|glagent)-[A-Za-z0-9_-]{20}",
        check=lambda c: Check(identifier=f"{c.groups['type']}-"),
        confidence=Confidence.HIGH,
        examples=("deploy_token: gldt-Xlx8RtCqtD1GDIWFmbKGYQr8",),
        negative_examples=("gldt-",),
    ),
    Rule(
        id="bitbucket-app-password",
        name="Bitbucket app password or API token",
        provider="Bitbucket",
        kind="app_password",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.CI_FEDERATION,
        description="`ATBB` followed by base62 characters and an 8-character uppercase "
        "hexadecimal checksum.",
        pattern=r"\b(?P<secret>ATBB[A-Za-z0-9_=.-]{20,}[A-F0-9]{8})\b",
        anchor=r"ATBB[A-Za-z0-9_=.-]{20}",
        confidence=Confidence.HIGH,
        prefix="ATBB",
        examples=(
            "git clone https://me:ATBB9Udk7Z3KhXXZUon6uZ3FCH2n6WS1A2B3C4D@bitbucket.org/o/r",
        ),
        negative_examples=("ATBB<app-password>",),
    ),
    Rule(
        id="atlassian-api-token",
        name="Atlassian Cloud API token",
        provider="Atlassian",
        kind="api_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`ATATT3` followed by about 180 base64url characters, `=`, and an "
        "8-character uppercase hexadecimal checksum.",
        pattern=r"\b(?P<secret>ATATT3[A-Za-z0-9_=-]{100,}=[A-F0-9]{8})\b",
        anchor=r"ATATT3[A-Za-z0-9_=-]{100}",
        confidence=Confidence.HIGH,
        prefix="ATATT3",
        examples=(
            "JIRA_API_TOKEN=ATATT3xFfGF0"
            + "uJDMB0LO5UHWfCFWn05Gq59Pb2P1JJeE5bzXsm9gvjoucOmKk" * 3
            + "=1A2B3C4D",
        ),
        negative_examples=("ATATT3xxxx",),
    ),
    Rule(
        id="sourcegraph-access-token",
        name="Sourcegraph access token",
        provider="Sourcegraph",
        kind="access_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`sgp_` followed by an optional instance id (`local_` or 16 hexadecimal "
        "characters and `_`) and 40 hexadecimal characters.",
        pattern=r"\b(?P<secret>sgp_(?:[a-f0-9]{16}_|local_)?[a-f0-9]{40})\b",
        confidence=Confidence.HIGH,
        prefix="sgp_",
        examples=("SRC_ACCESS_TOKEN=sgp_f506b40928b5b7a767c76fb008f86bebb2737f6a",),
        negative_examples=("sgp_",),
    ),
)
