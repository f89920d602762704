"""GitHub: REST API exports of deploy keys and app installations.

Accepted files: the array returned by `GET /repos/{owner}/{repo}/keys` (the repository is
read from each key's `url`), an object `{"repository": "owner/name", "deploy_keys": [...]}`,
and the object returned by `GET /orgs/{org}/installations` (`{"installations": [...]}`) or
its bare array. A directory is read file by file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from warden.governance import jsonstream
from warden.governance.iam.authorization import parse_time
from warden.governance.model import Inventory, Kind, Provider

SOURCE = "github"
_KEY_URL = re.compile(r"/repos/(?P<repository>[^/]+/[^/]+)/keys/(?P<id>\d+)")
# Installation permissions that let an app change code, settings or members.
WRITE_LEVELS = ("write", "admin")
SENSITIVE_PERMISSIONS = (
    "administration",
    "contents",
    "members",
    "organization_administration",
    "secrets",
    "workflows",
    "actions",
    "organization_secrets",
)


def add_export(inventory: Inventory, path: Path) -> None:
    files = sorted(p for p in path.rglob("*.json")) if path.is_dir() else [path]
    for file in files:
        if file.is_dir():
            continue
        if file != path and not file.is_file():
            # Reading a pipe or a device found in a directory would never end.
            inventory.warn(
                SOURCE, str(file), "not a regular file (a pipe, device or socket); skipped"
            )
            continue
        _add_file(inventory, file)


def _add_file(inventory: Inventory, path: Path) -> None:
    text_path = str(path)
    try:
        document = jsonstream.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        inventory.warn(SOURCE, text_path, f"cannot read file: {error}")
        return
    except json.JSONDecodeError as error:
        inventory.warn(SOURCE, text_path, f"invalid JSON: {error.msg}", line=error.lineno)
        return
    repository = None
    if isinstance(document, dict) and "deploy_keys" in document:
        repository = document.get("repository")
        document = document["deploy_keys"]
    if isinstance(document, dict) and "installations" in document:
        document = document["installations"]
    if not isinstance(document, list):
        inventory.warn(SOURCE, text_path, "expected deploy keys or app installations; file skipped")
        return
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            continue
        try:
            _add_item(inventory, item, repository, text_path, index)
        except (AttributeError, TypeError, ValueError) as error:
            inventory.warn(
                SOURCE,
                text_path,
                f"item {index} has an unexpected structure ({error}); it is skipped",
            )


def _add_item(
    inventory: Inventory, item: dict[str, Any], repository: str | None, path: str, index: int
) -> None:
    if "app_slug" in item or "app_id" in item:
        _add_installation(inventory, item)
    elif "key" in item or "read_only" in item:
        _add_deploy_key(inventory, item, repository, path, index)
    else:
        inventory.warn(
            SOURCE, path, f"item {index} is neither a deploy key nor an app installation; skipped"
        )


def _add_deploy_key(
    inventory: Inventory, item: dict[str, Any], repository: str | None, path: str, index: int
) -> None:
    match = _KEY_URL.search(str(item.get("url", "")))
    repository = repository or (match.group("repository") if match else None)
    if repository is None:
        inventory.warn(SOURCE, path, f"deploy key {index} has no repository (no url); skipped")
        return
    key_id = str(item.get("id", index))
    identity_id = f"github:{repository}:deploy-key:{key_id}"
    identity = inventory.identity(
        identity_id,
        Kind.GITHUB_DEPLOY_KEY,
        Provider.GITHUB,
        str(item.get("title") or key_id),
        SOURCE,
    )
    identity.account = repository
    identity.created_at = parse_time(item.get("created_at"))
    identity.last_used_at = parse_time(item.get("last_used")) or identity.last_used_at
    identity.facts["read_only"] = bool(item.get("read_only", True))
    identity.facts["verified"] = item.get("verified")
    if item.get("added_by"):
        identity.created_by = str(item["added_by"])
    credential = identity.credential(f"deploy-key:{repository}:{key_id}", "ssh_deploy_key")
    credential.long_lived = True
    credential.created_at = identity.created_at
    credential.last_used_at = identity.last_used_at


def _add_installation(inventory: Inventory, item: dict[str, Any]) -> None:
    slug = str(item.get("app_slug") or item.get("app_id"))
    account = (item.get("account") or {}).get("login", "")
    permissions = item.get("permissions") or {}
    # Read before the identity is added, so that a malformed item adds nothing.
    write_permissions = sorted(
        name
        for name, level in permissions.items()
        if level in WRITE_LEVELS and name in SENSITIVE_PERMISSIONS
    )
    identity_id = f"github:app:{account}:{slug}"
    identity = inventory.identity(identity_id, Kind.GITHUB_APP, Provider.GITHUB, slug, SOURCE)
    identity.account = account
    identity.created_at = parse_time(item.get("created_at"))
    identity.enabled = item.get("suspended_at") is None
    identity.facts["permissions"] = permissions
    identity.facts["repository_selection"] = item.get("repository_selection")
    identity.facts["write_permissions"] = write_permissions
