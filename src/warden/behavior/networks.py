"""Networks of source addresses: a configured CIDR or ASN table, or a default prefix.

Baselines keep each address and its network, so that a workload that moves within its
network (a NAT pool, a pod range) looks less foreign than one that appears in another. An
address's network is, in order:

1. the most specific matching entry of the configured table, when there is one;
2. otherwise its /24 (IPv4) or /64 (IPv6) prefix.

Values that are not IP addresses (`AWS Internal`, `ec2.amazonaws.com`) have no network.

Two table formats are read, one entry a line, `#` starting a comment:

- `<cidr>,<name>` or `<cidr><TAB><name>` (a header line `cidr,...` is skipped);
- the iptoasn.com TSV layout `<first address><TAB><last address><TAB><AS number><TAB>
  <country><TAB><description>`, where AS number 0 (not routed) is skipped and the name
  becomes `AS<number> <description>`.
"""

from __future__ import annotations

import bisect
import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

IPV4_DEFAULT_PREFIX = 24
IPV6_DEFAULT_PREFIX = 64

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class NetworkTableError(ValueError):
    """A network table that cannot be read; the message names the file and line."""


@dataclass
class NetworkTable:
    """CIDR entries by prefix length, plus sorted non-overlapping ranges (ASN tables)."""

    # (version, prefix length) -> network address as an integer -> name
    prefixes: dict[tuple[int, int], dict[int, str]] = field(default_factory=dict)
    # version -> sorted range starts, and (start, end, name) in the same order
    range_starts: dict[int, list[int]] = field(default_factory=dict)
    ranges: dict[int, list[tuple[int, int, str]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(map(len, self.prefixes.values())) + sum(map(len, self.ranges.values()))

    def add_cidr(self, cidr: str, name: str) -> None:
        network = ipaddress.ip_network(cidr, strict=False)
        key = (network.version, network.prefixlen)
        self.prefixes.setdefault(key, {})[int(network.network_address)] = name

    def add_range(self, first: Address, last: Address, name: str) -> None:
        self.ranges.setdefault(first.version, []).append((int(first), int(last), name))

    def finish(self) -> None:
        for version, entries in self.ranges.items():
            entries.sort()
            self.range_starts[version] = [start for start, _end, _name in entries]

    def lookup(self, address: Address) -> str | None:
        value = int(address)
        bits = address.max_prefixlen
        for (version, length), entries in sorted(
            self.prefixes.items(), key=lambda item: -item[0][1]
        ):
            if version != address.version:
                continue
            mask = ((1 << length) - 1) << (bits - length) if length else 0
            name = entries.get(value & mask)
            if name is not None:
                return name
        starts = self.range_starts.get(address.version)
        if starts:
            index = bisect.bisect_right(starts, value) - 1
            if index >= 0:
                start, end, name = self.ranges[address.version][index]
                if start <= value <= end:
                    return name
        return None


def load_network_table(path: Path) -> NetworkTable:
    """Read a CIDR or iptoasn table; raise NetworkTableError naming the bad line."""
    table = NetworkTable()
    try:
        # Opened without blocking and checked on the descriptor: a pipe would block the run,
        # and a device such as /dev/zero would fill the memory.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise NetworkTableError(
                    f"cannot read network table {path}: not a regular file (a pipe, device "
                    "or socket); give a CIDR or iptoasn.com table file"
                )
            lines = handle.read().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise NetworkTableError(f"cannot read network table {path}: {error}") from None
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [part.strip() for part in (line.split("\t") if "\t" in line else line.split(","))]
        try:
            if len(fields) >= 5 and fields[2].isdigit():
                if fields[2] == "0":
                    continue
                first = ipaddress.ip_address(fields[0])
                last = ipaddress.ip_address(fields[1])
                table.add_range(first, last, f"AS{fields[2]} {fields[4]}".strip())
            elif len(fields) >= 2:
                if number == 1 and fields[0].lower() == "cidr":
                    continue
                table.add_cidr(fields[0], fields[1] or fields[0])
            else:
                raise ValueError("expected '<cidr>,<name>' or an iptoasn line")
        except ValueError as error:
            raise NetworkTableError(
                f"invalid network table line {path}:{number}: {error}; write '<cidr>,<name>' "
                "or the iptoasn.com TSV layout"
            ) from None
    table.finish()
    return table


def network_of(address: str | None, table: NetworkTable | None = None) -> str | None:
    """Return the network of `address`: the table's entry, else its default prefix."""
    if not address:
        return None
    parsed = _parse(address)
    if parsed is None:
        return None
    if table is not None:
        name = table.lookup(parsed)
        if name is not None:
            return name
    prefix = IPV4_DEFAULT_PREFIX if parsed.version == 4 else IPV6_DEFAULT_PREFIX
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))


def _parse(address: str) -> Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        pass
    # Some exports write IPv4 octets with leading zeros ("010.001.002.003"), which the
    # ipaddress module rejects as ambiguous; they are read as decimal.
    octets = address.split(".")
    if len(octets) == 4 and all(part.isdigit() and len(part) <= 3 for part in octets):
        try:
            return ipaddress.IPv4Address(".".join(str(int(part)) for part in octets))
        except ValueError:
            return None
    return None
