"""Tell placeholders, references and test fixtures from real secret values.

Generic detection is only useful when it stays quiet on `changeme`, `<token>`, `${VAR}`,
`{{ .Values.x }}`, `os.environ["X"]` and values that merely name their key
(`password: smtp_password`), so every candidate value passes through these checks.
"""

from __future__ import annotations

import re

from warden.scan.rule import PlaceholderPolicy

# A value that is a reference to a secret kept elsewhere, or a template to be filled in.
_REFERENCE = re.compile(
    r"""
    \$\{ | \$\( | \#\{ | \{\{ | \{% | <%            # ${VAR} $(cmd) #{ruby} {{tmpl}} {% %} <% %>
    | ^\$[A-Za-z_{(]                                # $VAR, $password (shell, PHP, Perl)
    | ^%[A-Za-z_][\w]*%$                            # %VAR% (Windows)
    | %\([\w]+\)[sd] | %[sd]$                       # Python %-formatting
    | ^\{[\w.:-]*\}$                                # {0} {password} str.format
    | ^<[^<>]+>$ | ^&lt; | ^\[[^\]]+\]$             # <your-token> [Shared Access key]
    | ^@[\w.]+@$ | ^__[A-Z0-9_]+__$                 # @token@ __TOKEN__ build-time filters
    | process\.env | os\.environ | getenv\( | \benv\( | ENV\[ | System\.getenv
    | ^secrets\.[\w-]+$ | ^vars\.[\w-]+$             # GitHub Actions contexts without ${{ }}
    | ^!(?:Ref|Sub|GetAtt|vault)\b                  # CloudFormation, Ansible Vault tags
    | ^arn:aws:(?:secretsmanager|ssm): | ^(?:vault|ref\+|sm|gcp-secret|azure-keyvault):
    """,
    re.VERBOSE | re.IGNORECASE,
)

# Words that make a value a placeholder wherever they appear in it.
_PLACEHOLDER_WORDS = re.compile(
    r"changeme|change_me|change-me|changeit|example|placeholder|redacted|dummy|fake"
    r"|sample|notreal|not_real|not-a-real|insert|replace_?me|todo|fixme|xxx|\*\*\*"
    r"|^your|^<your|enter[_-]?your|^(?:test|testing|none|null|nil|undefined|empty|true|false"
    r"|default|value|blah|secret_here|password_here|token_here|foo|bar|foobar|abc|abcd"
    r"|1234|12345)$",
    re.IGNORECASE,
)

# Words that name a secret; a value made only of such words names a key instead of holding
# one. "secret" is left out: `Password=secret` is a weak password, not a placeholder.
_KEY_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "token",
        "key",
        "apikey",
        "credential",
        "credentials",
        "auth",
        "passphrase",
    }
)
# The same words, "secret" included, inside an identifier such as smtp_secret or SOME_TOKEN.
_NAMING_WORDS = _KEY_WORDS | {"secret", "secrets"}

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")
_IDENTIFIER = re.compile(r"[#./:]?[A-Za-z][A-Za-z0-9]*(?:[_.-][A-Za-z0-9]+)+|[A-Z][A-Z0-9]*")

_TEST_DIRS = frozenset(
    {
        "test",
        "tests",
        "testing",
        "__tests__",
        "spec",
        "specs",
        "fixture",
        "fixtures",
        "testdata",
        "test_data",
        "mock",
        "mocks",
        "__mocks__",
        "example",
        "examples",
        "sample",
        "samples",
        "doc",
        "docs",
    }
)
_TEST_FILE = re.compile(
    r"^(?:test_.*|.*_test\.[a-z]+|.*\.(?:spec|test)\.[a-z]+|conftest\.py|.*_spec\.rb|.*Tests?\.[a-z]+)$"
)
# Documentation and example files: READMEs and their packaged copies (METADATA, PKG-INFO),
# Markdown and reStructuredText, and files named as examples or samples of a configuration
# (`.env.example`, `config.sample.yaml`, `examples-1.json`).
_DOCUMENTATION_FILE = re.compile(
    r"^(?:readme|changelog|changes|history|contributing|metadata|pkg-info)(?:\.[\w.]+)?$"
    r"|\.(?:md|markdown|rst|adoc)$"
    r"|(?:^|[._-])(?:examples?|samples?)(?:[._-]|$)",
    re.IGNORECASE,
)


