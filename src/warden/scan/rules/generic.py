"""Generic secrets recognised by their key name and their value.

These rules fire last (tier GENERIC): any provider, key or structural rule that claims the
same text wins. They are what makes or breaks precision, so each value passes the placeholder
and reference checks of `warden.scan.context`, and high-entropy secrets must also look random
for their character set (`warden.scan.entropy`).
"""

from __future__ import annotations

import re

from warden.scan import context, entropy
from warden.scan.model import Confidence, Severity
from warden.scan.rule import Candidate, Check, Lifetime, PlaceholderPolicy, Rule, Tier
from warden.scan.rules import replacements as r

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# Last words of a key that describe a secret without holding one: password_label,
# token_url, secret_name, api_key_header, PASSWORD_MIN_LENGTH, ...
_NOT_A_VALUE = frozenset(
    {
        "label",
        "hint",
        "placeholder",
        "prompt",
        "field",
        "fields",
        "input",
        "name",
        "names",
        "type",
        "types",
        "url",
        "uri",
        "urls",
        "endpoint",
        "path",
        "file",
        "files",
        "dir",
        "env",
        "var",
        "variable",
        "header",
        "headers",
        "prefix",
        "suffix",
        "format",
        "pattern",
        "regex",
        "length",
        "len",
        "size",
        "count",
        "ttl",
        "expiry",
        "expires",
        "expiration",
        "timeout",
        "policy",
        "version",
        "kind",
        "mode",
        "provider",
        "source",
        "store",
        "manager",
        "mgr",
        "ref",
        "arn",
        "location",
        "template",
        "hash",
        "hashed",
        "digest",
        "id",
        "ids",
        "enabled",
        "required",
        "reset",
        "forgot",
        "confirm",
        "confirmation",
        "changed",
        "set",
        "rotation",
        "class",
        "cls",
        "method",
        "function",
        "func",
        "callback",
        "handler",
        "validator",
        "validation",
        "error",
        "errors",
        "message",
        "msg",
        "description",
        "desc",
        "help",
        "title",
        "text",
        "column",
        "col",
        "index",
        "key_id",
        "keys",
        "tokens",
        "secrets",
        "passwords",
        "min",
        "max",
        "strength",
        "complexity",
        "regexp",
        "selector",
        "param",
        "parameter",
        "option",
        "attr",
        "attribute",
        "property",
        "prop",
        "spec",
        "schema",
        "dialog",
        "form",
        "widget",
        "button",
        "view",
        "page",
        "route",
        "mapping",
        "map",
        "tokenizer",
        "salt_length",
        "bits",
        "algorithm",
        "alg",
        "encoding",
        "enc",
        "used",
        "lifetime",
        "age",
    }
)
# Words anywhere in a key that make it no secret: public keys, pagination and LLM tokens.
_NOT_SECRET_WORDS = frozenset(
    {
        "public",
        "publishable",
        "pub",
        "site",
        "max",
        "min",
        "num",
        "total",
        "next",
        "page",
        "continuation",
        "pagination",
        "cursor",
        "tokenizer",
        "tokenize",
        "tokenized",
        "sort",
        "primary",
        "foreign",
        "partition",
        "cache",
        "dict",
        "lookup",
        "hotkey",
        "keyboard",
        "keycode",
        "keystroke",
        "keypress",
        "keydown",
        "keyup",
        "monkey",
        "turkey",
        "donkey",
        "csrf",
        "xsrf",
        "bypass",
        "compass",
        "passthrough",
        "passive",
        "passenger",
        "passage",
        "surpass",
        "pass_through",
        "passed",
        "passes",
        "passing",
        "fingerprint",
        "checksum",
    }
)
_NOT_A_SECRET_VALUE = re.compile(
    r"""^(?:
        (?:https?|file|s3|gs|ftp)://[^@\s]*$            # a URL without credentials
      | [~.]?/[\w./-]*$ | [A-Za-z]:\\                    # a path
      | [\w.+-]+@[\w-]+\.[\w.-]+$                        # an e-mail address
      | \d{1,3}(?:\.\d{1,3}){3}(?::\d+)?$                # an IPv4 address
      | v?\d+(?:\.\d+){1,3}(?:[-+][\w.]+)?$              # a version
      | (?:sha1|sha256|sha384|sha512|md5)[-:]            # an integrity hash
      | [A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*){2,}$          # a dotted name: module.Class.attr
      | [a-z_./:-]+$                                     # letters and name punctuation:
                                                         # words, names, paths, URLs
      | [a-z_]+\d{0,3}(?:\[-?\d*\])?(?:\.[a-z_]+\d{0,3}(?:\[-?\d*\])?)+$
                                                         # a dotted name or path: Jobs[-1].JobId
      | (?:true|false|yes|no|on|off|null|none|nil)$
    )""",
    re.VERBOSE | re.IGNORECASE,
)


