"""Chat, mail and telephony credentials: Slack, Microsoft Teams, Discord, Telegram, Twilio,
SendGrid, Mailgun, Mailchimp, Postmark."""

from __future__ import annotations

import re

from warden.scan.model import Confidence, Severity
from warden.scan.rule import Candidate, Check, PlaceholderPolicy, Rule, Tier
from warden.scan.rules import replacements as r

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _slack_team(candidate: Candidate) -> Check:
    team = candidate.secret.split("-")[1] if candidate.secret.count("-") >= 2 else None
    return Check(identifier=f"team {team}" if team else None)


def _twilio_key(candidate: Candidate) -> Check:
    paired = re.search(
        r"(?<![A-Za-z0-9])[A-Za-z0-9]{32}(?![A-Za-z0-9])",
        candidate.text.replace(candidate.secret, ""),
    )
    return Check(
        identifier=candidate.secret,
        confidence=Confidence.HIGH if paired else Confidence.MEDIUM,
        details={"api_key_secret": "found beside the SID"} if paired else {},
    )


RULES = (
    Rule(
        id="slack-bot-token",
        name="Slack bot token",
        provider="Slack",
        kind="bot_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`xoxb-`, the team id, the bot user id, and 24 base62 characters.",
        pattern=r"\b(?P<secret>xoxb-\d{8,13}-\d{8,14}-[A-Za-z0-9]{24})\b",
        check=_slack_team,
        confidence=Confidence.HIGH,
        prefix="xoxb-",
        examples=("SLACK_BOT_TOKEN=xoxb-263594206564-2343594206574-Xlx8RtCqtD1GDIWFmbKGYQr8",),
        negative_examples=("xoxb-0000000000-0000000000000-xxxxxxxxxxxxxxxxxxxxxxxx",),
    ),
    Rule(
        id="slack-legacy-bot-token",
        name="Slack legacy bot token",
        provider="Slack",
        kind="bot_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`xoxb-`, one number, and 24 base62 characters (bots created before 2021).",
        pattern=r"\b(?P<secret>xoxb-\d{8,13}-[A-Za-z0-9]{24})\b",
        confidence=Confidence.HIGH,
        prefix="xoxb-",
        examples=('token = "xoxb-47834520726-Xlx8RtCqtD1GDIWFmbKGYQr8"',),
        negative_examples=("xoxb-47834520726-<token>",),
    ),
    Rule(
        id="slack-user-token",
        name="Slack user token",
        provider="Slack",
        kind="user_token",
        tier=Tier.PROVIDER,
        severity=Severity.CRITICAL,
        replacement=r.SECRET_STORE,
        description="`xoxp-`, three numbers (team, user, token) and 32 hexadecimal "
        "characters. Acts as a person: critical.",
        pattern=r"\b(?P<secret>xoxp-\d{8,13}-\d{8,13}-\d{8,13}-[a-f0-9]{32})\b",
        check=_slack_team,
        confidence=Confidence.HIGH,
        prefix="xoxp-",
        examples=("xoxp-263594206564-263594206574-1234594206584-f506b40928b5b7a767c76fb008f86beb",),
        negative_examples=("xoxp-<token>",),
    ),
    Rule(
        id="slack-app-token",
        name="Slack app-level token",
        provider="Slack",
        kind="app_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`xapp-`, a number, and an id and secret part.",
        pattern=r"\b(?P<secret>xapp-\d{1,13}-[A-Za-z0-9/+-]{20,})",
        anchor=r"xapp-\d{1,13}-[A-Za-z0-9/+-]{20}",
        prefix="xapp-",
        examples=(
            "SLACK_APP_TOKEN=xapp-1-A0123456789-2343594206574-f506b40928b5b7a767c76fb008f86beb",
        ),
        negative_examples=("xapp-1-<token>",),
    ),
    Rule(
        id="slack-other-token",
        name="Slack configuration, refresh or legacy workspace token",
        provider="Slack",
        kind="api_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`xoxe.xoxp-`/`xoxe-` (configuration and refresh tokens) or `xoxa-`, "
        "`xoxr-`, `xoxs-`, `xoxo-` (legacy tokens) followed by at least 20 characters.",
        pattern=r"\b(?P<secret>(?:xoxe\.xox[bp]|xoxe|xox[aors])-[A-Za-z0-9-]{20,})",
        anchor=r"(?:xoxe\.xox[bp]|xoxe|xox[aors])-[A-Za-z0-9-]{20}",
        prefix="xox",
        examples=("xoxe.xoxp-1-Mi0yLTI2MzU5NDIwNjU2NC0yMzQzNTk0MjA2NTc0",),
        negative_examples=("xoxe-",),
    ),
    Rule(
        id="slack-webhook-url",
        name="Slack incoming webhook URL",
        provider="Slack",
        kind="webhook_url",
        tier=Tier.PROVIDER,
        severity=Severity.MEDIUM,
        replacement=r.WEBHOOK,
        description="`https://hooks.slack.com/services/T…/B…/` followed by 24 base62 "
        "characters (also `workflows/` and `triggers/`).",
        pattern=r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<id>T[A-Z0-9]{6,12}/[A-Z0-9]{6,14})/(?P<secret>[A-Za-z0-9]{20,36})",
        check=lambda c: Check(identifier=c.groups.get("id")),
        confidence=Confidence.HIGH,
        examples=("https://hooks.slack.com/services/T01ABCDEF/B02GHIJKL/Xlx8RtCqtD1GDIWFmbKGYQr8",),
        negative_examples=("https://hooks.slack.com/services/T000/B000/XXXX",),
    ),
    Rule(
        id="microsoft-teams-webhook-url",
        name="Microsoft Teams incoming webhook URL",
        provider="Microsoft",
        kind="webhook_url",
        tier=Tier.PROVIDER,
        severity=Severity.MEDIUM,
        replacement=r.WEBHOOK,
        description="An Office 365 connector URL: `…webhook.office.com/webhookb2/<group>@"
        "<tenant>/IncomingWebhook/<32 hex>/<uuid>` or the older `outlook.office.com/webhook/`.",
        pattern=r"(?:outlook\.office\.com/webhook|[\w-]+\.webhook\.office\.com/webhookb2)/"
        rf"(?P<id>{_UUID}@{_UUID})/IncomingWebhook/(?P<secret>[0-9a-f]{{32}}/{_UUID})",
        confidence=Confidence.HIGH,
        examples=(
            "https://shop.webhook.office.com/webhookb2/4ea38b7b-f563-7709-4bae-87aeaaaa8a2c@"
            "5ea38b7b-f563-7709-4bae-87aeaaaa8a2c/IncomingWebhook/f506b40928b5b7a767c76fb008f86beb/"
            "6ea38b7b-f563-7709-4bae-87aeaaaa8a2c",
        ),
        negative_examples=("https://outlook.office.com/webhook/<id>/IncomingWebhook/<secret>",),
    ),
    Rule(
        id="discord-webhook-url",
        name="Discord webhook URL",
        provider="Discord",
        kind="webhook_url",
        tier=Tier.PROVIDER,
        severity=Severity.MEDIUM,
        replacement=r.WEBHOOK,
        description="`https://discord.com/api/webhooks/<id>/` followed by 68 base64url characters.",
        pattern=r"discord(?:app)?\.com/api/webhooks/(?P<id>\d{17,20})/(?P<secret>[A-Za-z0-9_-]{60,68})",
        check=lambda c: Check(identifier=f"webhook {c.groups.get('id')}"),
        confidence=Confidence.HIGH,
        examples=(
            "https://discord.com/api/webhooks/123456789012345678/"
            "qfRgVYruPWJiDELCrujke8PM3r804eluGRA35grOtWgIcFiI2TBAHS0GNzLZKF2z",
        ),
        negative_examples=("https://discord.com/api/webhooks/<id>/<token>",),
    ),
    Rule(
        id="telegram-bot-token",
        name="Telegram bot token",
        provider="Telegram",
        kind="bot_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="The bot id (8 to 10 digits), `:AA`, and 32 or 33 base64url characters.",
        pattern=r"\b(?P<id>\d{8,10}):(?P<secret>AA[0-9A-Za-z_-]{32,33})(?![0-9A-Za-z_-])",
        anchor=r"\d{8,10}:AA[0-9A-Za-z_-]{32}",
        check=lambda c: Check(identifier=f"bot {c.groups.get('id')}"),
        prefix="AA",
        examples=("TELEGRAM_TOKEN=5839574813:AAFD39kkdpWt3ywyRZergyOLMaJhac61qcX",),
        negative_examples=("5839574813:AA",),
    ),
    Rule(
        id="twilio-api-key",
        name="Twilio API key",
        provider="Twilio",
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="An API key SID, `SK` followed by 32 hexadecimal characters; the secret "
        "(32 base62 characters) is usually beside it.",
        pattern=r"\b(?P<secret>SK[0-9a-f]{32})\b",
        check=_twilio_key,
        lines_before=2,
        lines_after=2,
        prefix="SK",
        examples=(
            "TWILIO_API_KEY=SKf506b40928b5b7a767c76fb008f86beb\n"
            "TWILIO_API_SECRET=3wlMvTgbqvXQqwuW8Y9XW1tSnBc0np9B",
        ),
        negative_examples=("SK_LIVE_MODE = True",),
    ),
    Rule(
        id="twilio-auth-token",
        name="Twilio auth token",
        provider="Twilio",
        kind="api_token",
        tier=Tier.KEYED,
        severity=Severity.CRITICAL,
        replacement=r.SECRET_STORE,
        description="32 hexadecimal characters assigned to a key naming a Twilio auth token.",
        keys=r"twilio\w*?(?:auth|token|secret)",
        min_length=16,
        value=r"[0-9a-f]{32}",
        placeholder=PlaceholderPolicy.VALUE,
        examples=("TWILIO_AUTH_TOKEN=f506b40928b5b7a767c76fb008f86beb",),
        negative_examples=("TWILIO_AUTH_TOKEN=your_auth_token",),
    ),
    Rule(
        id="sendgrid-api-key",
        name="SendGrid API key",
        provider="SendGrid",
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`SG.`, a 22-character key id, `.`, and a 43-character secret.",
        pattern=r"\b(?P<secret>SG\.(?P<id>[A-Za-z0-9_-]{22})\.[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])",
        anchor=r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
        check=lambda c: Check(identifier=f"key id {c.groups.get('id')}"),
        confidence=Confidence.HIGH,
        prefix="SG.",
        examples=(
            "SENDGRID_API_KEY='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'",
        ),
        negative_examples=("SG.xxxxxxxx",),
    ),
    Rule(
        id="mailgun-api-key",
        name="Mailgun API key",
        provider="Mailgun",
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`key-` followed by 32 hexadecimal characters.",
        pattern=r"\b(?P<secret>key-[0-9a-f]{32})\b",
        prefix="key-",
        examples=("MAILGUN_API_KEY=key-f506b40928b5b7a767c76fb008f86beb",),
        negative_examples=("key-value",),
    ),
    Rule(
        id="mailchimp-api-key",
        name="Mailchimp API key",
        provider="Mailchimp",
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="32 hexadecimal characters, `-us`, and the data centre number.",
        pattern=r"\b(?P<secret>[0-9a-f]{32}-us\d{1,2})\b",
        examples=("MAILCHIMP_KEY=f506b40928b5b7a767c76fb008f86beb-us13",),
        negative_examples=("00000000000000000000000000000000-us1",),
    ),
    Rule(
        id="postmark-server-token",
        name="Postmark server or account token",
        provider="Postmark",
        kind="api_token",
        tier=Tier.KEYED,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="A UUID assigned to a key or header naming Postmark.",
        keys=r"postmark",
        min_length=16,
        value=_UUID,
        examples=('"X-Postmark-Server-Token": "4ea38b7b-f563-7709-4bae-87aeaaaa8a2c"',),
        negative_examples=('postmark: "POSTMARK_API_TEST"',),
    ),
)