def words(text: str) -> list[str]:
    """Split a key or value into lowercase words at separators and camelCase boundaries."""
    return [word.lower() for word in _WORD_SPLIT.split(text) if word]


def is_reference(value: str) -> bool:
    """Tell whether a value points to a secret kept elsewhere instead of holding one."""
    return bool(_REFERENCE.search(value))


def has_low_variety(value: str) -> bool:
    """Tell whether a value is too uniform to be random: few distinct characters, or a run.

    Catches `xxxxxxxx`, `00000000`, `********`, `aaaa…NRAL`: a run of 8 equal characters
    has a chance below 1e-6 in 64 random base62 characters.
    """
    if len(value) >= 6 and len(set(value)) <= 3:
        return True
    # Long base64 blobs (keys, certificates) hold runs of `A` from zero bytes.
    return len(value) <= 64 and re.search(r"(.)\1{7}", value) is not None


def is_placeholder(
    value: str, key: str = "", policy: PlaceholderPolicy = PlaceholderPolicy.VALUE
) -> bool:
    """Tell whether `value` is a placeholder rather than a secret.

    With the FORMAT policy only uniform values count (see `has_low_variety`). With VALUE,
    also placeholder words, masked values (`######`), values that only name a secret
    (`SOME_PASSWORD`, `smtp_password`, `#add-password`) and values equal to one of the key's
    words (`password: password`, `CHALLENGE_PASSWORD: challengePassword`).
    """
    if has_low_variety(value):
        return True
    if policy is PlaceholderPolicy.FORMAT:
        return False
    stripped = value.strip()
    if not stripped or _PLACEHOLDER_WORDS.search(stripped):
        return True
    if not re.search(r"[A-Za-z0-9]", stripped):
        return True
    value_words = words(stripped)
    if value_words and all(word in _KEY_WORDS for word in value_words):
        return True
    # A value made of the key's words names the key: `password: password`,
    # `CHALLENGE_PASSWORD: "challengePassword"`.
    if key and value_words and set(value_words) <= set(words(key)):
        return True
    # An identifier such as smtp_password or SOME_PASSWORD names a secret but is none.
    return bool(
        _IDENTIFIER.fullmatch(stripped) and any(word in _NAMING_WORDS for word in value_words)
    )


def is_prose(value: str) -> bool:
    """Tell whether a value reads as a sentence (three or more words) rather than a secret."""
    return len(re.findall(r"[A-Za-z]{2,}", value)) >= 3 and value.count(" ") >= 2


def is_test_path(path: str) -> bool:
    """Tell whether a path is a test, fixture, example or documentation file."""
    parts = [part for part in path.split("/") if part]
    if any(part.lower() in _TEST_DIRS for part in parts[:-1]):
        return True
    if not parts:
        return False
    name = parts[-1]
    return _TEST_FILE.match(name) is not None or _DOCUMENTATION_FILE.search(name) is not None


# Delimiters of Python's triple-quoted strings, and backslash escapes, which can hide one.
_TRIPLE_QUOTE = re.compile(r"""\\.|\"\"\"|'''""", re.DOTALL)


def triple_quoted_spans(text: str) -> list[tuple[int, int]]:
    """Return the (start, end) offsets of Python's triple-quoted strings in `text`: mostly
    docstrings, where code documents itself with examples.

    A scan over delimiters, not a parser: a triple quote inside a one-line string or a
    comment can pair up wrongly, which at worst changes a finding's confidence.
    """
    spans: list[tuple[int, int]] = []
    opened: tuple[str, int] | None = None
    for match in _TRIPLE_QUOTE.finditer(text):
        delimiter = match.group()
        if delimiter.startswith("\\"):
            continue
        if opened is None:
            opened = (delimiter, match.start())
        elif delimiter == opened[0]:
            spans.append((opened[1], match.end()))
            opened = None
    return spans
