"""Cloud provider credentials: AWS, Google Cloud, Azure, DigitalOcean, Alibaba, Heroku,
Databricks, Cloudflare."""

from __future__ import annotations

import re

from warden.scan import validators
from warden.scan.model import Confidence, Severity
from warden.scan.rule import Candidate, Check, Lifetime, PlaceholderPolicy, Rule, Tier
from warden.scan.rules import replacements as r

_AWS_KEY_ID = re.compile(r"\b((?:AKIA|ASIA)[A-Z2-7]{16})\b")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])")


def _aws_key_id(candidate: Candidate) -> Check | None:
    key_id = candidate.groups.get("id", candidate.secret)
    if "EXAMPLE" in key_id:
        return None  # AKIAIOSFODNN7EXAMPLE and friends, from the AWS documentation
    groups = dict(candidate.groups)
    for match in _AWS_SECRET.finditer(candidate.text):
        secret = match.group(1)
        mixed = any(c.islower() for c in secret) and any(c.isupper() or c.isdigit() for c in secret)
        if mixed and secret != key_id and len(set(secret)) > 12:
            groups["pair"] = "1"
            break
    return validators.aws_access_key(Candidate(key_id, groups, candidate.text, candidate.path))


def _aws_secret(candidate: Candidate) -> Check | None:
    key_id = _AWS_KEY_ID.search(candidate.text)
    if key_id is None:
        return Check(confidence=Confidence.MEDIUM)
    return Check(identifier=key_id.group(1), confidence=Confidence.HIGH)


def _gcp_service_account(candidate: Candidate) -> Check | None:
    email = re.search(r'"client_email"\s*:\s*"([^"]+)"', candidate.text)
    key_id = re.search(r'"private_key_id"\s*:\s*"([0-9a-f]{40})"', candidate.text)
    details = {"private_key_id": key_id.group(1)} if key_id else {}
    return Check(
        confidence=Confidence.HIGH,
        identifier=email.group(1) if email else None,
        details=details,
    )


def _azure_account(candidate: Candidate) -> Check:
    account = re.search(r"AccountName=([A-Za-z0-9-]{3,64})", candidate.text)
    return Check(identifier=f"storage account {account.group(1)}" if account else None)


