"""Owner resolution: who is responsible for each identity, and which source named them.

Sources, strongest first: the ownership map file (glob on identity id or name), tags and
labels with the configured keys, Kubernetes annotations with the same keys, the Warden
registry's owner field, and the creator seen in CloudTrail. An optional roster of active
people and teams marks owners who have left.
"""

from __future__ import annotations

import fnmatch
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from warden.governance import jsonstream
from warden.governance.model import Identity

DEFAULT_OWNER_KEYS = ("owner", "team", "owner-email", "contact")
# Values a configuration file may give where text is expected. YAML aliases can make a
# list or mapping refer to itself many times over, so str() of one is never taken.
SCALAR_TYPES = (str, int, float, date)


@dataclass(frozen=True)
class OwnershipRule:
    pattern: str
    owner: str


def load_ownership_map(path: Path) -> list[OwnershipRule]:
    """Read rules from YAML or JSON: a mapping of glob to owner, or a list of {pattern, owner}.

    Raises ValueError naming the file and the bad rule.
    """
    document = _load_structured(path)
    rules: list[OwnershipRule] = []
    if isinstance(document, dict):
        items = [{"pattern": key, "owner": value} for key, value in document.items()]
    elif isinstance(document, list):
        items = document
    else:
        raise ValueError(f"{path}: expected a mapping of glob to owner or a list of rules")
    for index, item in enumerate(items):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("pattern"), SCALAR_TYPES)
            or not isinstance(item.get("owner"), SCALAR_TYPES)
            or not item["pattern"]
            or not item["owner"]
        ):
            raise ValueError(
                f"{path}: rule {index + 1} needs a pattern and an owner, both text, "
                f"got {reprlib.repr(item)}"
            )
        rules.append(OwnershipRule(str(item["pattern"]), str(item["owner"])))
    return rules


def load_roster(path: Path) -> set[str]:
    """Read active people and teams: one name or e-mail a line, or a YAML/JSON list.

    Names compare case-insensitively.
    """
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        document = _load_structured(path)
        if isinstance(document, dict):
            document = document.get("active") or document.get("people") or list(document)
        if not isinstance(document, list):
            raise ValueError(f"{path}: expected a list of active people and teams")
        names = []
        for index, item in enumerate(document, start=1):
            name = item.get("name") or item.get("email") if isinstance(item, dict) else item
            if not isinstance(name, SCALAR_TYPES):
                raise ValueError(
                    f"{path}: entry {index} is not a name or e-mail, got {reprlib.repr(item)}"
                )
            names.append(str(name))
    else:
        names = [line.split(",")[0] for line in _read_text(path).splitlines()]
    return {name.strip().lower() for name in names if name.strip() and not name.startswith("#")}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read file: {error}") from error


def _load_structured(path: Path) -> object:
    text = _read_text(path)
    try:
        if path.suffix.lower() == ".json":
            return jsonstream.loads(text)
        return load_yaml(text)
    except ValueError as error:
        raise ValueError(f"{path}: invalid {path.suffix.lstrip('.') or 'YAML'}: {error}") from error


def load_yaml(text: str) -> object:
    """Parse YAML with safe_load; raise ValueError when it is not valid YAML."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from error
    except RecursionError:
        raise ValueError("lists or mappings nested too deeply") from None


def resolve_owner(
    identity: Identity,
    rules: Sequence[OwnershipRule],
    owner_keys: Sequence[str],
    roster: set[str] | None,
) -> None:
    """Set the identity's owner and owner_source, and mark an owner missing from the roster."""
    found = _from_map(identity, rules) or _from_tags(identity, owner_keys)
    if found:
        identity.owner, identity.owner_source = found
    elif identity.owner is None and identity.created_by:
        event = identity.facts.get("created_by_event", "creation")
        log_name = "Kubernetes audit log" if identity.provider == "kubernetes" else "CloudTrail"
        identity.owner = identity.created_by
        identity.owner_source = f"creator in {log_name} ({event})"
    if roster is not None and identity.owner:
        identity.facts["owner_active"] = _on_roster(identity.owner, roster)


def _from_map(identity: Identity, rules: Sequence[OwnershipRule]) -> tuple[str, str] | None:
    for rule in rules:
        if fnmatch.fnmatchcase(identity.id, rule.pattern) or fnmatch.fnmatchcase(
            identity.name, rule.pattern
        ):
            return rule.owner, f"ownership map ({rule.pattern})"
    return None


def _from_tags(identity: Identity, owner_keys: Sequence[str]) -> tuple[str, str] | None:
    lowered = {key.lower(): (key, value) for key, value in identity.tags.items()}
    for wanted in owner_keys:
        for prefix, label in (("", "tag"), ("label:", "label"), ("annotation:", "annotation")):
            hit = lowered.get(prefix + wanted.lower())
            if hit and hit[1].strip():
                return hit[1].strip(), f"{label} {wanted}"
    return None


def _on_roster(owner: str, roster: set[str]) -> bool:
    lowered = owner.strip().lower()
    if lowered in roster:
        return True
    # An ARN or e-mail owner matches on its last component (user name or local part).
    tail = lowered.rsplit("/", 1)[-1]
    return tail in roster or tail.split("@", 1)[0] in roster
