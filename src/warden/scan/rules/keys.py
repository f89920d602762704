"""Private keys and password hashes: PEM and OpenSSH keys (also base64-wrapped), PuTTY, age,
WireGuard, and crackable password hashes."""

from __future__ import annotations

from warden.scan import validators
from warden.scan.model import Confidence, Severity
from warden.scan.rule import PlaceholderPolicy, Rule, Tier
from warden.scan.rules import replacements as r

# The block ends at its END line; a block cut short (in documentation, or quoted line by
# line in code) ends at the first line that is neither base64 nor quoting.
_PEM = (
    r"(?P<secret>-----BEGIN (?P<label>(?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----"
    r"(?:[\s\S]{0,16000}?-----END[ A-Z]{0,20}PRIVATE KEY(?: BLOCK)?-----"
    r"|(?:[A-Za-z0-9+/=:\- ]|\\[rn]|[\s\"'+,;])*))"
)


def _hash_rule(rule_id: str, name: str, pattern: str, example: str) -> Rule:
    return Rule(
        id=rule_id,
        name=name,
        provider="Password hash",
        kind="password_hash",
        tier=Tier.STRUCTURAL,
        severity=Severity.LOW,
        replacement=r.PASSWORD_HASH,
        description=f"A {name.lower()} in crypt(3) or hashcat notation. Not a credential by "
        "itself, but crackable offline when the password is weak.",
        pattern=pattern,
        examples=(example,),
        negative_examples=("$1$", "$2b$12$"),
        placeholder=PlaceholderPolicy.FORMAT,
    )


