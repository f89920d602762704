"""Payment and commerce credentials: Stripe, Square, Shopify, Braintree."""

from __future__ import annotations

from warden.scan.model import Confidence, Severity
from warden.scan.rule import Candidate, Check, Rule, Tier
from warden.scan.rules import replacements as r


def _stripe(candidate: Candidate) -> Check:
    live = "_live_" in candidate.secret
    kind = "restricted" if candidate.secret.startswith("rk_") else "secret"
    return Check(
        identifier=f"{kind} key ({'live' if live else 'test'} mode)",
        severity=Severity.CRITICAL if live else Severity.LOW,
    )


RULES = (
    Rule(
        id="stripe-secret-key",
        name="Stripe secret or restricted key",
        provider="Stripe",
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.CRITICAL,
        replacement=r.SECRET_STORE,
        description="`sk_` (secret) or `rk_` (restricted), `live_` or `test_`, then 24 to 99 "
        "base62 characters. Live keys move money: critical; test keys: low.",
        pattern=r"\b(?P<secret>[sr]k_(?:live|test)_[0-9a-zA-Z]{24,99})\b",
        check=_stripe,
        confidence=Confidence.HIGH,
        prefix="sk_live_",
        examples=('Stripe.api_key = "sk_live_Xlx8RtCqtD1GDIWFmbKGYQr8"',),
        negative_examples=("sk_live_xxxxxxxxxxxxxxxxxxxxxxxx", "pk_live_Xlx8RtCqtD1GDIWFmbKGYQr8"),
    ),
    Rule(
        id="square-access-token",
        name="Square access token",
        provider="Square",
        kind="access_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`sq0atp-` (production) or `sq0atb-` (sandbox) followed by 22 base64url "
        "characters.",
        pattern=r"\b(?P<secret>sq0at[pb]-[0-9A-Za-z_-]{22})(?![0-9A-Za-z_-])",
        anchor=r"sq0at[pb]-[0-9A-Za-z_-]{22}",
        confidence=Confidence.HIGH,
        prefix="sq0at",
        examples=("SQUARE_TOKEN='sq0atp-Xlx8RtCqtD1GDIWFmbKGYQ'",),
        negative_examples=("sq0atp-",),
    ),
    Rule(
        id="square-oauth-secret",
        name="Square OAuth application secret",
        provider="Square",
        kind="oauth_client_secret",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`sq0csp-` followed by 43 base64url characters.",
        pattern=r"\b(?P<secret>sq0csp-[0-9A-Za-z_-]{43})(?![0-9A-Za-z_-])",
        anchor=r"sq0csp-[0-9A-Za-z_-]{43}",
        confidence=Confidence.HIGH,
        prefix="sq0csp-",
        examples=("app_secret: sq0csp-iHSWYpUWyFiXuuyxGxZvyCrS8Q7PSK4gFR4DgJo7vn9",),
        negative_examples=("sq0csp-",),
    ),
    Rule(
        id="shopify-token",
        name="Shopify access token or app secret",
        provider="Shopify",
        kind="access_token",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="`shpat_` (admin API access token), `shpca_` (custom app), `shppa_` "
        "(legacy private app) or `shpss_` (shared secret) followed by 32 hexadecimal "
        "characters.",
        pattern=r"\b(?P<secret>(?P<type>shpat|shpca|shppa|shpss)_[a-fA-F0-9]{32})\b",
        check=lambda c: Check(identifier=f"{c.groups['type']}_"),
        confidence=Confidence.HIGH,
        prefix="shp",
        examples=('$token = "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";',),
        negative_examples=("shpat_<token>",),
    ),
    Rule(
        id="braintree-access-token",
        name="Braintree (PayPal) access token",
        provider="PayPal",
        kind="access_token",
        tier=Tier.PROVIDER,
        severity=Severity.CRITICAL,
        replacement=r.SECRET_STORE,
        description="`access_token$production$` (or `$sandbox$`), a 16-character merchant "
        "id, `$`, and 32 hexadecimal characters.",
        pattern=r"\b(?P<secret>access_token\$(?:production|sandbox)\$(?P<id>[0-9a-z]{16})\$[0-9a-f]{32})\b",
        check=lambda c: Check(identifier=f"merchant {c.groups.get('id')}"),
        confidence=Confidence.HIGH,
        prefix="access_token$",
        examples=("access_token$production$k7vw2fq4hxbnzd3r$f506b40928b5b7a767c76fb008f86beb",),
        negative_examples=("access_token$production$<merchant>$<token>",),
    ),
)
