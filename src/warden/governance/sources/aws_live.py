"""Live AWS collection with boto3: authorization details, the credential report, access keys.

It runs only when asked (`warden audit --aws-live`) and uses boto3's normal credential
chain and endpoint settings, so `AWS_PROFILE`, `AWS_ENDPOINT_URL` and friends apply. Tests
point it at a local moto server; nothing here names an AWS host.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

from warden.governance.model import Inventory

log = logging.getLogger(__name__)

SOURCE = "aws_live"
REPORT_WAIT_SECONDS = 60.0


def collect(
    directory: Path, session: Any | None = None
) -> tuple[Path, Path | None, dict[str, str]]:
    """Write authorization details and the credential report to `directory`.

    Returns the two files (the report is None when AWS did not produce it in time) and a
    map of access key id to user ARN from `ListAccessKeys`, which links leaked key ids to
    their users. Raises botocore errors when credentials are missing or denied.
    """
    import boto3

    session = session or boto3.session.Session()
    iam = session.client("iam")
    details: dict[str, list[Any]] = {
        "UserDetailList": [],
        "GroupDetailList": [],
        "RoleDetailList": [],
        "Policies": [],
    }
    for page in iam.get_paginator("get_account_authorization_details").paginate():
        for key in details:
            details[key].extend(page.get(key, []))
    details_path = directory / "authorization-details.json"
    details_path.write_text(json.dumps(details, default=str), encoding="utf-8")
    log.info("collected authorization details", extra={"path": str(details_path)})

    report_path = _credential_report(iam, directory)

    owners: dict[str, str] = {}
    for user in details["UserDetailList"]:
        paginator = iam.get_paginator("list_access_keys")
        for page in paginator.paginate(UserName=user["UserName"]):
            for key in page.get("AccessKeyMetadata", []):
                owners[key["AccessKeyId"]] = user["Arn"]
    return details_path, report_path, owners


def _credential_report(iam: Any, directory: Path) -> Path | None:
    deadline = time.monotonic() + REPORT_WAIT_SECONDS
    delay = 0.5
    while True:
        state = iam.generate_credential_report().get("State")
        if state == "COMPLETE":
            break
        if time.monotonic() > deadline:
            log.warning(
                "credential report not ready; continuing without it", extra={"attempt": state}
            )
            return None
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    content = iam.get_credential_report()["Content"]
    if isinstance(content, str):
        content = base64.b64decode(content)
    path = directory / "credential-report.csv"
    path.write_bytes(content)
    return path


def record_key_owners(inventory: Inventory, owners: dict[str, str]) -> None:
    """Attach each listed access key to its user in the inventory."""
    from warden.governance.model import Kind, Provider

    for key_id, user_arn in owners.items():
        identity = inventory.identity(
            user_arn, Kind.AWS_USER, Provider.AWS, user_arn.rsplit("/", 1)[-1], SOURCE
        )
        credential = identity.credential(key_id, "aws_access_key")
        credential.long_lived = key_id.startswith("AKIA")
