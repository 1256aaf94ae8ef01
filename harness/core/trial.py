"""A trial to run: what it computes (its :class:`~harness.core.spec.TrialSpec`, hashed into its id) and
where (its :class:`~harness.core.placement.Placement`, not hashed), as one value that executors pass along.

As data (a record's sections, a Ray Tune trial's config) the two stay apart: ``{"spec": ..., "placement":
...}`` (:meth:`Trial.to_dict`, :meth:`Trial.from_dict`), so what the id hashes is what ``spec`` holds.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from harness.core.placement import Placement
from harness.core.spec import TrialSpec


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
        """``{"spec": <the spec's fields>, "placement": <the placement's fields>}``."""
        return {"spec": self.spec.to_dict(), "placement": self.placement.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Trial":
        """The trial of :meth:`to_dict`'s mapping; ``ValueError`` naming a missing section or unknown fields."""
        missing = [section for section in ("spec", "placement") if not isinstance(data.get(section), dict)]
        if missing:
            raise ValueError(f"no {' or '.join(missing)} section")
        return cls(spec=build(TrialSpec, data["spec"], "spec"), placement=build(Placement, data["placement"], "placement"))


T = TypeVar("T", TrialSpec, Placement)


def build(kind: type[T], values: dict[str, Any], section: str) -> T:
    """A spec or placement from a section's fields; ``ValueError`` naming the fields ``kind`` does not have
    (fields it has and the section lacks take their defaults)."""
    unknown = set(values) - {f.name for f in fields(kind)}
    if unknown:
        raise ValueError(f"unknown {section} field(s) {', '.join(sorted(unknown))}")
    return kind(**values)
