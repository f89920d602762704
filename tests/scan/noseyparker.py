"""Evaluate Warden's scanner on Nosey Parker's rule examples (a regression set).

Each example carries the Nosey Parker rule it belongs to and a label: 1 means that rule must
match it, 0 that it must not. Labels are per rule, not "this is a live secret", so the
evaluation maps each Nosey Parker rule to the Warden rules that cover the same credential:

- recall: the share of positive examples of covered rules where Warden reports one of the
  mapped rules;
- flag rate: the share of negative examples of covered rules where Warden reports one of the
  mapped rules.

Rules that detect something other than a credential (bucket names, ARNs, client ids, public
keys, user names) are listed in NOT_COVERED with the reason. The benchmark imports this file
by path, so it depends on nothing but the library and the standard library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from warden.scan import Keyring, scan_text
from warden.scan.model import Confidence

_GENERIC_PASSWORD = frozenset({"generic-password"})
_GENERIC_SECRET = frozenset({"generic-secret"})

MAPPING: dict[str, frozenset[str]] = {
    "np.adafruit.1": frozenset({"adafruit-io-key"}),
    "np.adobe.1": frozenset({"adobe-client-secret", "generic-secret"}),
    "np.age.2": frozenset({"age-secret-key"}),
    "np.anthropic.1": frozenset({"anthropic-api-key"}),
    "np.appsync.1": frozenset({"aws-appsync-api-key"}),
    "np.artifactory.1": frozenset({"artifactory-api-key"}),
    "np.atlassian.1": frozenset({"atlassian-api-token"}),
    "np.auth0.1": frozenset({"auth0-client-secret"}),
    "np.aws.1": frozenset({"aws-access-key"}),
    "np.aws.2": frozenset({"aws-secret-access-key", "aws-access-key"}),
    "np.aws.4": frozenset({"aws-session-token"}),
    "np.aws.5": frozenset({"aws-mws-auth-token"}),
    "np.aws.6": frozenset({"aws-access-key", "aws-secret-access-key"}),
    "np.azure.1": frozenset({"azure-storage-account-key", "azure-shared-access-key"}),
    "np.azure.2": frozenset({"azure-app-configuration-connection-string"}),
    "np.azure.3": frozenset({"azure-devops-pat-legacy", "generic-secret"}),
    "np.azure.4": frozenset({"azure-devops-pat"}),
    "np.bitbucket.1": frozenset({"bitbucket-app-password"}),
    "np.blynk.1": _GENERIC_SECRET,
    "np.blynk.2": frozenset({"http-bearer-token"}),
    "np.blynk.3": frozenset({"http-bearer-token"}),
    "np.blynk.8": frozenset({"curl-user-password", "generic-secret"}),
    "np.blynk.9": frozenset({"curl-user-password", "generic-secret"}),
    "np.codeclimate.1": frozenset({"codeclimate-reporter-id"}),
    "np.cratesio.1": frozenset({"crates-io-api-token"}),
    "np.databricks.1": frozenset({"databricks-token"}),
    "np.digitalocean.1": frozenset({"digitalocean-token"}),
    "np.digitalocean.2": frozenset({"digitalocean-token"}),
    "np.digitalocean.3": frozenset({"digitalocean-token"}),
    "np.django.1": frozenset({"django-secret-key"}),
    "np.dockerhub.1": frozenset({"docker-hub-token"}),
    "np.doppler.1": frozenset({"doppler-token"}),
    "np.doppler.2": frozenset({"doppler-token"}),
    "np.doppler.3": frozenset({"doppler-token"}),
    "np.doppler.4": frozenset({"doppler-token"}),
    "np.doppler.5": frozenset({"doppler-token"}),
    "np.doppler.6": frozenset({"doppler-token"}),
    "np.dropbox.1": frozenset({"dropbox-access-token"}),
    "np.dtrack.1": frozenset({"dependency-track-api-key"}),
    "np.dynatrace.1": frozenset({"dynatrace-token"}),
    "np.facebook.1": frozenset({"facebook-app-secret"}),
    "np.facebook.2": frozenset({"facebook-access-token"}),
    "np.figma.1": frozenset({"figma-token", "figma-token-legacy"}),
    "np.firecrawl.1": frozenset({"firecrawl-api-key"}),
    "np.generic.1": _GENERIC_SECRET,
    "np.generic.2": _GENERIC_SECRET,
    "np.generic.3": _GENERIC_PASSWORD,
    "np.generic.4": _GENERIC_PASSWORD,
    "np.generic.5": _GENERIC_PASSWORD,
    "np.generic.6": _GENERIC_PASSWORD,
    "np.generic.7": frozenset({"dotnet-network-credential"}),
    "np.generic.8": frozenset({"dotnet-network-credential"}),
    "np.generic.9": _GENERIC_PASSWORD,
    "np.generic.10": frozenset({"connection-string-password"}),
    "np.generic.11": frozenset({"password-in-text"}),
    "np.generic.12": frozenset({"password-in-text"}),
    "np.generic.13": frozenset({"password-in-text"}),
    "np.generic.14": frozenset({"password-in-text"}),
    "np.generic.15": frozenset({"generic-password", "generic-secret"}),
    "np.generic.16": frozenset({"generic-password", "generic-secret"}),
    "np.gitalk.1": frozenset({"github-oauth-client-secret"}),
    "np.github.1": frozenset({"github-pat"}),
    "np.github.2": frozenset({"github-oauth-token"}),
    "np.github.3": frozenset({"github-app-token"}),
    "np.github.4": frozenset({"github-refresh-token"}),
    "np.github.6": frozenset({"github-oauth-client-secret"}),
    "np.github.7": frozenset({"github-fine-grained-pat"}),
    "np.gitlab.1": frozenset({"gitlab-runner-token"}),
    "np.gitlab.2": frozenset({"gitlab-pat"}),
    "np.gitlab.3": frozenset({"gitlab-pipeline-trigger-token"}),
    "np.google.2": frozenset({"google-oauth-client-secret"}),
    "np.google.3": frozenset(
        {"google-oauth-client-secret", "google-oauth-client-secret-legacy", "generic-secret"}
    ),
    "np.google.4": frozenset({"google-oauth-access-token", "google-oauth-refresh-token"}),
    "np.google.5": frozenset({"google-api-key"}),
    "np.google.6": frozenset(
        {"google-oauth-client-secret", "google-oauth-client-secret-legacy", "generic-secret"}
    ),
    "np.gradle.1": _GENERIC_PASSWORD,
    "np.grafana.1": frozenset({"grafana-api-key-legacy"}),
    "np.grafana.2": frozenset({"grafana-token"}),
    "np.grafana.3": frozenset({"grafana-token"}),
    "np.groq.1": frozenset({"groq-api-key"}),
    "np.pwhash.1": frozenset({"password-hash-md5crypt"}),
    "np.pwhash.2": frozenset({"password-hash-bcrypt"}),
    "np.pwhash.3": frozenset({"password-hash-sha256crypt"}),
    "np.pwhash.4": frozenset({"password-hash-sha512crypt"}),
    "np.pwhash.5": frozenset({"password-hash-cisco"}),
    "np.krb5.asrep.23.1": frozenset({"password-hash-kerberos-asrep"}),
    "np.hashicorp.1": frozenset({"vault-token-legacy"}),
    "np.hashicorp.2": frozenset({"vault-token-legacy"}),
    "np.hashicorp.3": frozenset({"vault-token-legacy"}),
    "np.hashicorp.4": frozenset({"vault-token"}),
    "np.hashicorp.5": frozenset({"vault-token"}),
    "np.hashicorp.6": frozenset({"vault-token"}),
    "np.hashicorp.7": frozenset({"vault-unseal-key"}),
    "np.heroku.1": frozenset({"heroku-api-key", "heroku-api-key-legacy"}),
    "np.http.1": frozenset({"http-basic-auth"}),
    "np.http.2": frozenset({"http-bearer-token"}),
    "np.huggingface.1": frozenset({"huggingface-token"}),
    "np.jenkins.1": frozenset({"jenkins-api-token"}),
    "np.jenkins.2": frozenset({"jenkins-initial-admin-password"}),
    "np.jina.1": frozenset({"jina-api-key"}),
    "np.jwt.1": frozenset({"jwt", "kubernetes-service-account-token"}),
    "np.jwt.2": frozenset({"jwt-signing-secret"}),
    "np.jwt.3": frozenset({"jwt-signing-secret"}),
    "np.kagi.1": frozenset({"kagi-api-key"}),
    "np.kubernetes.1": frozenset({"kubernetes-bootstrap-token"}),
    "np.kubernetes.2": frozenset({"kubernetes-bootstrap-token-secret"}),
    "np.linkedin.2": frozenset({"linkedin-client-secret"}),
    "np.mailchimp.1": frozenset({"mailchimp-api-key"}),
    "np.mailgun.1": frozenset({"mailgun-api-key"}),
    "np.mapbox.2": frozenset({"mapbox-secret-token"}),
    "np.mapbox.3": frozenset({"mapbox-secret-token"}),
    "np.msteams.1": frozenset({"microsoft-teams-webhook-url"}),
    "np.mongodb.1": frozenset({"database-connection-uri"}),
    "np.nasa.1": _GENERIC_SECRET,
    "np.netrc.1": frozenset({"netrc-password"}),
    "np.newrelic.1": frozenset({"new-relic-license-key"}),
    "np.newrelic.2": frozenset({"new-relic-license-key-legacy"}),
    "np.newrelic.3": frozenset({"new-relic-api-key"}),
    "np.newrelic.4": frozenset({"new-relic-api-key"}),
    "np.newrelic.5": frozenset({"new-relic-api-key"}),
    "np.newrelic.6": frozenset({"new-relic-api-key"}),
    "np.newrelic.7": frozenset({"new-relic-api-key"}),
    "np.newrelic.8": frozenset({"new-relic-pixie-key"}),
    "np.newrelic.9": frozenset({"new-relic-pixie-key"}),
    "np.npm.1": frozenset({"npm-access-token"}),
    "np.nuget.1": frozenset({"nuget-api-key"}),
    "np.odbc.1": frozenset({"connection-string-password", "generic-password"}),
    "np.okta.1": frozenset({"okta-api-token", "okta-ssws-header"}),
    "np.openai.1": frozenset({"openai-api-key"}),
    "np.particleio.1": frozenset({"http-bearer-token", "generic-secret"}),
    "np.particleio.2": frozenset({"http-bearer-token", "generic-secret"}),
    "np.pem.1": frozenset({"private-key"}),
    "np.pem.2": frozenset({"private-key-base64"}),
    "np.phpmailer.1": _GENERIC_PASSWORD,
    "np.postgres.1": frozenset({"database-connection-uri"}),
    "np.postman.1": frozenset({"postman-api-key"}),
    "np.postmark.1": frozenset({"postmark-server-token"}),
    "np.pypi.1": frozenset({"pypi-upload-token"}),
    "np.reactapp.2": _GENERIC_PASSWORD,
    "np.rubygems.1": frozenset({"rubygems-api-key"}),
    "np.salesforce.1": frozenset({"salesforce-access-token"}),
    "np.sauce.1": _GENERIC_SECRET,
    "np.segment.1": frozenset({"segment-public-api-token"}),
    "np.sendgrid.1": frozenset({"sendgrid-api-key"}),
    "np.shopify.2": frozenset({"shopify-token"}),
    "np.shopify.3": frozenset({"shopify-token"}),
    "np.shopify.4": frozenset({"shopify-token"}),
    "np.shopify.5": frozenset({"shopify-token"}),
    "np.slack.2": frozenset({"slack-bot-token"}),
    "np.slack.3": frozenset({"slack-webhook-url"}),
    "np.slack.4": frozenset({"slack-user-token"}),
    "np.slack.5": frozenset({"slack-app-token"}),
    "np.slack.6": frozenset({"slack-legacy-bot-token"}),
    "np.sonarqube.1": frozenset({"sonarqube-token", "sonarqube-token-legacy"}),
    "np.sourcegraph.1": frozenset({"sourcegraph-access-token"}),
    "np.square.1": frozenset({"square-access-token"}),
    "np.square.2": frozenset({"square-oauth-secret"}),
    "np.stackhawk.1": frozenset({"stackhawk-api-key"}),
    "np.stripe.1": frozenset({"stripe-secret-key"}),
    "np.stripe.2": frozenset({"stripe-secret-key"}),
    "np.tavily.1": frozenset({"tavily-api-key"}),
    "np.teamcity.1": frozenset({"teamcity-access-token"}),
    "np.telegram.1": frozenset({"telegram-bot-token"}),
    "np.thingsboard.1": frozenset({"thingsboard-access-token"}),
    "np.thingsboard.2": frozenset({"thingsboard-provision-key"}),
    "np.thingsboard.3": frozenset({"thingsboard-provision-key"}),
    "np.truenas.1": frozenset({"truenas-api-key"}),
    "np.truenas.2": frozenset({"truenas-api-key"}),
    "np.twilio.1": frozenset({"twilio-api-key", "twilio-auth-token"}),
    "np.twitch.1": frozenset({"twitch-stream-key"}),
    "np.twitter.2": frozenset({"twitter-api-secret", "generic-secret"}),
    "np.wireguard.1": frozenset({"wireguard-private-key"}),
    "np.wireguard.2": frozenset({"wireguard-private-key"}),
}

NOT_COVERED: dict[str, str] = {
    "np.age.1": "an age recipient is a public key",
    "np.arn.1": "an ARN names a resource; it grants nothing",
    "np.aws.3": "an AWS account id is an identifier, not a credential",
    "np.s3.1": "an S3 bucket host name is not a credential",
    "np.s3.2": "an S3 bucket path is not a credential",
    "np.gcs.1": "a Cloud Storage bucket host name is not a credential",
    "np.gcs.2": "a Cloud Storage bucket URL is not a credential",
    "np.github.5": "a GitHub OAuth client id is public; its secret is covered (np.github.6)",
    "np.google.1": "a Google OAuth client id is public; its secret is covered",
    "np.linkedin.1": "a LinkedIn client id is public; its secret is covered (np.linkedin.2)",
    "np.twitter.1": "a Twitter API key id is public; its secret is covered (np.twitter.2)",
    "np.mapbox.1": "a Mapbox pk. token is public by design",
    "np.shopify.1": "a shop domain is not a credential",
    "np.reactapp.1": "a user name is not a credential",
    "np.psexec.1": "Nosey Parker flags the invocation whatever -p holds, variables included; "
    "Warden's cli-password-argument reports literal passwords only",
    "np.vmware.1": "Nosey Parker flags the invocation whatever -Password holds, variables "
    "included; Warden's cli-password-argument reports literal passwords only",
}


@dataclass
class Evaluation:
    """Counts and the examples behind them, for the report and the assertions."""

    positives: int = 0
    found: int = 0
    negatives: int = 0
    flagged: int = 0
    missed: list[tuple[str, str]] = field(default_factory=list)
    false_flags: list[tuple[str, str]] = field(default_factory=list)
    uncovered_positives_found: int = 0
    uncovered_positives: int = 0

    @property
    def recall(self) -> float:
        return self.found / self.positives if self.positives else 0.0

    @property
    def flag_rate(self) -> float:
        return self.flagged / self.negatives if self.negatives else 0.0


def load(path: Path) -> list[dict[str, object]]:
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def evaluate(
    examples: list[dict[str, object]], confidence: Confidence = Confidence.LOW
) -> Evaluation:
    """Scan each example as a file of unknown type and compare with the mapped rules.

    `confidence` is the lowest confidence counted; LOW counts everything the rules detect,
    including tokens whose checksum fails (most examples are edited tokens).
    """
    keyring = Keyring(b"\x01" * 32)
    result = Evaluation()
    for example in examples:
        rule_id = str(example["rule_id"])
        text = str(example["text"])
        reported = {
            finding.rule_id
            for finding in scan_text(
                text, "snippet.txt", keyring=keyring, min_confidence=confidence
            )
        }
        if rule_id in NOT_COVERED:
            if example["label"] == 1:
                result.uncovered_positives += 1
                result.uncovered_positives_found += bool(reported)
            continue
        hit = bool(reported & MAPPING[rule_id])
        if example["label"] == 1:
            result.positives += 1
            result.found += hit
            if not hit:
                result.missed.append((rule_id, text))
        else:
            result.negatives += 1
            result.flagged += hit
            if hit:
                result.false_flags.append((rule_id, text))
    return result
