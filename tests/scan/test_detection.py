"""How the detector reads assignments: concatenated literals, type annotations, pairs in
calls and lists, long lines, and the anchors that decide which lines reach Python."""

from __future__ import annotations

import re._parser as regex_parser
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.scan import RULES, Keyring, scan_text
from warden.scan.detector import FileContent
from warden.scan.engine import AnchorKind, Engine, Profile
from warden.scan.files import is_code
from warden.scan.scanner import default_detector

_KEYRING = Keyring(b"\x03" * 32)


def _found(text: str, path: str = "app.py") -> list[tuple[str, str]]:
    return [
        (finding.rule_id, finding.redacted) for finding in scan_text(text, path, keyring=_KEYRING)
    ]


def _rules(text: str, path: str = "app.py") -> set[str]:
    return {rule_id for rule_id, _ in _found(text, path)}


@pytest.mark.parametrize(
    "template",
    [
        'token = "{a}" + "{b}"',
        "const token = '{a}' + '{b}';",
        'String token = "{a}" + "{b}";',
        "$token = '{a}' . '{b}';",
    ],
)
def test_concatenated_provider_token_is_found(fake, template):
    token = fake.github()
    text = template.format(a=token[:12], b=token[12:])
    assert "github-pat" in _rules(text, "app.py")


def test_concatenated_token_under_any_name(fake):
    token = fake.stripe_live()
    assert "stripe-secret-key" in _rules(f'x = "{token[:10]}" + "{token[10:]}"\n')


def test_concatenated_secret_is_one_finding(fake):
    secret = fake.chars("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 32)
    findings = scan_text(
        f'API_SECRET = "{secret[:16]}" + "{secret[16:]}"\n', "app.py", keyring=_KEYRING
    )
    assert [finding.rule_id for finding in findings] == ["generic-secret"]
    assert findings[0].column == len('API_SECRET = "') + 1
    assert findings[0].secret_hash == _KEYRING.secret_hash(secret)


@pytest.mark.parametrize(
    "text",
    [
        'password = "prefix-" + get_password()\n',
        'auth = "Bearer " + token\n',
        'message = "Your password " + "was changed"\n',
        "total = 'ab' + 'cd'\n",
    ],
)
def test_concatenation_with_code_or_prose_is_not_reported(text):
    assert _found(text) == []


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('    password: str = "Tr0ub4dor&3x"\n', "settings.py"),
        ('const password: string = "Tr0ub4dor&3x";\n', "client.ts"),
        ('val password: String = "Tr0ub4dor&3x"\n', "Client.kt"),
    ],
)
def test_type_annotated_assignment_is_read(text, path):
    assert "generic-password" in _rules(text, path)


@pytest.mark.parametrize(
    "text",
    [
        'actions = ["iam:AttachUserPolicy","iam:ChangePassword","iam:CreateAccessKey"]\n',
        'steps = [("pass", "passthrough"), ("scale", "scaler")]\n',
        'fields = ("username", "password", "email")\n',
        '__match_args__ = ("pw_name", "pw_passwd", "pw_uid")\n',
    ],
)
def test_list_items_not_paired(text):
    assert _found(text) == []


def test_pair_in_a_call_is_read(fake):
    password = fake.password()
    assert "generic-password" in _rules(f'os.environ.setdefault("DB_PASSWORD", "{password}")\n')


@pytest.mark.parametrize("path", ["index.html", "style.css", "bundle.js"])
def test_markup_reads_unquoted_values_as_code(path):
    text = '.bi-pass:before{content:"\\f809"} token:e.tokens.length-1,password:n.value\n'
    assert _found(text, path) == []


def test_assignment_deep_in_a_long_line_is_found(fake):
    password = fake.password()
    filler = ",".join(f'"field{number}":"value{number}"' for number in range(600))
    line = "{" + filler + f',"db_password":"{password}"' + "}"
    assert len(line) > 10_000
    findings = scan_text(line, "data.json", keyring=_KEYRING)
    assert [finding.rule_id for finding in findings] == ["generic-password"]
    assert findings[0].column == line.index(password) + 1


