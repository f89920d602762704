"""The detectors, registered by stable id, in the order they run.

Adding a detector is one new class (a `Detector`) and one line here. The new-action and
learned detectors run last because they skip events that a more specific detector already
reported. Such an event gets one alert that names what it is, not a second one that only
notes that it is new.
"""

from __future__ import annotations

from warden.behavior.detectors.actions import DefenceEvasion, Persistence
from warden.behavior.detectors.base import Description, Detector, RunContext
from warden.behavior.detectors.bursts import BulkSecretAccess, EnumerationBurst
from warden.behavior.detectors.learned import LearnedAnomaly
from warden.behavior.detectors.novelty import DormantWakeUp, HumanUse, KubernetesFirstUse, NewAction
from warden.behavior.detectors.off_workload import OffWorkload

DETECTORS: dict[str, Detector] = {
    detector.id: detector
    for detector in (
        OffWorkload(),
        Persistence(),
        DefenceEvasion(),
        HumanUse(),
        KubernetesFirstUse(),
        BulkSecretAccess(),
        EnumerationBurst(),
        DormantWakeUp(),
        NewAction(),
        LearnedAnomaly(),
    )
}

__all__ = ["DETECTORS", "Description", "Detector", "RunContext"]