RULES = (
    Rule(
        id="aws-access-key",
        name="AWS access key",
        provider="AWS",
        kind="cloud_access_key",
        tier=Tier.PROVIDER,
        severity=Severity.CRITICAL,
        replacement=r.AWS_FEDERATION,
        description="An access key id: `AKIA` (long-lived, IAM user) or `ASIA` (temporary, "
        "STS) followed by 16 base32 characters; `A3T` ids are an older form. The finding is "
        "critical when a 40-character secret access key sits within three lines.",
        pattern=r"\b(?P<id>(?:AKIA|ASIA|A3T[A-Z0-9])[A-Z2-7]{16})\b",
        check=_aws_key_id,
        lines_before=3,
        lines_after=3,
        prefix="AKIA",
        examples=(
            "aws_access_key_id = AKIAN7SS555HMTF6BS5E\n"
            "aws_secret_access_key = 9Udk7Z3KhXXZUon6uZ3FCH2n6WSZ1mvw4SKdWcWC",
            "export AWS_ACCESS_KEY_ID=ASIAN7SS555HMTF6BS5E",
        ),
        negative_examples=(
            "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
            "AKIAN7SS555HMTF6BS5",
            "arn:aws:iam::123456789012:user/AKIAN7SS555HMTF6BS5EX",
        ),
    ),
    Rule(
        id="aws-secret-access-key",
        name="AWS secret access key",
        provider="AWS",
        kind="cloud_access_key",
        tier=Tier.KEYED,
        severity=Severity.CRITICAL,
        replacement=r.AWS_FEDERATION,
        description="40 base64 characters assigned to a key such as `aws_secret_access_key` "
        "or `AWS_SECRET_KEY`. When an access key id is in the same lines, it becomes the "
        "identifier and the finding merges into `aws-access-key`.",
        keys=r"aws.?secret(?:.?access)?.?key|secret.?access.?key",
        min_length=16,
        value=r"[A-Za-z0-9/+]{40}",
        check=_aws_secret,
        placeholder=PlaceholderPolicy.VALUE,
        claims_key=True,
        lines_before=3,
        lines_after=3,
        examples=("aws_secret_access_key = 9Udk7Z3KhXXZUon6uZ3FCH2n6WSZ1mvw4SKdWcWC",),
        negative_examples=(
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY}",
            "aws_secret_access_key: 9Udk7Z3KhXXZUon6uZ3FCH2n6WSZ1mvw4SKdWcWCab",
        ),
    ),
    Rule(
        id="aws-session-token",
        name="AWS session token",
        provider="AWS",
        kind="cloud_session_token",
        tier=Tier.KEYED,
        severity=Severity.MEDIUM,
        replacement=r.AWS_FEDERATION,
        description="A temporary STS session token (hundreds of base64 characters) assigned "
        "to `aws_session_token` or `AWS_SECURITY_TOKEN`. It expires within hours, but a "
        "copy in a repository shows that credentials are being pasted by hand.",
        keys=r"aws.?(?:session|security).?token",
        min_length=16,
        value=r"[A-Za-z0-9/+=._-]{100,}",
        lifetime=Lifetime.SHORT,
        claims_key=True,
        examples=("AWS_SESSION_TOKEN=IQoJb3JpZ2luX2VjE" + "uJDMB0LO5UHWfCFWn05Gq59Pb2P1JJ" * 4,),
        negative_examples=("aws_session_token = os.environ['AWS_SESSION_TOKEN']",),
    ),
    Rule(
        id="aws-mws-auth-token",
        name="Amazon Marketplace Web Service auth token",
        provider="AWS",
        kind="api_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`amzn.mws.` followed by a UUID.",
        pattern=r"\b(?P<secret>amzn\.mws\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b",
        prefix="amzn.mws.",
        examples=("MWS_AUTH_TOKEN=amzn.mws.4ea38b7b-f563-7709-4bae-87aeaaaa8a2c",),
        negative_examples=("amzn.mws.<your-token>",),
    ),
    Rule(
        id="aws-appsync-api-key",
        name="AWS AppSync API key",
        provider="AWS",
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.MEDIUM,
        replacement=r.AWS_FEDERATION,
        description="`da2-` followed by 26 lowercase base36 characters. AppSync API keys "
        "expire after at most 365 days; IAM or OIDC authorization replaces them.",
        pattern=r"\b(?P<secret>da2-[a-z0-9]{26})\b",
        prefix="da2-",
        examples=("appsync_api_key: 'da2-k7vw2fq4hxbnzd3rmtp6cyeajs'",),
        negative_examples=("da2-short",),
    ),
    Rule(
        id="gcp-service-account-key",
        name="Google Cloud service account key",
        provider="Google Cloud",
        kind="private_key",
        tier=Tier.KEYED,
        severity=Severity.CRITICAL,
        replacement=r.GCP_FEDERATION,
        description='The `private_key` of a service account key file (JSON with `"type": '
        '"service_account"`). The identifier is the `client_email`.',
        keys=r"^private_key$",
        min_length=16,
        value=r"-----BEGIN (?:RSA )?PRIVATE KEY-----[\s\S]+",
        context=r"service_account|client_email",
        check=_gcp_service_account,
        lines_before=8,
        lines_after=8,
        prefix="-----BEGIN PRIVATE KEY-----",
        examples=(
            '{\n  "type": "service_account",\n  "project_id": "shop-prod",\n'
            '  "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC'
            "uJDMB0LO5UHWfCFWn05Gq59Pb2P1JJeE5bzXsm9gvjoucOmKkV9Ikdf92qrjvWe\\n-----END PRIVATE "
            'KEY-----\\n",\n  "client_email": "deployer@shop-prod.iam.gserviceaccount.com"\n}',
        ),
        negative_examples=('{"type": "service_account", "private_key": ""}',),
    ),
    Rule(
        id="google-api-key",
        name="Google API key",
        provider="Google Cloud",
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`AIza` followed by 35 base64url characters. API keys identify a project "
        "and never expire; restrict them to APIs and referrers, or move to OAuth.",
        pattern=r"\b(?P<secret>AIza[0-9A-Za-z_-]{35})",
        prefix="AIza",
        examples=("const MAPS_KEY = 'AIzaSyD7xK2pLqR4tVw8nB3mZc6yF1hJ9gE0sUoa';",),
        negative_examples=("AIzaSy_short",),
    ),
    Rule(
        id="google-oauth-client-secret",
        name="Google OAuth client secret",
        provider="Google Cloud",
        kind="oauth_client_secret",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`GOCSPX-` followed by 28 base64url characters.",
        pattern=r"\b(?P<secret>GOCSPX-[A-Za-z0-9_-]{28})",
        prefix="GOCSPX-",
        confidence=Confidence.HIGH,
        examples=('client_secret: "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"',),
        negative_examples=("GOCSPX-",),
    ),
    Rule(
        id="google-oauth-client-secret-legacy",
        name="Google OAuth client secret (before 2022)",
        provider="Google Cloud",
        kind="oauth_client_secret",
        tier=Tier.KEYED,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="24 base64url characters assigned to a Google client secret key, in a file "
        "that mentions `googleusercontent.com` or Google.",
        keys=r"google\w*?secret|client.?secret",
        min_length=16,
        value=r"[A-Za-z0-9_-]{24}",
        context=r"googleusercontent|google",
        lines_before=5,
        lines_after=5,
        placeholder=PlaceholderPolicy.VALUE,
        examples=(
            "GOOGLE_CLIENT_ID=1234-abc.apps.googleusercontent.com\n"
            "GOOGLE_CLIENT_SECRET=Xlx8RtCqtD1GDIWFmbKGYQr8",
        ),
        negative_examples=("GOOGLE_CLIENT_SECRET=<client-secret>",),
    ),
    Rule(
        id="google-oauth-access-token",
        name="Google OAuth access token",
        provider="Google Cloud",
        kind="access_token",
        tier=Tier.PROVIDER,
        severity=Severity.LOW,
        replacement=r.GCP_FEDERATION,
        description="`ya29.` followed by base64url characters; expires after one hour.",
        pattern=r"\b(?P<secret>ya29\.[0-9A-Za-z_-]{30,})",
        lifetime=Lifetime.SHORT,
        prefix="ya29.",
        examples=(
            "access_token = 'ya29.a0AfH6SM" + "pf9dqcUgxM9ZZ810pkf6Xlx8RtCqtD1GDIWFmbKGYQr8'",
        ),
        negative_examples=("ya29.short",),
    ),
    Rule(
        id="google-oauth-refresh-token",
        name="Google OAuth refresh token",
        provider="Google Cloud",
        kind="refresh_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.GCP_FEDERATION,
        description="`1//0` followed by at least 40 base64url characters; valid until revoked.",
        pattern=r"(?<![\w/])(?P<secret>1//0[0-9A-Za-z_-]{40,})",
        anchor=r"1//0[0-9A-Za-z_-]{40}",
        prefix="1//0",
        examples=("refresh_token: '1//0" + "9Udk7Z3KhXXZUon6uZ3FCH2n6WSZ1mvw4SKdWcWC'",),
        negative_examples=("x = 1//0",),
    ),
    Rule(
        id="azure-storage-account-key",
        name="Azure storage account key",
        provider="Azure",
        kind="cloud_access_key",
        tier=Tier.PROVIDER,
        severity=Severity.CRITICAL,
        replacement=r.AZURE_FEDERATION,
        description="`AccountKey=` in a storage connection string: 88 base64 characters "
        "(64 bytes). The identifier is the `AccountName`.",
        pattern=r"AccountKey\s*=\s*(?P<secret>[A-Za-z0-9+/]{40,100}={0,2})",
        check=_azure_account,
        lines_before=2,
        examples=(
            "DefaultEndpointsProtocol=https;AccountName=shopdata;AccountKey="
            "uJDMB0LO5UHWfCFWn05Gq59Pb2P1JJeE5bzXsm9gvjoucOmKkV9Ikdf92qrjvWeRkipW8wXmWarqp1qhAbCd=="
            ";EndpointSuffix=core.windows.net",
        ),
        negative_examples=("AccountName=<name>;AccountKey=<key>;", "AccountName=X;AccountKey=X;"),
    ),
    Rule(
        id="azure-shared-access-key",
        name="Azure Service Bus, Event Hubs or IoT Hub shared access key",
        provider="Azure",
        kind="cloud_access_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.AZURE_FEDERATION,
        description="`SharedAccessKey=` followed by 44 base64 characters in a connection "
        "string; the identifier is the `SharedAccessKeyName`.",
        pattern=r"SharedAccessKey\s*=\s*(?P<secret>[A-Za-z0-9+/]{40,90}={0,2})",
        examples=(
            "Endpoint=sb://orders.servicebus.windows.net/;SharedAccessKeyName=send;"
            "SharedAccessKey=iHSWYpUWyFiXuuyxGxZvyCrS8Q7PSK4gFR4DgJo7vn9=",
        ),
        negative_examples=(
            "SharedAccessKeyName=[name];SharedAccessKey=[Shared Access key goes here];",
        ),
    ),
    Rule(
        id="azure-sas-token",
        name="Azure shared access signature",
        provider="Azure",
        kind="signed_url",
        tier=Tier.PROVIDER,
        severity=Severity.MEDIUM,
        replacement=r.AZURE_FEDERATION,
        description="A SAS query string: `sv=` (version) … `sig=` (a URL-encoded base64 "
        "HMAC). Its `se=` (expiry) decides whether it is short-lived.",
        pattern=r"[?&;]sv=\d{4}-\d{2}-\d{2}&[^\s\"'<>]{0,300}?sig=(?P<secret>[A-Za-z0-9%+/]{30,}(?:%3D|=){0,2})",
        anchor=r"sv=\d{4}-\d{2}-\d{2}&[^\s\"'<>]{0,300}sig=[A-Za-z0-9%+/]{30}",
        check=validators.expiry_from_sas,
        examples=(
            "https://shop.blob.core.windows.net/c/f?sv=2022-11-02&ss=b&se=2031-01-01T00:00:00Z"
            "&sp=r&sig=3wlMvTgbqvXQqwuW8Y9XW1tSnBc0np9B%2Fabc%3D",
        ),
        negative_examples=("?sv=2022-11-02&sig=<signature>",),
    ),
    Rule(
        id="azure-app-configuration-connection-string",
        name="Azure App Configuration connection string",
        provider="Azure",
        kind="connection_string",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.AZURE_FEDERATION,
        description="`Endpoint=https://<store>.azconfig.io;Id=<id>;Secret=<44 base64 "
        "characters>`; the identifier is the credential `Id`.",
        pattern=r"\.azconfig\.io;Id=(?P<id>[^;\s]{4,80});Secret=(?P<secret>[A-Za-z0-9+/]{40,88}={0,2})",
        check=lambda c: Check(identifier=c.groups.get("id")),
        examples=(
            "Endpoint=https://shop.azconfig.io;Id=Ab1c-d2-s0:pf9dqcUgxM9ZZ810pkf6;"
            "Secret=iHSWYpUWyFiXuuyxGxZvyCrS8Q7PSK4gFR4DgJo7vn9=",
        ),
        negative_examples=("Endpoint=https://contoso.azconfig.io;Id=xxx;Secret=xxx",),
    ),
    Rule(
        id="azure-ad-client-secret",
        name="Microsoft Entra ID (Azure AD) client secret",
        provider="Azure",
        kind="oauth_client_secret",
        tier=Tier.PROVIDER,
        severity=Severity.CRITICAL,
        replacement=r.AZURE_FEDERATION,
        description="40 characters with `Q~` at positions 4-5: three characters, a digit, "
        "`Q~`, then 31 to 34 characters of `[A-Za-z0-9_~.-]`.",
        pattern=r"(?<![\w~.-])(?P<secret>[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34})(?![\w~.-])",
        anchor=r"[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31}",
        examples=("AZURE_CLIENT_SECRET=pf98Q~qcUgxM9ZZ810pkf6Xlx8RtCqtD1GDI.Fmb",),
        negative_examples=("x = 'Q~'",),
    ),
    Rule(
        id="azure-devops-pat",
        name="Azure DevOps personal access token",
        provider="Azure DevOps",
        kind="personal_access_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.CI_FEDERATION,
        description="84 base62 characters with `AZDO` at positions 77-80 (format of 2024).",
        pattern=r"\b(?P<secret>[A-Za-z0-9]{76}AZDO[A-Za-z0-9]{4})\b",
        anchor=r"[A-Za-z0-9]{76}AZDO[A-Za-z0-9]{4}",
        confidence=Confidence.HIGH,
        examples=(
            "ADO_PAT=QYNdaKy8isWydfhl3TvtnythpZPPPP6UeP3C4DSA7Lc360a9JQQJ99BFACAAAAAtDdO9eGzMcNUx"
            "AZDO7sVT",
        ),
        negative_examples=(
            "QYNdaKy8isWydfhl3TvtnythpZPPPP6UeP3C4DSA7Lc360a9Y6yNd14tDdO9eGzMcNU7AZDO",
        ),
    ),
    Rule(
        id="azure-devops-pat-legacy",
        name="Azure DevOps personal access token (before 2024)",
        provider="Azure DevOps",
        kind="personal_access_token",
        tier=Tier.KEYED,
        severity=Severity.HIGH,
        replacement=r.CI_FEDERATION,
        description="52 lowercase base32 characters assigned to a key that names a personal "
        "access token or Azure DevOps.",
        keys=r"personal.?access.?token|(?:ado|azure|devops|vsts|tfs)\w*?(?:pat|token)|^pat$",
        min_length=16,
        value=r"[a-z2-7]{52}",
        placeholder=PlaceholderPolicy.VALUE,
        examples=(
            'var personalAccessToken = "z47woeu65gh2vnbhm2qrswhqygp4ywwavik5h3pibrv4hy2e5pg5";',
        ),
        negative_examples=('personalAccessToken = "<pat>"',),
    ),
    Rule(
        id="digitalocean-token",
        name="DigitalOcean token",
        provider="DigitalOcean",
        kind="api_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`dop_v1_` (personal access token), `doo_v1_` (OAuth access token) or "
        "`dor_v1_` (refresh token) followed by 64 hexadecimal characters.",
        pattern=r"\b(?P<secret>do(?P<type>[opr])_v1_[a-f0-9]{64})\b",
        check=lambda c: Check(
            identifier={
                "p": "personal access token",
                "o": "OAuth access token",
                "r": "refresh token",
            }[c.groups["type"]]
        ),
        confidence=Confidence.HIGH,
        prefix="do",
        examples=(
            'token = "dop_v1_f506b40928b5b7a767c76fb008f86bebb2737f6a6f0fb23c6f5da2cec255404e"',
        ),
        negative_examples=("dop_v1_<token>",),
    ),
    Rule(
        id="alibaba-access-key-id",
        name="Alibaba Cloud AccessKey ID",
        provider="Alibaba Cloud",
        kind="cloud_access_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`LTAI` followed by 12 to 20 base62 characters.",
        pattern=r"\b(?P<secret>LTAI[A-Za-z0-9]{12,20})\b",
        check=lambda c: Check(identifier=c.secret),
        prefix="LTAI",
        examples=("ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tQYNdaKy8isWydfhl3T",),
        negative_examples=("LTAI_SHORT",),
    ),
    Rule(
        id="heroku-api-key",
        name="Heroku API key",
        provider="Heroku",
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`HRKU-` followed by 60 base64url characters (format of 2024).",
        pattern=r"\b(?P<secret>HRKU-[A-Za-z0-9_-]{60})\b",
        prefix="HRKU-",
        examples=(
            "HEROKU_API_KEY=HRKU-AAqfRgVYruPWJiDELCrujke8PM3r804eluGRA35grOtWgIcFiI2TBAHS0GNz",
        ),
        negative_examples=("HRKU-",),
    ),
    Rule(
        id="heroku-api-key-legacy",
        name="Heroku API key (UUID)",
        provider="Heroku",
        kind="api_key",
        tier=Tier.KEYED,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="A UUID assigned to a key that names Heroku.",
        keys=r"heroku",
        min_length=16,
        value=r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        examples=("HEROKU_API_KEY: 4ea38b7b-f563-7709-4bae-87aeaaaa8a2c",),
        negative_examples=("HEROKU_APP_ID: ${{ vars.HEROKU_APP_ID }}",),
    ),
    Rule(
        id="databricks-token",
        name="Databricks personal access token",
        provider="Databricks",
        kind="personal_access_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`dapi` followed by 32 hexadecimal characters and an optional `-<digit>`.",
        pattern=r"\b(?P<secret>dapi[a-f0-9]{32}(?:-\d)?)\b",
        prefix="dapi",
        examples=("DATABRICKS_TOKEN=dapif506b40928b5b7a767c76fb008f86beb",),
        negative_examples=("dapiDataGetTopLongShortPositionRatio()",),
    ),
    Rule(
        id="cloudflare-api-token",
        name="Cloudflare API token or key",
        provider="Cloudflare",
        kind="api_token",
        tier=Tier.KEYED,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="40 base64url characters (API token) or 37 hexadecimal characters "
        "(global API key) assigned to a key that names Cloudflare.",
        keys=r"cloudflare|\bcf_api|\bcf_token",
        min_length=16,
        value=r"[A-Za-z0-9_-]{40}|[a-f0-9]{37}",
        placeholder=PlaceholderPolicy.VALUE,
        examples=("CLOUDFLARE_API_TOKEN=9Udk7Z3KhXXZUon6uZ3FCH2n6WSZ1mvw4SKdWcWC",),
        negative_examples=("CLOUDFLARE_API_TOKEN=your-cloudflare-token-here-xxxxxxxxxxxxx",),
    ),
)
