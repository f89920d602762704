"""Credentials inside connection strings, URLs, headers and command lines."""

from __future__ import annotations

import re
from typing import Any

from warden.scan import context, validators
from warden.scan.model import Confidence, Severity
from warden.scan.rule import Candidate, Check, Lifetime, Rule, Tier
from warden.scan.rules import replacements as r

_DATABASE_SCHEMES = (
    r"postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|mssql|sqlserver|oracle|cockroachdb"
    r"|clickhouse|couchdbs?|neo4j(?:\+s)?|bolt|cassandra|db2|snowflake|redshift|vertica"
)
_URL_SCHEMES = (
    r"https?|ftps?|sftp|smtps?|imaps?|pop3s?|ldaps?|amqps?|mqtts?|nats|git|ssh|svn|kafka|wss?"
)


# Hosts reserved for documentation, whose credentials are examples by definition: the
# names of RFC 2606 and RFC 6761 (example.com, .example, .test, .invalid) and the address
# blocks of RFC 5737 (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) and RFC 3849
# (2001:db8::/32).
_DOCUMENTATION_HOST = re.compile(
    r"^\[?(?:(?:[\w-]+\.)*example\.(?:com|net|org)|(?:[\w-]+\.)*[\w-]+\.(?:example|test|invalid)"
    r"|192\.0\.2\.\d+|198\.51\.100\.\d+|203\.0\.113\.\d+|2001:db8:[0-9a-f:]*)\]?(?::\d+)?$",
    re.IGNORECASE,
)


def is_documentation_host(host: str) -> bool:
    """Tell whether `host` (with or without a port) is reserved for documentation."""
    return _DOCUMENTATION_HOST.match(host) is not None


def _password(candidate: Candidate) -> Check | None:
    """Reject placeholder and templated passwords; name the user and host when known.

    A password for a documentation host (`db.example.com`, `[2001:db8::1]`) is an example:
    it is reported with low confidence.
    """
    secret = candidate.secret
    if context.is_reference(secret) or context.is_placeholder(secret, "password"):
        return None
    if secret.startswith("-"):
        return None  # the next option of a command line, not a value
    user = candidate.groups.get("user")
    host = candidate.groups.get("host")
    if user and context.is_reference(user):
        user = None
    if user:
        user = validators.user_label(user)
    identifier = f"{user}@{host}" if user and host else user or host
    if host and is_documentation_host(host):
        return Check(identifier=identifier, confidence=Confidence.LOW)
    return Check(identifier=identifier)


def _connection_string(candidate: Candidate) -> Check | None:
    check = _password(candidate)
    if check is None:
        return None
    user = re.search(r"(?i)(?:user id|uid|user|username)\s*=\s*([^;\"'\s]+)", candidate.text)
    server = re.search(
        r"(?i)(?:server|data source|host|hostname|address)\s*=\s*([^;\"'\s]+)", candidate.text
    )
    parts = [part.group(1) for part in (user, server) if part]
    if user:
        parts[0] = validators.user_label(parts[0])
    return Check(identifier="@".join(parts) if parts else None)


def _rule(
    rule_id: str,
    name: str,
    kind: str,
    tier: Tier,
    pattern: str,
    description: str,
    examples: tuple[str, ...],
    negatives: tuple[str, ...],
    **extra: Any,
) -> Rule:
    options: dict[str, Any] = {
        "provider": "Generic",
        "severity": Severity.HIGH,
        "replacement": r.SECRET_STORE,
        "check": _password,
        "confidence": Confidence.MEDIUM,
    }
    options.update(extra)
    return Rule(
        id=rule_id,
        name=name,
        kind=kind,
        tier=tier,
        pattern=pattern,
        description=description,
        examples=examples,
        negative_examples=negatives,
        **options,
    )