RULES = (
    Rule(
        id="private-key",
        name="Private key (PEM or OpenSSH)",
        provider="Private key",
        kind="private_key",
        tier=Tier.STRUCTURAL,
        severity=Severity.CRITICAL,
        replacement=r.X509_SVID,
        description="A `-----BEGIN … PRIVATE KEY-----` block (PKCS#1, PKCS#8, SEC1, OpenSSH, "
        "PGP). Parsed offline: a key that parses has high confidence, and its identifier is "
        "the SHA-256 of its public key. Encrypted keys are reported with medium severity; a "
        "block without key material (the armour alone, a placeholder) is not reported.",
        pattern=_PEM,
        anchor=r"-----BEGIN[ A-Z]{0,20}PRIVATE KEY",
        check=validators.private_key,
        lines_after=120,
        examples=(
            "-----BEGIN EC PRIVATE KEY-----\n"
            "MHcCAQEEIDVo4Y5DRRGV5hNW6xxqCv4Ibi1e4Oc0kN0nqXz1y2eioAoGCCqGSM49\n"
            "AwEHoUQDQgAE8mfP5LkjL6J3G9N3X/6eFybWb0J0Rvyy3Yz5lGW5Y2s0l7Q+KQv1\n"
            "b7FvCXIlbU1b3r4cS8gV2nS6bS9eb3uJJQ==\n"
            "-----END EC PRIVATE KEY-----",
        ),
        negative_examples=(
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
            '_START = b"-----BEGIN OPENSSH PRIVATE KEY-----"',
            '"PrivateKey": "-----BEGIN DSA PRIVATE KEY-----<your key>-----END DSA PRIVATE KEY-----"',
        ),
    ),
    Rule(
        id="private-key-base64",
        name="Base64-encoded PEM private key",
        provider="Private key",
        kind="private_key",
        tier=Tier.STRUCTURAL,
        severity=Severity.CRITICAL,
        replacement=r.X509_SVID,
        description="Base64 of a PEM private key block, as in Kubernetes Secrets, kubeconfig "
        "`client-key-data` and environment variables: `LS0tLS1CRUdJTi` is base64 of "
        "`-----BEGIN`.",
        pattern=r"(?P<secret>LS0tLS1CRUdJTi[A-Za-z0-9+/]{20,}={0,2})",
        anchor=r"LS0tLS1CRUdJTi[A-Za-z0-9+/]{20}",
        check=validators.base64_private_key,
        prefix="LS0tLS1CRUdJTi",
        examples=(
            "client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSURWbzRZNURSUkdW"
            "NWhOVzZ4eHFDdjRJYmkxZTRPYzBrTjBucVh6MXkyZWlvQW9HQ0NxR1NNNDkKQXdFSG9VUURRZ0FFOG1mUDVMa2pM"
            "NkozRzlOM1gvNmVGeWJXYjBKMFJ2eXkzWXo1bEdXNVkyczBsN1ErS1F2MQpiN0Z2Q1hJbGJVMWIzcjRjUzhnVjJu"
            "UzZiUzllYjN1SkpRPT0KLS0tLS1FTkQgRUMgUFJJVkFURSBLRVktLS0tLQ==",
        ),
        negative_examples=("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=",),
    ),
    Rule(
        id="putty-private-key",
        name="PuTTY private key",
        provider="Private key",
        kind="private_key",
        tier=Tier.STRUCTURAL,
        severity=Severity.HIGH,
        replacement=r.HOST_KEY,
        description="A `.ppk` file: `PuTTY-User-Key-File-2:` or `-3:` followed by the "
        "algorithm; `Encryption: none` means the key is unprotected.",
        pattern=r"(?P<secret>PuTTY-User-Key-File-[23]: [\w-]+)",
        lines_after=30,
        examples=("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy",),
        negative_examples=("PuTTY-User-Key-File",),
    ),
    Rule(
        id="age-secret-key",
        name="age secret key",
        provider="age",
        kind="private_key",
        tier=Tier.PROVIDER,
        severity=Severity.CRITICAL,
        replacement=r.HOST_KEY,
        description="`AGE-SECRET-KEY-1` followed by 58 Bech32 characters (an X25519 identity).",
        pattern=r"\b(?P<secret>AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})\b",
        confidence=Confidence.HIGH,
        prefix="AGE-SECRET-KEY-1",
        examples=("AGE-SECRET-KEY-1QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7LQPZRY9X8GF2TVDW0S3JN54KHCE",),
        negative_examples=("AGE-SECRET-KEY-1",),
    ),
    Rule(
        id="wireguard-private-key",
        name="WireGuard private or preshared key",
        provider="WireGuard",
        kind="private_key",
        tier=Tier.KEYED,
        severity=Severity.CRITICAL,
        replacement=r.HOST_KEY,
        description="44 base64 characters (32 bytes) assigned to `PrivateKey` or "
        "`PresharedKey` in a WireGuard configuration.",
        keys=r"^(?:PrivateKey|PresharedKey)$",
        min_length=16,
        value=r"[A-Za-z0-9+/]{43}=",
        context=r"\[(?:Interface|Peer)\]",
        lines_before=10,
        examples=(
            "[Interface]\nAddress = 10.0.0.2/32\nPrivateKey = iHSWYpUWyFiXuuyxGxZvyCrS8Q7PSK4gFR4DgJo7vn8=",
        ),
        negative_examples=("[Interface]\nPrivateKey = <private key>",),
    ),
    _hash_rule(
        "password-hash-md5crypt",
        "MD5-crypt password hash",
        r"(?P<secret>\$1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22})(?![./A-Za-z0-9])",
        "root:$1$pf9dqcUg$xM9ZZ810pkf6Xlx8RtCqtD:19000:0:99999:7:::",
    ),
    _hash_rule(
        "password-hash-bcrypt",
        "bcrypt password hash",
        r"(?P<secret>\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53})(?![./A-Za-z0-9])",
        "admin:$2b$12$pf9dqcUgxM9ZZ810pkf6Xlx8RtCqtD1GDIWFmbKGYQr83wlMvTgbq",
    ),
    _hash_rule(
        "password-hash-sha256crypt",
        "SHA-256-crypt password hash",
        r"(?P<secret>\$5\$(?:rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43})(?![./A-Za-z0-9])",
        "$5$pf9dqcUgxM9ZZ810$iHSWYpUWyFiXuuyxGxZvyCrS8Q7PSK4gFR4DgJo7vn9",
    ),
    _hash_rule(
        "password-hash-sha512crypt",
        "SHA-512-crypt password hash",
        r"(?P<secret>\$6\$(?:rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86})(?![./A-Za-z0-9])",
        "deploy:$6$pf9dqcUg$" + "iHSWYpUWyFiXuuyxGxZvyCrS8Q7PSK4gFR4DgJo7vn9" * 2 + ":19000::::::",
    ),
    _hash_rule(
        "password-hash-cisco",
        "Cisco type 8 or 9 password hash",
        r"(?P<secret>\$[89]\$[./A-Za-z0-9]{14}\$[./A-Za-z0-9]{43})(?![./A-Za-z0-9])",
        "enable secret 8 $8$pf9dqcUgxM9ZZ8$iHSWYpUWyFiXuuyxGxZvyCrS8Q7PSK4gFR4DgJo7vn9",
    ),
    _hash_rule(
        "password-hash-kerberos-asrep",
        "Kerberos 5 AS-REP (etype 23) hash",
        r"(?P<secret>\$krb5asrep\$23\$(?:[^$:\s]+:)?[0-9a-f]{32}\$[0-9a-f]{64,})",
        "$krb5asrep$23$svc@corp.example:f506b40928b5b7a767c76fb008f86beb$"
        + "f506b40928b5b7a767c76fb008f86bebb2737f6a6f0fb23c6f5da2cec255404e" * 2,
    ),
)
