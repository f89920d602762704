"""The workload side of SPIFFE: a Workload API client, sources that follow rotation, mutual
TLS that authorises peers by SPIFFE ID, the certificate-file helper and an mTLS proxy.

TLS: `server_context` / `client_context` (pyOpenSSL) verify each peer against the bundle of
the peer's own trust domain and work for any authorizer; `ssl_server_context` /
`ssl_client_context` build `ssl.SSLContext`s for peers of a single, known trust domain.
"""

from warden.mtls.address import DEFAULT_SOCKET_PATH, ENDPOINT_VARIABLE, EndpointAddressError
from warden.mtls.authorize import (
    Authorizer,
    authorize_any,
    authorize_id,
    authorize_member_of,
    authorize_one_of,
)
from warden.mtls.client import (
    JwtSvidToken,
    ValidatedJwt,
    Watch,
    WorkloadApiClient,
    WorkloadApiError,
    X509Context,
    X509Svid,
)
from warden.mtls.source import JwtSource, X509Source, pick_by_hint, pick_by_id
from warden.mtls.stdlib import check_peer, ssl_client_context, ssl_server_context
from warden.mtls.tls import (
    MtlsContext,
    client_context,
    dial,
    handshake,
    peer_spiffe_id,
    server_context,
)
from warden.mtls.verify import PeerRejectedError, verify_peer

__all__ = [
    "DEFAULT_SOCKET_PATH",
    "ENDPOINT_VARIABLE",
    "Authorizer",
    "EndpointAddressError",
    "JwtSource",
    "JwtSvidToken",
    "MtlsContext",
    "PeerRejectedError",
    "ValidatedJwt",
    "Watch",
    "WorkloadApiClient",
    "WorkloadApiError",
    "X509Context",
    "X509Source",
    "X509Svid",
    "authorize_any",
    "authorize_id",
    "authorize_member_of",
    "authorize_one_of",
    "check_peer",
    "client_context",
    "dial",
    "handshake",
    "peer_spiffe_id",
    "pick_by_hint",
    "pick_by_id",
    "server_context",
    "ssl_client_context",
    "ssl_server_context",
    "verify_peer",
]
