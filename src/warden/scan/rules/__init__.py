"""The rule catalogue: every credential format Warden recognises, one module per family.

`RULES` is the ordered catalogue; `rule(id)` returns one rule. Adding a format means adding a
`Rule` to the module of its family, with examples and negative examples, which the test
suite runs.
"""

from __future__ import annotations

from warden.scan.rule import Rule
from warden.scan.rules import (
    ai,
    cloud,
    connection,
    devtools,
    generic,
    keys,
    messaging,
    payment,
    registries,
    services,
    tokens,
    vcs,
)

RULES: tuple[Rule, ...] = (
    *cloud.RULES,
    *vcs.RULES,
    *messaging.RULES,
    *payment.RULES,
    *ai.RULES,
    *registries.RULES,
    *services.RULES,
    *devtools.RULES,
    *tokens.RULES,
    *keys.RULES,
    *connection.RULES,
    *generic.RULES,
)

_BY_ID = {rule.id: rule for rule in RULES}
if len(_BY_ID) != len(RULES):
    raise RuntimeError("duplicate rule ids in the scan rule catalogue")


def rule(rule_id: str) -> Rule:
    """Return the rule with this id; raise KeyError naming the id when there is none."""
    try:
        return _BY_ID[rule_id]
    except KeyError:
        raise KeyError(f"unknown scan rule {rule_id!r}") from None