def key_is_descriptive(key: str) -> bool:
    """Tell whether a key names something about a secret (its label, length, URL) rather
    than the secret itself."""
    key_words = context.words(key.rsplit(".", 1)[-1])
    if not key_words:
        return True
    if key_words[-1] in _NOT_A_VALUE or "_".join(key_words[-2:]) in _NOT_A_VALUE:
        return True
    return any(word in _NOT_SECRET_WORDS for word in key_words)


# A value that continues code rather than holding a literal: `" + x + "`, `'.$p['`,
# a path or route, an ARN, a URL without credentials (`password_reset_url`-like keys).
_NOT_A_LITERAL = re.compile(
    r"^[-\\.+,)]|^\s|\s$|^/|^arn:|^[\w.-]+(?:/[\w.#:-]+)+$|^[a-z][a-z0-9+.-]*://[^@\s]*$"
)


def _usable(candidate: Candidate) -> bool:
    value = candidate.secret
    key = candidate.groups.get("key", "")
    if key_is_descriptive(key):
        return False
    if context.is_reference(value) or context.is_placeholder(value, key) or context.is_prose(value):
        return False
    if _NOT_A_LITERAL.search(value):
        return False
    last_key = key.rsplit(".", 1)[-1].lower()
    return not (len(last_key) >= 12 and last_key in value.lower())


_COMPARISONS = frozenset({"==", "!=", "===", "!=="})
# Letters and name punctuation only: in a pair such as `("password", "email")` the second
# item is more often the next field name than a password, and a comparison such as
# `token == "keyword"` tests a type or a state, not a credential.
_NAME = re.compile(r"[A-Za-z_][A-Za-z_.:-]*")
_WORDS = re.compile(r"[#@]?[A-Za-z][A-Za-z _.:-]*")
# An e-mail address, or the `name@` that anonymous FTP logins give as their password by
# convention (RFC 1635): an identity, not a secret.
_MAIL_ADDRESS = re.compile(r"[\w.+-]+@(?:[\w-]+\.[\w.-]+)?")
# A version (`3.0-`, `2.1.0-rc1`, `3.0-3.12`), which names a release, not a password.
_VERSION = re.compile(r"v?\d+(?:\.\d+)+(?:[-+.][\w.]*)?(?:-\d+(?:\.\d+)*)?-?")


