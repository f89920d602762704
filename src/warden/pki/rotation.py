"""When the CA prepares and activates its next authority, with SPIRE's thresholds.

The next authority is prepared (generated and published in the bundle, not yet signing)
once half of the current one's lifetime has passed, and it replaces the current one once
only a sixth of that lifetime remains. Between the two, peers have a third of the lifetime
to fetch the bundle that trusts the next authority before anything it signs appears. As in
SPIRE (pkg/server/ca/manager), preparation happens at most 30 days and activation at most
7 days before expiry, so long-lived CAs do not rotate needlessly early.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: Upper bound of the default bundle refresh hint, as SPIRE's bundle endpoint uses.
MAX_DEFAULT_REFRESH_HINT = timedelta(minutes=5)
#: Preparation starts no earlier than this before expiry.
PREPARATION_CAP = timedelta(days=30)
#: Activation happens no earlier than this before expiry; it also bounds useful SVID TTLs.
ACTIVATION_CAP = timedelta(days=7)


def preparation_time(not_before: datetime, not_after: datetime) -> datetime:
    """Return when the next authority is prepared: at half of the current lifetime."""
    return not_after - min((not_after - not_before) / 2, PREPARATION_CAP)


def activation_time(not_before: datetime, not_after: datetime) -> datetime:
    """Return when the next authority takes over: when a sixth of the lifetime remains."""
    return not_after - min((not_after - not_before) / 6, ACTIVATION_CAP)


def max_svid_ttl(ca_ttl: timedelta) -> timedelta:
    """Return the longest SVID TTL that a CA rotation never cuts short.

    An SVID signed just before activation gets at most the sixth of the CA's lifetime that
    remains, because its NotAfter is capped at the CA's.
    """
    return min(ca_ttl / 6, ACTIVATION_CAP)


def default_refresh_hint(ca_ttl: timedelta) -> timedelta:
    """Return the bundle refresh hint for a CA TTL: a tenth of it, at most 5 minutes.

    A tenth keeps several refreshes inside the third of a lifetime that separates
    preparation from activation, so peers trust the next CA before it signs anything.
    """
    hint = min(MAX_DEFAULT_REFRESH_HINT, ca_ttl / 10)
    return max(timedelta(seconds=1), timedelta(seconds=int(hint.total_seconds())))
