"""AWS IAM exports: authorization details (JSON) and the credential report (CSV)."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from warden.governance.iam.authorization import AuthorizationDetails, parse_time
from warden.governance.iam.authorization import load as load_authorization
from warden.governance.model import Identity, Inventory, Kind, Provider

AUTHORIZATION_SOURCE = "aws_authorization_details"
CREDENTIAL_REPORT_SOURCE = "aws_credential_report"

CREDENTIAL_REPORT_COLUMNS = (
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "password_next_rotation",
    "mfa_active",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_1_last_used_region",
    "access_key_1_last_used_service",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    "access_key_2_last_used_region",
    "access_key_2_last_used_service",
    "cert_1_active",
    "cert_1_last_rotated",
    "cert_2_active",
    "cert_2_last_rotated",
)
# Without these a row cannot be tied to an identity.
_REQUIRED = ("user", "arn")


def add_authorization_details(inventory: Inventory, path: Path) -> AuthorizationDetails | None:
    """Add every user and role of the export to the inventory; return the parsed details."""
    try:
        details = load_authorization(path)
    except ValueError as error:
        inventory.warn(AUTHORIZATION_SOURCE, str(path), str(error).split(": ", 1)[-1])
        return None
    for problem in details.problems:
        inventory.warn(AUTHORIZATION_SOURCE, str(path), problem)
    for principal in details.principals.values():
        kind = Kind.AWS_USER if principal.kind == "user" else Kind.AWS_ROLE
        identity = inventory.identity(
            principal.arn, kind, Provider.AWS, principal.name, AUTHORIZATION_SOURCE
        )
        identity.account = principal.account
        identity.created_at = principal.created_at or identity.created_at
        identity.tags.update(principal.tags)
        facts = identity.facts
        facts["path"] = principal.path
        facts["groups"] = list(principal.groups)
        if principal.kind == "role":
            services = sorted(
                {s for st in principal.trust if st.effect == "Allow" for s in st.service_principals}
            )
            federated = sorted(
                {
                    f
                    for st in principal.trust
                    if st.effect == "Allow"
                    for f in st.federated_principals
                }
            )
            facts["trusted_services"] = services
            facts["trusted_federation"] = federated
            facts["trusted_principals"] = sorted(
                {a for st in principal.trust if st.effect == "Allow" for a in st.aws_principals}
            )
            facts["instance_profiles"] = list(principal.instance_profiles)
            facts["role_last_used_export"] = principal.last_used_at is not None
            if principal.last_used_at and (
                identity.last_used_at is None or principal.last_used_at > identity.last_used_at
            ):
                identity.last_used_at = principal.last_used_at
    return details


def add_credential_report(inventory: Inventory, path: Path) -> None:
    """Add users, passwords and access-key slots from an IAM credential report.

    A report with missing columns is read as far as its columns allow, with a warning. A
    row that cannot be read is skipped with a warning naming its line.
    """
    text_path = str(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        inventory.warn(CREDENTIAL_REPORT_SOURCE, text_path, f"cannot read file: {error}")
        return
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [column for column in CREDENTIAL_REPORT_COLUMNS if column not in header]
        if any(column in missing for column in _REQUIRED):
            inventory.warn(
                CREDENTIAL_REPORT_SOURCE,
                text_path,
                f"missing required columns {', '.join(c for c in _REQUIRED if c in missing)};"
                " the file is skipped (export it with 'aws iam get-credential-report')",
                line=1,
            )
            return
        if missing:
            inventory.warn(
                CREDENTIAL_REPORT_SOURCE,
                text_path,
                f"missing columns {', '.join(missing)}; facts from them are unknown",
                line=1,
            )
        while True:
            # The reader goes on with the next row after a csv.Error, so one bad row (a field
            # above the csv module's size limit) costs only itself.
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                # line_num counts the lines read before the one that failed.
                inventory.warn(
                    CREDENTIAL_REPORT_SOURCE,
                    text_path,
                    f"invalid CSV: {error}; row skipped",
                    line=reader.line_num + 1,
                )
                continue
            line = reader.line_num
            if None in row or not row.get("arn"):
                inventory.warn(
                    CREDENTIAL_REPORT_SOURCE,
                    text_path,
                    "row has the wrong number of fields or no arn; skipped",
                    line=line,
                )
                continue
            _add_row(inventory, row)


def _add_row(inventory: Inventory, row: dict[str, str]) -> None:
    arn = row["arn"]
    is_root = row.get("user") == "<root_account>"
    kind = Kind.AWS_ROOT if is_root else Kind.AWS_USER
    name = "root" if is_root else row.get("user", arn.rsplit("/", 1)[-1])
    identity = inventory.identity(arn, kind, Provider.AWS, name, CREDENTIAL_REPORT_SOURCE)
    identity.account = identity.account or (arn.split(":")[4] if arn.count(":") >= 5 else None)
    identity.created_at = identity.created_at or _time(row.get("user_creation_time"))

    facts = identity.facts
    password = _flag(row.get("password_enabled"))
    if password is not None:
        facts["password_enabled"] = password
    password_used = _time(row.get("password_last_used"))
    if password_used:
        facts["password_last_used"] = password_used
        _touch(identity, password_used)
    mfa = _flag(row.get("mfa_active"))
    if mfa is not None:
        facts["mfa_active"] = mfa

    # The report names no key ids, so each slot becomes a credential of its own.
    # NOTE: a key seen by id in CloudTrail cannot be matched to its slot without
    # ListAccessKeys (--aws-live), so it may appear twice, once per source.
    for slot in ("1", "2"):
        active = _flag(row.get(f"access_key_{slot}_active"))
        rotated = _time(row.get(f"access_key_{slot}_last_rotated"))
        if not active and rotated is None:
            continue
        credential = identity.credential(f"{arn}#access_key_{slot}", "aws_access_key")
        credential.long_lived = True
        credential.active = bool(active)
        credential.created_at = rotated
        credential.last_rotated_at = rotated
        used = _time(row.get(f"access_key_{slot}_last_used_date"))
        credential.last_used_at = used
        if used:
            _touch(identity, used)

    for slot in ("1", "2"):
        if _flag(row.get(f"cert_{slot}_active")):
            credential = identity.credential(
                f"{arn}#signing_certificate_{slot}", "aws_signing_certificate"
            )
            credential.long_lived = True
            credential.created_at = _time(row.get(f"cert_{slot}_last_rotated"))


def _touch(identity: Identity, moment: datetime) -> None:
    if identity.last_used_at is None or moment > identity.last_used_at:
        identity.last_used_at = moment


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None


def _time(value: str | None) -> datetime | None:
    if not value or value.strip().lower() in ("n/a", "no_information", "not_supported", ""):
        return None
    return parse_time(value.strip())