def test_long_line_reads_only_anchored_assignments(fake):
    # Many keys on one minified line; only the one whose value an anchor reached counts.
    token = fake.github()
    filler = ";".join(f"a{number}=b{number}" for number in range(3000))
    line = f"{filler};token='{token}';{filler}"
    assert _rules(line, "bundle.min.js") == {"github-pat"}


def test_value_on_the_next_line_is_not_read():
    text = "password:\n  - hunter2-list-item\n"
    assert _found(text, "config.yaml") == []


@pytest.mark.parametrize("rule", [rule for rule in RULES if rule.is_keyed], ids=lambda r: r.id)
def test_keyed_minimum_fits_the_value_format(rule):
    # The anchor requires min_length characters, so a shorter value could never be found.
    # Comparisons (four characters and up) reach generic-secret through their own anchor.
    shortest, _ = regex_parser.parse(rule.value or "").getwidth()
    assert rule.min_length <= shortest or rule.id == "generic-secret"


def test_python_re_fallback_matches_hyperscan_lines(fake):
    text = (
        f"GITHUB_TOKEN={fake.github()}\n"
        f"password: {fake.password()}\n"
        f'"api_key", "{fake.aws_secret()}"\n'
        f'default = "{fake.password()}"\n'
        "nothing to see here\n"
    ).encode()
    fast, slow = Engine(RULES), Engine(RULES, use_hyperscan=False)
    assert fast.name == "hyperscan"
    for profile in Profile:

        def lines(engine: Engine, profile: Profile = profile) -> set[int]:
            return {text.count(b"\n", 0, end - 1) for _, end in engine.scan(text, profile)}

        assert lines(fast) == lines(slow)


_VALUE_ALPHABET = string.ascii_letters + string.digits + "_-+/=.!@#$%^&*~:;,?<>[](){}|"
_FORMATS = (
    ("{key} = '{value}'\n", "app.py"),
    ('{key}: "{value}"\n', "settings.ts"),
    ('os.environ.setdefault("{key}", "{value}")\n', "app.py"),
    ("{key}: {value}\n", "config.yaml"),
    ('"{key}": "{value}",\n', "config.json"),
    ("{key}={value}\n", "app.env"),
    ("{key} '{value}'\n", "build.gradle.txt"),
)


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(
        ["api_secret", "CLIENT_SECRET", "password", "DB_PASS", "auth_token", "jwt_secret"]
    ),
    value=st.text(alphabet=_VALUE_ALPHABET, min_size=4, max_size=40),
    form=st.sampled_from(_FORMATS),
)
def test_anchor_fires_wherever_keyed_rules_accept(key, value, form):
    # The anchors decide which lines reach the rules: a line that the keyed rules accept
    # when read directly must have been anchored.
    template, path = form
    line = template.format(key=key, value=value)
    code = is_code(path)
    detector = default_detector()
    content = FileContent.from_text(line)
    accepted = detector._keyed_matches(0, [len(line)], content, path, code=code)
    if not accepted:
        return
    profile = Profile.CODE if code else Profile.TEXT
    anchors = detector.engine.anchors(profile)
    hits = detector.engine.scan(line.encode(), profile)
    assert any(anchors[index].kind is AnchorKind.KEYED for index, _ in hits), line


def test_nested_jwt_secret_without_digits_is_found():
    text = "jwt:\n  issuer: billing\n  secret: 'kj#Lq!vZ@pXy'\n"
    assert "jwt-signing-secret" in _rules(text, "config.yaml")


def test_parent_key_found_above_siblings():
    siblings = "\n".join(f'    "name{number}": "value{number}",' for number in range(30))
    api_key = "4ea38b7b-f563-4709-9bae-87aeac1a8a2c"
    entries = f'    "api_key": "{api_key}",\n    "token": "{api_key}"'
    text = f'{{\n  "heroku": {{\n{siblings}\n{entries}\n  }}\n}}\n'
    findings = scan_text(text, "config.json", keyring=_KEYRING)
    assert [finding.rule_id for finding in findings] == ["heroku-api-key-legacy"] * 2


