"""Where the Workload API listens: `SPIFFE_ENDPOINT_SOCKET` and socket paths.

The SPIFFE Workload Endpoint standard names the address `unix:///absolute/path` or
`tcp://<ip>:<port>`. Tools also accept a bare absolute path, as `spire-agent -socketPath`
does.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

ENDPOINT_VARIABLE = "SPIFFE_ENDPOINT_SOCKET"
#: SPIRE's default agent socket, used when neither a path nor the variable is given.
DEFAULT_SOCKET_PATH = "/tmp/spire-agent/public/api.sock"  # noqa: S108 - SPIRE's default


class EndpointAddressError(ValueError):
    """A Workload API address is not a valid `unix://` path or `tcp://` address."""


def resolve_address(address: str | None = None) -> str:
    """Return the address to use: `address`, else `SPIFFE_ENDPOINT_SOCKET`, else SPIRE's."""
    return address or os.environ.get(ENDPOINT_VARIABLE) or DEFAULT_SOCKET_PATH


def grpc_target(address: str) -> str:
    """Turn a Workload API address into a gRPC target (`unix:/path` or `ip:port`)."""
    if address.startswith("/"):
        return f"unix:{address}"
    parts = urlsplit(address)
    if parts.scheme == "unix":
        path = parts.path
        if parts.netloc or not path.startswith("/"):
            raise EndpointAddressError(
                f"invalid Workload API address {address!r}: write unix:///absolute/path"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise EndpointAddressError(
                f"invalid Workload API address {address!r}: a unix address has only a path"
            )
        return f"unix:{path}"
    if parts.scheme == "tcp":
        host = parts.hostname
        try:
            ipaddress.ip_address(host or "")
        except ValueError:
            raise EndpointAddressError(
                f"invalid Workload API address {address!r}: tcp:// takes an IP address, "
                "not a host name"
            ) from None
        if parts.port is None or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise EndpointAddressError(
                f"invalid Workload API address {address!r}: write tcp://<ip>:<port>"
            )
        return f"{host}:{parts.port}" if ":" not in (host or "") else f"[{host}]:{parts.port}"
    raise EndpointAddressError(
        f"invalid Workload API address {address!r}: use unix:///path/to/api.sock, "
        "tcp://<ip>:<port> or an absolute path"
    )
