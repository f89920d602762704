"""Kubernetes Secret manifests: base64 `data` values are decoded and scanned with their key,
`stringData` values are read as written, and findings point at the key's line."""

from __future__ import annotations

import base64
import json

import pytest

from warden.scan import Keyring, scan_text
from warden.scan.manifests import decode_data_value

_KEYRING = Keyring(b"\x04" * 32)


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _scan(text: str, path: str = "k8s/secret.yaml"):
    return scan_text(text, path, keyring=_KEYRING)


def _secret(data: dict[str, str], *, name: str = "db", extra: str = "") -> str:
    lines = "\n".join(f"  {key}: {value}" for key, value in data.items())
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: prod\n"
        f"type: Opaque\n{extra}data:\n{lines}\n"
    )


def test_decoded_password_is_found_at_its_key(fake):
    password = fake.password()
    findings = _scan(_secret({"DB_PASSWORD": _b64(password)}))
    assert [finding.rule_id for finding in findings] == ["generic-password"]
    finding = findings[0]
    assert finding.line == 8
    assert finding.column == len("  DB_PASSWORD: ") + 1
    assert finding.secret_hash == _KEYRING.secret_hash(password)
    assert finding.details["kubernetes_secret"] == "prod/db"
    assert finding.details["kubernetes_secret_key"] == "data.DB_PASSWORD"
    assert finding.details["encoding"] == "base64, decoded"


def test_decoded_placeholder_and_its_base64_raise_nothing():
    assert _scan(_secret({"password": _b64("changeme"), "user": _b64("admin")})) == []


def test_provider_token_under_any_key(fake):
    token = fake.github()
    findings = _scan(_secret({"config": _b64(token)}))
    assert [finding.rule_id for finding in findings] == ["github-pat"]
    assert findings[0].line == 8


def test_dockerconfigjson_is_decoded_twice(fake):
    auth = _b64(f"deploy:{fake.password()}")
    config = json.dumps({"auths": {"registry.example.org": {"auth": auth}}})
    findings = _scan(
        _secret(
            {".dockerconfigjson": _b64(config)},
            extra="",
        ).replace("type: Opaque", "type: kubernetes.io/dockerconfigjson")
    )
    assert [finding.rule_id for finding in findings] == ["docker-registry-auth"]
    assert findings[0].identifier == "deploy@registry.example.org"


def test_tls_key_is_parsed(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    findings = _scan(_secret({"tls.key": _b64(pem)}))
    assert [finding.rule_id for finding in findings] == ["private-key"]
    assert findings[0].identifier.startswith("SHA256:")
    assert findings[0].line == 8


def test_multi_document_file_decodes_only_secrets(fake):
    password = fake.password()
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n"
        f"  DB_PASSWORD_B64: {_b64(password)}\n"
        "---\n" + _secret({"DB_PASSWORD": _b64(password)})
    )
    findings = _scan(text)
    # A ConfigMap's data is plain text: its value is read as written, base64 or not.
    assert [(finding.rule_id, finding.line) for finding in findings] == [
        ("generic-password", 6),
        ("generic-password", 15),
    ]
    assert findings[0].secret_hash == _KEYRING.secret_hash(_b64(password))
    assert findings[1].secret_hash == _KEYRING.secret_hash(password)


def test_list_of_secrets(fake):
    password = fake.password()
    document = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}, "data": {}},
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "b"},
                "data": {"password": _b64(password)},
            },
        ],
    }
    text = json.dumps(document, indent=2)
    findings = _scan(text, "secrets.json")
    assert [finding.rule_id for finding in findings] == ["generic-password"]
    assert findings[0].details["kubernetes_secret"] == "b"
    assert (
        findings[0].line
        == text.splitlines().index(next(line for line in text.splitlines() if '"password"' in line))
        + 1
    )


def test_string_data_is_reported_once(fake):
    password = fake.password()
    text = _secret({}).replace("data:\n\n", f"stringData:\n  password: '{password}'\n")
    findings = _scan(text)
    assert [finding.rule_id for finding in findings] == ["generic-password"]
    assert findings[0].details["kubernetes_secret_key"] == "stringData.password"


def test_inline_allowance_on_the_key_line(fake):
    text = _secret({"password": f"{_b64(fake.password())}  # warden:allow"})
    assert _scan(text) == []


def test_broken_yaml_warns_and_is_still_scanned(keyring, fake):
    from warden.scan.scanner import Scanner

    token = fake.github()
    text = (
        "kind: Secret\ndata:\n  password: {{ .Values.password | b64enc }}\n"
        f"  token: [unclosed\nGITHUB_TOKEN={token}\n"
    )
    scanner = Scanner(keyring)
    findings = scanner.scan_bytes(text.encode(), "chart/templates/secret.yaml")
    assert [finding.rule_id for finding in findings] == ["github-pat"]
    assert [warning.code for warning in scanner.result.warnings] == ["parse_error"]


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (_b64("hunter2"), "hunter2"),
        ("aHVu\n  dGVyMg==", "hunter2"),
        ("not base64!", None),
        (_b64(b"\xff\xfe\x00binary"), None),
    ],
)
def test_decode_data_value(encoded, expected):
    assert decode_data_value(encoded) == expected
