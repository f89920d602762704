"""Package and artifact registry tokens: npm, PyPI, RubyGems, NuGet, crates.io, Docker Hub,
JFrog Artifactory."""

from __future__ import annotations

from warden.scan import validators
from warden.scan.model import Confidence, Severity
from warden.scan.rule import Check, PlaceholderPolicy, Rule, Tier
from warden.scan.rules import replacements as r

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

RULES = (
    Rule(
        id="npm-access-token",
        name="npm access token",
        provider="npm",
        kind="access_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.REGISTRY_TOKEN,
        description="`npm_` followed by 30 random base62 characters and their base62 CRC32 "
        "(6 characters). A wrong checksum gives low confidence.",
        pattern=r"\b(?P<secret>npm_[A-Za-z0-9]{36})\b",
        check=validators.npm_token,
        prefix="npm_",
        examples=("//registry.npmjs.org/:_authToken=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",),
        negative_examples=("npm_config_cache", "npm_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ),
    Rule(
        id="npm-legacy-token",
        name="npm legacy auth token",
        provider="npm",
        kind="access_token",
        tier=Tier.KEYED,
        severity=Severity.HIGH,
        replacement=r.REGISTRY_TOKEN,
        description="A UUID assigned to `_authToken` in `.npmrc` or to a key naming an npm "
        "token (tokens issued before 2021).",
        keys=r"_authToken|npm.?token",
        min_length=16,
        value=_UUID,
        examples=("//registry.npmjs.org/:_authToken=4ea38b7b-f563-7709-4bae-87aeaaaa8a2c",),
        negative_examples=("//registry.npmjs.org/:_authToken=${NPM_TOKEN}",),
    ),
    Rule(
        id="pypi-upload-token",
        name="PyPI upload token",
        provider="PyPI",
        kind="api_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.REGISTRY_TOKEN,
        description="`pypi-` followed by a macaroon whose base64 starts with the encoded "
        "location `pypi.org` (`AgEIcHlwaS5vcmc`) or `test.pypi.org` (`AgENdGVzdC5weXBpLm9yZw`).",
        pattern=r"\b(?P<secret>pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,})",
        anchor=r"pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50}",
        confidence=Confidence.HIGH,
        prefix="pypi-",
        examples=(
            "password = pypi-AgEIcHlwaS5vcmcCJDkwNzYwNzU1"
            + "uJDMB0LO5UHWfCFWn05Gq59Pb2P1JJeE5bzXsm9gvjo",
        ),
        negative_examples=("password = pypi-<token>",),
    ),
    Rule(
        id="rubygems-api-key",
        name="RubyGems API key",
        provider="RubyGems",
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.REGISTRY_TOKEN,
        description="`rubygems_` followed by 48 hexadecimal characters.",
        pattern=r"\b(?P<secret>rubygems_[0-9a-f]{48})\b",
        confidence=Confidence.HIGH,
        prefix="rubygems_",
        examples=(":rubygems_api_key: rubygems_f506b40928b5b7a767c76fb008f86bebb2737f6a6f0fb23c",),
        negative_examples=("rubygems_api_key",),
    ),
    Rule(
        id="nuget-api-key",
        name="NuGet API key",
        provider="NuGet",
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.REGISTRY_TOKEN,
        description="`oy2` followed by 43 lowercase base36 characters.",
        pattern=r"\b(?P<secret>oy2[a-z0-9]{43})\b",
        prefix="oy2",
        examples=("nuget push pkg.nupkg oy2k7vw2fq4hxbnzd3rmtp6cyeajsz47woeu65gh2vnbhm",),
        negative_examples=("oy2",),
    ),
    Rule(
        id="crates-io-api-token",
        name="crates.io API token",
        provider="crates.io",
        kind="api_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.REGISTRY_TOKEN,
        description="`cio` followed by 32 base62 characters.",
        pattern=r"\b(?P<secret>cio[a-zA-Z0-9]{32})\b",
        check=lambda c: None if c.secret[3:].isalpha() else Check(),
        prefix="cio",
        examples=("CARGO_REGISTRY_TOKEN=cio3wlMvTgbqvXQqwuW8Y9XW1tSnBc0np9B",),
        negative_examples=("ciousnessAndAwarenessAreLongWordsInProse",),
    ),
    Rule(
        id="docker-hub-token",
        name="Docker Hub access token",
        provider="Docker",
        kind="personal_access_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.REGISTRY_TOKEN,
        description="`dckr_pat_` (personal) followed by 27 base64url characters, or "
        "`dckr_oat_` (organisation) followed by 32.",
        pattern=r"\b(?P<secret>dckr_(?:pat_[A-Za-z0-9_-]{27}|oat_[A-Za-z0-9_-]{32}))(?![A-Za-z0-9_-])",
        anchor=r"dckr_(?:pat_[A-Za-z0-9_-]{27}|oat_[A-Za-z0-9_-]{32})",
        confidence=Confidence.HIGH,
        prefix="dckr_",
        examples=("docker login -u ci -p dckr_pat_z47woEu65GH2vnBHm8qRswhqyGP",),
        negative_examples=("dckr_pat_<token>",),
    ),
    Rule(
        id="artifactory-api-key",
        name="JFrog Artifactory API key or reference token",
        provider="JFrog",
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.REGISTRY_TOKEN,
        description="`AKCp` followed by 69 base62 characters (API key, deprecated), or `cmVmd` "
        "(base64 of `reft`) followed by 59 base62 characters (reference token).",
        pattern=r"\b(?P<secret>AKCp[A-Za-z0-9]{69}|cmVmd[A-Za-z0-9]{59})\b",
        prefix="AKCp",
        examples=(
            "export ARTIFACTORY_API_KEY=AKCpuJDMB0LO5UHWfCFWn05Gq59Pb2P1JJeE5bzXsm9gvjoucOmKkV9Ikdf92qrjvWeRkipW8",
        ),
        negative_examples=("AKCp<key>",),
    ),
    Rule(
        id="registry-password",
        name="Package registry password in a client configuration",
        provider="Package registry",
        kind="password",
        tier=Tier.KEYED,
        severity=Severity.HIGH,
        replacement=r.REGISTRY_TOKEN,
        description="`_password` (base64) or `_auth` in `.npmrc`, `password` in `.pypirc` and "
        "`~/.gradle/gradle.properties` keys such as `mavenPassword`, `nexusPassword`, "
        "`artifactoryPassword`.",
        keys=r"^_password$|^_auth$|(?:maven|nexus|artifactory|sonatype|ossrh|gpr|jfrog)\w*?(?:password|token)",
        min_length=6,
        value=r"[^\s]{6,}",
        placeholder=PlaceholderPolicy.VALUE,
        examples=("nexusPassword=Tr0ub4dor&3x", "//registry.example.org/:_auth=dXNlcjpzM2NyM3Q="),
        negative_examples=("nexusPassword=${NEXUS_PASSWORD}",),
    ),
)
