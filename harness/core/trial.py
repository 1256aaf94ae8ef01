"""A trial to run: what it computes (its :class:`~harness.core.spec.TrialSpec`, hashed into its id) and
where (its :class:`~harness.core.placement.Placement`, not hashed), as one value that executors pass along.

A record stores the pair as one flat ``config`` mapping (every spec field beside every placement field),
the layout records have always had: :meth:`Trial.to_dict` writes it and :meth:`Trial.from_dict` splits
it again, so every record on disk keeps its id and its bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from harness.core.placement import Placement
from harness.core.spec import TrialSpec

_SPEC_FIELDS = tuple(f.name for f in fields(TrialSpec))
_PLACEMENT_FIELDS = tuple(f.name for f in fields(Placement))


@dataclass(frozen=True)
class Trial:
    """One trial: its specification and its placement."""

    spec: TrialSpec
    placement: Placement

    @property
    def trial_id(self) -> str:
        """The spec's id: the placement never changes it."""
        return self.spec.trial_id

    def with_spec(self, **changes: Any) -> "Trial":
        """This trial with some spec fields changed (a new id)."""
        return replace(self, spec=replace(self.spec, **changes))

    def with_placement(self, **changes: Any) -> "Trial":
        """This trial placed otherwise (the same id)."""
        return replace(self, placement=replace(self.placement, **changes))

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping a record stores as its ``config``."""
        return {**self.spec.to_dict(), **self.placement.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Trial":
        """The trial of a record's flat ``config``; ``ValueError`` naming unknown fields. Fields a record
        predates take their defaults (a record written before metrics were a registry holds
        ``utilization``, read as that optional metric)."""
        data = dict(data)
        if "utilization" in data:
            data["extra_metrics"] = ["utilization"] if data.pop("utilization") else []
        unknown = set(data) - set(_SPEC_FIELDS) - set(_PLACEMENT_FIELDS)
        if unknown:
            raise ValueError(f"unknown trial config field(s) {', '.join(sorted(unknown))}")
        return cls(spec=TrialSpec(**{k: v for k, v in data.items() if k in _SPEC_FIELDS}),
                   placement=Placement(**{k: v for k, v in data.items() if k in _PLACEMENT_FIELDS}))