# Last words of a key that is itself the secret when code compares it with a literal.
_COMPARED_SECRETS = frozenset(
    {"password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "key", "apikey"}
)


def _compares_a_secret(candidate: Candidate) -> bool:
    """Tell whether a comparison (`password == "letmein42"`) checks a hard-coded credential.

    The compared name must end with a secret's word (`pass_zero` or `token_use` are other
    things), and a lexer's `token == "keyword"` compares token types, so a token is held
    to a value that is not a plain word.
    """
    key = candidate.groups.get("key", "").rsplit(".", 1)[-1]
    key_words = context.words(key)
    if not key_words or key_words[-1] not in _COMPARED_SECRETS:
        return False
    return key_words[-1] != "token" or not _WORDS.fullmatch(candidate.secret)


def _password(candidate: Candidate) -> Check | None:
    """Accept a literal password: four characters or more, not a placeholder or a name."""
    value = candidate.secret
    if len(value) < 4 or len(value) > 200 or not _usable(candidate):
        return None
    operator = candidate.groups.get("operator")
    if operator == "," and _NAME.fullmatch(value):
        return None
    if operator in _COMPARISONS and not _compares_a_secret(candidate):
        return None
    if _VERSION.fullmatch(value) or _MAIL_ADDRESS.fullmatch(value):
        return None
    return Check()


# Keyboard and counting runs that mark a made-up value: a1b2c3d4, 123456789, abcdefgh, qwerty.
_COUNTING = re.compile(
    r"a1b2c3|1a2b3c|d4c3b2a1|123456789|987654321|abcdefgh|qwerty|0123456", re.IGNORECASE
)


def _secret(candidate: Candidate) -> Check | None:
    """Accept a high-entropy literal: random for its character set, or a UUID.

    A comparison (`secret == "open-sesame"`) is a hard-coded credential check, so it is held
    to the password rules instead: any literal that is no placeholder.
    """
    value = candidate.secret
    if candidate.groups.get("operator") in _COMPARISONS:
        return _password(candidate)
    if len(value) < 12 or len(value) > 1000 or " " in value or not _usable(candidate):
        return None
    if value[0] in "{[(":
        return None  # a structure or a template (`{0}…`), not a random token
    if _COUNTING.search(value):
        return None
    if _UUID.fullmatch(value):
        return Check(confidence=Confidence.MEDIUM)
    if _NOT_A_SECRET_VALUE.match(value):
        return None
    if not any(c.isdigit() for c in value) and not (
        len(value) >= 24 and any(c.islower() for c in value) and any(c.isupper() for c in value)
    ):
        return None
    if not entropy.looks_random(value):
        return None
    return Check()


def _signing_secret(candidate: Candidate) -> Check | None:
    value = candidate.secret
    if len(value) < 8 or not _usable(candidate):
        return None
    return Check()


RULES = (
    Rule(
        id="generic-password",
        name="Hard-coded password",
        provider="Generic",
        kind="password",
        tier=Tier.GENERIC,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="A literal value of at least four characters assigned to a key whose "
        'words include password, passwd, pwd or pass (`DB_PASSWORD=…`, `"password": …`, '
        '`<add key="SmtpPassword" value=…>`, `password == "…"`). Placeholders, '
        "references, values naming their key and keys that describe a password "
        "(`password_label`, `PASSWORD_MIN_LENGTH`) are skipped; in source code an unquoted "
        "value is an expression and is skipped too.",
        # `pass` alone or between key separators (DB_PASS, smtp-pass, pass2), never inside a
        # word (bypass, passage, compass).
        keys=r"passw|passphrase|pwd|(?:^|[\d_.$@-])pass$|(?:^|[\d_.$@-])pass[\d_.$@-]"
        r"|(?:^|[_.-])pw$",
        value=r"[\s\S]{4,}",
        check=_password,
        min_length=4,
        placeholder=PlaceholderPolicy.VALUE,
        examples=(
            "DB_PASSWORD=Tr0ub4dor&3x",
            'spring.datasource.password: "s3cr3t-Pa55"',
            '<add key="SmtpPassword" value="Tr0ub4dor&amp;3x" />',
            'if user == "admin" and password == "letmein42":',
        ),
        negative_examples=(
            "DB_PASSWORD=changeme",
            'password: "${DB_PASSWORD}"',
            "password = get_password()",
            'password_label = "Password:"',
            "PASSWORD_MIN_LENGTH = 12",
            "password: {{ .Values.db.password }}",
            'password = ""',
            "REACT_APP_MAILER_PASSWORD=smtp_password",
            "You can pass `dtype=float64` to the function.",
            'if pass_zero == "lowpass":',
            'password_last_used = "not_supported"',
            'AttributeOID.CHALLENGE_PASSWORD: "challengePassword",',
            "pwd: 3.0-3.12",
            'server->password = "ftp-client@";',
        ),
    ),
    Rule(
        id="generic-secret",
        name="Hard-coded secret, token or API key",
        provider="Generic",
        kind="api_key",
        tier=Tier.GENERIC,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        description="A random-looking literal of at least 12 characters (or a UUID) assigned "
        "to a key such as `*_SECRET`, `*_TOKEN`, `api_key`, `access_key`, `private_key`, "
        "`client_secret`. Random means entropy of at least 0.8 of what a random string of the "
        "same length and character set reaches, and a digit or mixed case.",
        keys=r"secret|token|api.?key|apikey|access.?key|private.?key|auth.?key|credential"
        r"|signing.?key|encryption.?key|master.?key|account.?key|app.?key|license.?key"
        r"|session.?key|webhook.?key|consumer.?key|subscription.?key|service.?key|admin.?key"
        r"|ingest.?key|deploy.?key|write.?key|\bpat$",
        value=r"[^\s]{4,}",
        check=_secret,
        # 12 for an assignment and 4 for a comparison, which has an anchor of its own.
        min_length=12,
        # The check rejects values made only of letters and `_ - . / :` (words, names,
        # paths, URLs), so an accepted value has another character among its first 100, or
        # is longer. A value starting with a bracket is an object or a list.
        value_anchor=r"""[^\sA-Za-z_"'{[(./:-]|[^\s"'{[(](?:[^\s"']{0,99}[^\sA-Za-z_"'./:-]"""
        r"""|[^\s]{100})""",
        lifetime=Lifetime.UNKNOWN,
        placeholder=PlaceholderPolicy.VALUE,
        examples=(
            "CLIENT_SECRET = '9Udk7Z3KhXXZUon6uZ3FCH2n6WSZ1mvw4SKdWcWC'",
            "api_key: 3wlMvTgbqvXQqwuW8Y9XW1tSnBc0np9B",
            '"apiToken": "4ea38b7b-f563-7709-4bae-87aeaaaa8a2c"',
        ),
        negative_examples=(
            "API_KEY=your-api-key-here",
            "secret_name: prod/db/credentials",
            "token_url: https://auth.example.org/oauth/token",
            "max_tokens: 4096",
            "SECRET_KEY = os.environ['SECRET_KEY']",
            "api_key_header = 'X-API-Key'",
            "request_id: 4ea38b7b-f563-7709-4bae-87aeaaaa8a2c",
            '"AWS::SecretsManager::Secret": "f6b785ff8e74d121",',
            '"output_token": "StreamDescription.Shards[-1].ShardId",',
            'update_token = "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"',
            "if token == 'keyword':",
            "``arn:aws:secretsmanager:region:account-number:secret:example-123456``",
        ),
    ),
    Rule(
        id="jwt-signing-secret",
        name="JWT signing secret",
        provider="Generic",
        kind="signing_key",
        tier=Tier.KEYED,
        severity=Severity.HIGH,
        replacement=r.SIGNING_KEY,
        description="A literal of at least 8 characters assigned to `jwt_secret`, "
        "`JWT_SIGNING_KEY` or a `secret` nested under `jwt:`. Anyone holding it can mint "
        "tokens the service accepts.",
        keys=r"jwt.?(?:secret|signing.?key|key)|jwt\.[\w.]*secret",
        value=r"[^\s][\s\S]{7,}",
        check=_signing_secret,
        min_length=8,
        nested_keys=r"^(?:secret|signing.?key|key)$",
        placeholder=PlaceholderPolicy.VALUE,
        examples=("jwt:\n  secret: 'kj4#Lq9!vZ2@pX'\n  ttl: 3600", "JWT_SECRET=kj4#Lq9!vZ2@pX"),
        negative_examples=("JWT_SECRET=${JWT_SECRET}", "jwt:\n  secret: changeme"),
    ),
    Rule(
        id="password-in-text",
        name="Password stated in prose",
        provider="Generic",
        kind="password",
        tier=Tier.GENERIC,
        severity=Severity.MEDIUM,
        replacement=r.SECRET_STORE,
        description="A sentence such as `the password is 'x'` or `the default password for "
        'user "admin" is "x"` in documentation, comments or logs.',
        pattern=r"(?i)\bpassword(?:\s+for\s+(?:the\s+)?user\s+[\"'`][^\"'`\n]{1,64}[\"'`])?\s+is\s+"
        r"[\"'`](?P<secret>[^\"'`\s]{3,64})[\"'`]",
        anchor=r"password(?:\s+for\s+(?:the\s+)?user\s+[\"'`][^\"'`\n]{1,64}[\"'`])?\s+is\s+[\"'`]",
        ignore_case=True,
        check=lambda c: (
            None
            if context.is_placeholder(c.secret, "password") or context.is_reference(c.secret)
            else Check()
        ),
        examples=(
            "The default password is 'blooberry'.",
            "Make sure the password for user 'postgres' is 'hunter22'.",
        ),
        negative_examples=("The password is '<your password>'", "the password is 'changeme'"),
    ),
)