def _key_with_plus_at_a_line_edge() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    # Base64 lines start or end with `+` often enough that a few keys always include one.
    for _ in range(50):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        if any(line.startswith("+") or line.endswith("+") for line in pem.splitlines()):
            return pem
    raise AssertionError("no key with a `+` at a line edge in 50 tries")


@pytest.mark.parametrize(
    ("layout", "path"),
    [
        ("{pem}", "deploy.key"),
        ("KEY = (\n{quoted_python}\n)\n", "settings.py"),
        ("const key = '{quoted_js}';\n", "app.js"),
        ('{{"private_key": "{escaped}"}}\n', "service-account.json"),
    ],
)
def test_private_key_parses_in_any_quoting(layout, path):
    pem = _key_with_plus_at_a_line_edge()
    lines = pem.strip().splitlines()
    text = layout.format(
        pem=pem,
        quoted_python="\n".join(f'    "{line}\\n"' for line in lines),
        quoted_js="\\n' +\n  '".join(lines),
        escaped="\\n".join(lines),
    )
    findings = [f for f in scan_text(text, path, keyring=_KEYRING) if f.rule_id == "private-key"]
    assert len(findings) == 1
    assert findings[0].identifier.startswith("SHA256:")
    assert findings[0].details["key_type"] == "RSA"


def _confidence(text: str, path: str) -> list[tuple[str, str]]:
    return [
        (finding.rule_id, finding.confidence.label())
        for finding in scan_text(text, path, keyring=_KEYRING)
    ]


@pytest.mark.parametrize(
    "host", ["db.example.com", "db.staging.example", "[2001:db8::1234]", "203.0.113.7:5432"]
)
def test_documentation_host_lowers_confidence(host):
    text = f"DATABASE_URL=postgresql://billing:Tr0ub4dor3x@{host}/billing\n"
    assert _confidence(text, "app.env") == [("database-connection-uri", "low")]


def test_real_host_keeps_confidence():
    text = "DATABASE_URL=postgresql://billing:Tr0ub4dor3x@db.internal:5432/billing\n"
    assert _confidence(text, "app.env") == [("database-connection-uri", "medium")]


def test_docstring_lowers_confidence(fake):
    password = fake.password()
    text = f'def connect():\n    """Connect.\n\n    >>> connect(password="{password}")\n    """\n'
    text += f'PASSWORD = "{password}"\n'
    assert _confidence(text, "db.py") == [
        ("generic-password", "low"),
        ("generic-password", "medium"),
    ]


@pytest.mark.parametrize(
    "path", [".env.example", "config.sample.yaml", "docs/setup.md", "README.rst", "examples-1.json"]
)
def test_example_and_documentation_files_lower_confidence(fake, path):
    assert _confidence(f"password: {fake.password()}\n", path) == [("generic-password", "low")]


def test_provider_token_in_documentation_keeps_confidence(fake):
    findings = scan_text(f"export GITHUB_TOKEN={fake.github()}\n", "README.md", keyring=_KEYRING)
    assert [finding.confidence.label() for finding in findings] == ["high"]


@pytest.mark.parametrize(
    "text",
    [
        'if creds.Secret != "open-sesame" {',
        "if password == 'letmein':",
        'if token == "s3cr3t-t0ken-42":',
    ],
)
def test_hard_coded_credential_check_is_found(text):
    assert _found(text, "auth.go") != []


def test_long_line_value_whose_anchor_ends_late(fake):
    # The generic secret anchor runs up to the first character that is not a letter.
    letters = fake.chars(string.ascii_letters, 60)
    secret = letters + fake.chars(string.digits + "+/", 8) + fake.chars(string.ascii_letters, 12)
    filler = ",".join(f'"field{number}":"value{number}"' for number in range(600))
    line = "{" + filler + f',"api_secret":"{secret}"' + "}"
    findings = scan_text(line, "data.json", keyring=_KEYRING)
    assert [finding.rule_id for finding in findings] == ["generic-secret"]
    assert findings[0].secret_hash == _KEYRING.secret_hash(secret)