RULES = (
    _rule(
        "database-connection-uri",
        "Database connection URI with a password",
        "database_password",
        Tier.STRUCTURAL,
        rf"(?i)\b(?:jdbc:)?(?P<scheme>{_DATABASE_SCHEMES})(?:\+[a-z0-9]+)?://"
        r"(?P<user>[^:/\s@\"'`<>]{1,128}):(?P<secret>[^\s/?#\"'`<>,]{1,256})"
        r"@(?P<host>[^\s/?#\"'`<>@]{1,256})",
        "`scheme://user:password@host` for PostgreSQL, MySQL, MongoDB, Redis, SQL Server and "
        "other databases. The password may contain `@`; the host is what follows the last "
        "one. The identifier is user@host.",
        (
            "DATABASE_URL=postgresql://billing:Tr0ub4dor&3x@db.internal:5432/billing",
            "mongodb+srv://app:p@ss!w0rd@cluster0.example.mongodb.net/shop",
        ),
        (
            "postgresql://user:password@localhost/db",
            "postgres://${DB_USER}:${DB_PASSWORD}@db/app",
            "mysql://root:@localhost/test",
        ),
        replacement=r.DATABASE_LEASE,
        severity=Severity.CRITICAL,
        anchor=rf"(?:{_DATABASE_SCHEMES})(?:\+[a-z0-9]+)?://[^:/\s@]{{1,128}}:[^\s/?#@]{{1,256}}@",
        ignore_case=True,
    ),
    _rule(
        "url-credentials",
        "Password in a URL",
        "password",
        Tier.STRUCTURAL,
        rf"(?i)\b(?:git\+)?(?P<scheme>{_URL_SCHEMES})://(?P<user>[^:/\s@\"'`<>]{{1,128}})"
        r":(?P<secret>[^\s/?#\"'`<>,]{1,256})@(?P<host>[^\s/?#\"'`<>@:]{1,256})",
        "`scheme://user:password@host` for HTTP, FTP, SMTP, LDAP, AMQP, Git and others.",
        ("pip install --index-url https://ci:Tr0ub4dor&3x@pypi.corp.internal/simple pkg",),
        ("https://user:pass@example.com/", "https://username:password@host", "http://:@host"),
        anchor=rf"(?:{_URL_SCHEMES})://[^:/\s@]{{1,128}}:[^\s/?#@]{{1,256}}@",
        ignore_case=True,
    ),
    _rule(
        "connection-string-password",
        "Password in an ODBC, ADO.NET or JDBC connection string",
        "database_password",
        Tier.STRUCTURAL,
        r"(?i)(?:server|data source|host|database|initial catalog|uid|user id|driver|provider|dsn)"
        r"\s*=[^;\n]{0,200};(?:[^;\n]{0,200};){0,12}?[^;\n]{0,40}?\b(?:password|pwd)\s*=\s*"
        r"(?P<secret>[^;\"'\n<>]{1,128}?)\s*(?=;|\"|'|$)",
        "`Password=` or `Pwd=` among `Server=`, `Data Source=`, `User ID=`, `Database=` pairs "
        "of a connection string (appsettings.json, web.config, code). The identifier is "
        "user@server.",
        ('"Default": "Server=sql01;Database=shop;User Id=shop_app;Password=Tr0ub4dor&3x;"',),
        (
            "Server=sql01;Database=shop;User Id=sa;Password=${SQL_PASSWORD};",
            "Server=myServerAddress;Database=myDataBase;User Id=myUsername;Password=<password>;",
        ),
        check=_connection_string,
        replacement=r.DATABASE_LEASE,
        severity=Severity.CRITICAL,
        anchor=r"(?:password|pwd)\s*=",
        ignore_case=True,
    ),
    _rule(
        "netrc-password",
        "Password in a .netrc file",
        "password",
        Tier.STRUCTURAL,
        r"\bmachine\s+(?P<host>\S+)\s+login\s+(?P<user>\S+)\s+password\s+(?P<secret>\S+)",
        "`machine <host> login <user> password <password>` (one line or several).",
        ("machine git.example.org\n  login deploy\n  password Tr0ub4dor&3x",),
        ("machine api.example.org login user password <password>",),
        anchor=r"\bmachine\s",
        lines_after=3,
    ),
    _rule(
        "http-basic-auth",
        "HTTP Basic credentials in an Authorization header",
        "password",
        Tier.STRUCTURAL,
        r"(?i)authorization[\"']?\s*[:=]\s*[\"']?basic\s+(?P<secret>[A-Za-z0-9+/]{8,}={0,2})",
        "`Authorization: Basic <base64 of user:password>`; accepted only when the value "
        "decodes to `user:password`.",
        ("Authorization: Basic ZGVwbG95OnMzY3IzdC1wYXNz",),
        (
            "Authorization: Basic $(echo -n $USER:$PASS | base64)",
            "Authorization: Basic <credentials>",
        ),
        check=validators.basic_auth,
        anchor=r"authorization[\"']?\s*[:=]\s*[\"']?basic\s",
        ignore_case=True,
    ),
    _rule(
        "http-bearer-token",
        "Bearer token in an Authorization header",
        "bearer_token",
        Tier.GENERIC,
        r"(?i)authorization[\"']?\s*[:=,]\s*[\"'`]?bearer\s+(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)",
        "`Authorization: Bearer <token>` with a literal token (RFC 6750 syntax).",
        (
            'curl -H "Authorization: Bearer 3wlMvTgbqvXQqwuW8Y9XW1tSnBc0np9B" https://api.example.org',
        ),
        (
            '-H "Authorization: Bearer $TOKEN"',
            "Authorization: Bearer <token>",
            "Authorization: Bearer ${{ secrets.API_TOKEN }}",
        ),
        anchor=r"authorization[\"']?\s*[:=,]\s*[\"'`]?bearer\s",
        ignore_case=True,
        lifetime=Lifetime.UNKNOWN,
        severity=Severity.MEDIUM,
    ),
    _rule(
        "cli-password-argument",
        "Password on a command line",
        "password",
        Tier.GENERIC,
        r"(?i)\b(?P<host>psexec(?:\.exe)?|sshpass|docker\s+login|podman\s+login|buildah\s+login"
        r"|skopeo\s+login|helm\s+registry\s+login|mysql|mysqladmin|mysqldump|mongo|mongosh"
        r"|redis-cli|ldapsearch|ldapadd|ldapmodify|connect-viserver|smbclient|sqlcmd|htpasswd\s+-b)\b"
        r"[^\n|;&]{0,200}?\s(?:-p|--password(?:=|\s+)|-password\s+|-P\s+|-a\s+|-w\s+)\s*[\"']?"
        r"(?P<secret>[^\s\"']{3,128})",
        "A password given as an argument to docker/podman login, PsExec, sshpass, MySQL and "
        "MongoDB clients, redis-cli, LDAP tools, sqlcmd or PowerCLI's Connect-VIServer: it "
        "lands in shell history and process listings. Variables (`$PASSWORD`, `%PASS%`) are "
        "not reported.",
        (
            "psexec \\\\10.0.0.5 -u Administrator -p Tr0ub4dor&3x cmd",
            "mysql -h db -u root -pTr0ub4dor3x shop",
        ),
        ("docker login -u ci -p $REGISTRY_PASSWORD", "psexec \\\\host -u admin -p %PASSWORD% cmd"),
        anchor=r"(?:psexec|sshpass|login|mysql|mysqladmin|mysqldump|mongo|mongosh|redis-cli|ldapsearch"
        r"|ldapadd|ldapmodify|connect-viserver|smbclient|sqlcmd|htpasswd)",
        ignore_case=True,
    ),
    _rule(
        "curl-user-password",
        "Password in a curl or wget user option",
        "password",
        Tier.GENERIC,
        r"\b(?:curl|wget|http)\b(?:[^\n|;&]|\\\n){0,300}?\s(?:-u|--user|--http-user)[\s=][\"']?"
        r"(?P<user>[^:\s\"']{1,128}):(?P<secret>[^\s\"']{3,128})",
        "`curl -u user:password` and `wget --user`: the password lands in shell history.",
        ("curl -u deploy:Tr0ub4dor3x https://ci.example.org/job/build",),
        ("curl -u $USER:$TOKEN https://api.example.org", "curl -u user:password https://x"),
        anchor=r"\s(?:-u|--user|--http-user)[\s=][\"']?[^:\s\"']{1,128}:",
        lines_before=3,
    ),
    _rule(
        "powershell-plaintext-password",
        "Plain-text password in ConvertTo-SecureString",
        "password",
        Tier.GENERIC,
        r"(?i)ConvertTo-SecureString\s+(?:-String\s+)?[\"'](?P<secret>[^\"']{3,128})[\"']\s+-AsPlainText",
        '`ConvertTo-SecureString "password" -AsPlainText -Force`.',
        ('$p = ConvertTo-SecureString "Tr0ub4dor&3x" -AsPlainText -Force',),
        ("$p = ConvertTo-SecureString $env:PASSWORD -AsPlainText -Force",),
        anchor=r"ConvertTo-SecureString",
        ignore_case=True,
    ),
    _rule(
        "dotnet-network-credential",
        "Credentials in a .NET NetworkCredential or DirectoryEntry",
        "password",
        Tier.GENERIC,
        r"(?:NetworkCredential\(\s*[\"'](?P<user>[^\"'\n]{0,128})[\"']\s*,"
        r"|DirectoryEntry\(\s*[\"'][^\"'\n]*[\"']\s*,\s*[\"'](?P<host>[^\"'\n]{0,128})[\"']\s*,)"
        r"\s*[\"'](?P<secret>[^\"'\n]{1,128})[\"']",
        '`new NetworkCredential("user", "password")` and `new DirectoryEntry("LDAP://…", '
        '"user", "password")`, also split over lines.',
        ('client.Credentials = new NetworkCredential("svc-mail", "Tr0ub4dor&3x");',),
        ("new NetworkCredential(user, password)", 'new NetworkCredential("user", "")'),
        anchor=r"(?:NetworkCredential|DirectoryEntry)\(",
        lines_after=3,
    ),
)
