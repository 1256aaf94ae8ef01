"""How far a re-run trial's numbers drifted from its record, and what differs between the two runs' settings
(``python -m harness reproduce``). Reads records only."""
from __future__ import annotations

import json
import re
from typing import Any

from harness.core.evaluation import FAMILIES, evaluation_id, evaluation_text, metric_family
from harness.core.record import TrialRecord
from harness.core.metrics import metric_label, metric_sort_key
from harness.reporting.tables import hardware_label


def metric_drift(recorded: TrialRecord, reproduced: TrialRecord) -> list[dict[str, Any]]:
    """One row per metric both records hold: recorded and reproduced value and their difference
    (``drift`` = reproduced − recorded; 0.0 when the two are the same number)."""
    shared = sorted(set(recorded.metrics) & set(reproduced.metrics), key=metric_sort_key)
    return [{"trial_id": recorded.trial_id, "metric": m, "recorded": recorded.metrics[m],
             "reproduced": reproduced.metrics[m], "drift": reproduced.metrics[m] - recorded.metrics[m]} for m in shared]


def recorded_threads(record: TrialRecord) -> int:
    """The torch threads a record's trial ran with (older records name them only in the device text; 1 if
    neither says)."""
    hardware = record.environment.get("hardware") or {}
    if isinstance(hardware.get("threads"), int):
        return hardware["threads"]
    found = re.search(r"(\d+) threads", str(record.environment.get("device", "")))
    return int(found.group(1)) if found else 1


def evaluation_differences(recorded: TrialRecord, reproduced: TrialRecord) -> list[str]:
    """One line per metric family whose evaluation version differs between two records of a trial: the
    metrics it moves, both versions and their implementations in words. Listed first by
    :func:`environment_differences`: an evaluation change moves its metrics on the same embeddings, so
    it explains their drift before hardware or versions can."""
    differences = []
    shared = sorted(set(recorded.metrics) & set(reproduced.metrics), key=metric_sort_key)
    for family in FAMILIES:
        old, new = evaluation_id(recorded.evaluation, family), evaluation_id(reproduced.evaluation, family)
        if old != new:
            moved = ", ".join(metric_label(m) for m in shared if metric_family(m) == family) or "its metrics"
            differences.append(f"evaluation ({family}: {moved}) {old} → {new}, "
                               f"{evaluation_text(recorded.evaluation, family)!r} → "
                               f"{evaluation_text(reproduced.evaluation, family)!r}: these metrics are scored "
                               f"otherwise, so they drift even on the same embeddings")
    return differences


def environment_differences(recorded: TrialRecord, reproduced: TrialRecord) -> list[str]:
    """``["evaluation (clustering: NMI) … → …", "torch 2.4.0 → 2.5.1", "hardware: … → …", ...]``: what differs
    between two runs of a trial (the evaluation first, :func:`evaluation_differences`; then library versions,
    device, hardware, harness commit); empty when nothing does."""
    old, new = recorded.environment, reproduced.environment
    differences = evaluation_differences(recorded, reproduced)
    versions_old, versions_new = old.get("versions") or {}, new.get("versions") or {}
    for package in sorted(set(versions_old) | set(versions_new)):
        if versions_old.get(package) != versions_new.get(package):
            differences.append(f"{package} {versions_old.get(package, 'absent')} → {versions_new.get(package, 'absent')}")
    for name, label in (("device", lambda env: str(env.get("device", "unknown"))),
                        ("hardware", lambda env: hardware_label(env.get("hardware"))),
                        ("harness commit", lambda env: str(env.get("git_commit", "unknown")))):
        if label(old) != label(new):
            differences.append(f"{name}: {label(old)} → {label(new)}")
    if json.dumps((old.get("hardware") or {}).get("deterministic"), sort_keys=True) != json.dumps(
            (new.get("hardware") or {}).get("deterministic"), sort_keys=True) and old.get("hardware"):
        differences.append("deterministic settings differ")
    return differences
