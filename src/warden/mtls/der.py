"""Concatenated DER certificates, as the Workload API sends chains and bundles."""

from __future__ import annotations

from cryptography import x509

_SEQUENCE = 0x30


def split_der(data: bytes) -> list[bytes]:
    """Split concatenated DER values (each an ASN.1 SEQUENCE) into a list.

    Raises ValueError naming the offset of the first malformed value.
    """
    values = []
    offset = 0
    while offset < len(data):
        if data[offset] != _SEQUENCE or offset + 2 > len(data):
            raise ValueError(f"invalid DER at byte {offset}: expected an ASN.1 SEQUENCE")
        first = data[offset + 1]
        header = 2
        if first < 0x80:
            length = first
        else:
            size = first & 0x7F
            # Certificates are far below 2**32 bytes; indefinite length (0x80) is not DER.
            if size == 0 or size > 4 or offset + 2 + size > len(data):
                raise ValueError(f"invalid DER length at byte {offset}")
            length = int.from_bytes(data[offset + 2 : offset + 2 + size], "big")
            header += size
        end = offset + header + length
        if end > len(data):
            raise ValueError(
                f"truncated DER value at byte {offset}: {end - len(data)} bytes missing"
            )
        values.append(data[offset:end])
        offset = end
    return values


def load_der_certificates(data: bytes) -> list[x509.Certificate]:
    """Parse concatenated DER certificates, in order."""
    return [x509.load_der_x509_certificate(value) for value in split_der(data)]
