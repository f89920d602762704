"""Actions that are risky in themselves: persistence by a non-human identity, and defence
evasion by anyone.

Neither needs a learning window. What the baseline changes is the severity: an action the
identity performs routinely (at least `ROUTINE_COUNT` times before, past its learning
window) is low, a failed attempt is medium, anything else is high.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from warden.behavior.detectors.base import Description, RunContext, SqlDetector, listing, moment
from warden.behavior.model import Hit, Severity

ROUTINE_COUNT = 3

# Actions that give an attacker a way back in, with their MITRE ATT&CK techniques.
PERSISTENCE_ACTIONS: dict[str, tuple[str, ...]] = {
    "iam:CreateUser": ("T1136.003",),
    "iam:CreateRole": ("T1136.003",),
    "iam:CreateAccessKey": ("T1098.001",),
    "iam:CreateLoginProfile": ("T1098.001",),
    "iam:UpdateLoginProfile": ("T1098.001",),
    "iam:CreateServiceSpecificCredential": ("T1098.001",),
    "iam:UploadSigningCertificate": ("T1098.001",),
    "iam:UploadSSHPublicKey": ("T1098.004",),
    "iam:AttachUserPolicy": ("T1098.003",),
    "iam:PutUserPolicy": ("T1098.003",),
    "iam:AttachGroupPolicy": ("T1098.003",),
    "iam:PutGroupPolicy": ("T1098.003",),
    "iam:AddUserToGroup": ("T1098.003",),
    "iam:AttachRolePolicy": ("T1098.003",),
    "iam:PutRolePolicy": ("T1098.003",),
    "iam:UpdateAssumeRolePolicy": ("T1098.003",),
    "iam:CreatePolicyVersion": ("T1098.003",),
    "iam:SetDefaultPolicyVersion": ("T1098.003",),
    "iam:CreateSAMLProvider": ("T1484.002",),
    "iam:UpdateSAMLProvider": ("T1484.002",),
    "iam:CreateOpenIDConnectProvider": ("T1484.002",),
    "sts:GetFederationToken": ("T1550.001",),
    "rolesanywhere:CreateTrustAnchor": ("T1098.001",),
    "rolesanywhere:CreateProfile": ("T1098.001",),
}

# Actions that blind the defenders: logging, detection and organisation controls.
EVASION_ACTIONS: dict[str, tuple[str, ...]] = {
    "cloudtrail:StopLogging": ("T1562.008",),
    "cloudtrail:DeleteTrail": ("T1562.008",),
    "cloudtrail:UpdateTrail": ("T1562.008",),
    "cloudtrail:PutEventSelectors": ("T1562.008",),
    "cloudtrail:DeleteEventDataStore": ("T1562.008",),
    "cloudtrail:StopEventDataStoreIngestion": ("T1562.008",),
    "ec2:DeleteFlowLogs": ("T1562.008",),
    "route53resolver:DeleteResolverQueryLogConfig": ("T1562.008",),
    "route53resolver:DisassociateResolverQueryLogConfig": ("T1562.008",),
    "config:StopConfigurationRecorder": ("T1562.008",),
    "config:DeleteConfigurationRecorder": ("T1562.008",),
    "config:DeleteDeliveryChannel": ("T1562.008",),
    "guardduty:DeleteDetector": ("T1562.001",),
    "guardduty:UpdateDetector": ("T1562.001",),
    "guardduty:DisassociateFromMasterAccount": ("T1562.001",),
    "guardduty:DisassociateFromAdministratorAccount": ("T1562.001",),
    "guardduty:DisassociateMembers": ("T1562.001",),
    "guardduty:DeleteMembers": ("T1562.001",),
    "guardduty:StopMonitoringMembers": ("T1562.001",),
    "guardduty:CreateIPSet": ("T1562.001",),
    "guardduty:UpdateIPSet": ("T1562.001",),
    "guardduty:DeletePublishingDestination": ("T1562.001",),
    "securityhub:DisableSecurityHub": ("T1562.001",),
    "securityhub:BatchDisableStandards": ("T1562.001",),
    "access-analyzer:DeleteAnalyzer": ("T1562.001",),
    "macie2:DisableMacie": ("T1562.001",),
    "inspector2:Disable": ("T1562.001",),
    "organizations:LeaveOrganization": ("T1562",),
}


class _ActionDetector(SqlDetector):
    actions: ClassVar[dict[str, tuple[str, ...]]]
    what: ClassVar[str]

    def query(self, run: RunContext) -> tuple[str, Sequence[Any]]:
        population = "TRUE" if self.humans else "NOT human"
        sql = f"""
            SELECT ev_key, event_id, event_time, identity, credential, human, in_batch,
                   action, failed, established, n_action, address, agent
            FROM behavior_scored
            WHERE action IN (SELECT unnest(?)) AND {population}
        """  # noqa: S608
        return sql, [sorted(self.actions)]

    def severity(self, row: dict[str, Any]) -> Severity:
        if row["established"] and (row["n_action"] or 0) >= ROUTINE_COUNT:
            return Severity.LOW
        if row["failed"]:
            return Severity.MEDIUM
        return Severity.HIGH

    def describe(self, hits: Sequence[Hit], run: RunContext) -> Description:
        actions = [hit.facts["action"] for hit in hits]
        failed = sum(1 for hit in hits if hit.facts["failed"])
        routine = [hit for hit in hits if hit.severity == Severity.LOW]
        evidence = [
            f"{self.what}: {listing(actions)} ({len(hits)} call{'s' if len(hits) != 1 else ''}, "
            f"{failed} failed)",
            f"from {listing([hit.facts['address'] for hit in hits])} with client "
            f"{listing([hit.facts['agent'] for hit in hits])}",
        ]
        if routine:
            evidence.append(
                f"{len(routine)} of them are routine for this identity (done at least "
                f"{ROUTINE_COUNT} times before, past its learning window)"
            )
        techniques = sorted({t for action in actions for t in self.actions.get(action, ())})
        baseline = {
            "actions": sorted(set(actions)),
            "earlier_calls": {hit.facts["action"]: int(hit.facts["n_action"] or 0) for hit in hits},
            "first_call": moment(hits[0].event_time),
        }
        return Description(evidence, baseline, techniques)


class Persistence(_ActionDetector):
    id: ClassVar[str] = "nhi-persistence"
    title: ClassVar[str] = "Persistence by a non-human identity"
    techniques: ClassVar[tuple[str, ...]] = ("T1098", "T1136.003")
    actions: ClassVar[dict[str, tuple[str, ...]]] = PERSISTENCE_ACTIONS
    what: ClassVar[str] = "created or changed credentials, users, roles or trust"


class DefenceEvasion(_ActionDetector):
    id: ClassVar[str] = "defence-evasion"
    title: ClassVar[str] = "Logging or threat detection disabled or changed"
    techniques: ClassVar[tuple[str, ...]] = ("T1562.008", "T1562.001")
    humans: ClassVar[bool] = True
    actions: ClassVar[dict[str, tuple[str, ...]]] = EVASION_ACTIONS
    what: ClassVar[str] = "changed logging or detection"
