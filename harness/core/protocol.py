"""An experiment is one protocol: what its trials must share to be compared in one leaderboard.

A trial's protocol is its resolved recipe (every field), backbone, embedding size, pretrained weights and
validation fraction. Trials of one method in one experiment share all of it (their rows may differ only
in hyperparameters); trials of different methods share it where both train under a recipe of the same
name (a method that does not train, or another recipe by name, e.g. ``--recipe paper``, is not compared).
"""
from __future__ import annotations

from typing import Any

from harness.core.spec import TrialSpec, canonical


def protocol(spec: TrialSpec) -> dict[str, Any]:
    """The protocol fields of a trial, numbers normalised (``2`` and ``2.0`` are one value)."""
    return canonical({**{k: v for k, v in spec.recipe.items() if k != "name"}, "backbone": spec.backbone,
                      "embedding_dim": spec.embedding_dim, "pretrained_sha256": spec.pretrained_sha256,
                      "val_fraction": spec.val_fraction})


def comparable(new: TrialSpec, old: TrialSpec) -> bool:
    """Whether two trials must share a protocol: the same dataset and either the same method, or two methods
    that train under recipes of the same name."""
    if new.dataset != old.dataset:
        return False
    if new.method == old.method:
        return True
    return new.recipe["name"] == old.recipe["name"] and new.recipe["epochs"] > 0 and old.recipe["epochs"] > 0


def protocol_differences(new: TrialSpec, old: TrialSpec) -> list[str]:
    """``["epochs=2 (not 12)", ...]``: the protocol fields in which ``new`` differs from ``old`` (none where the
    two need not share one, :func:`comparable`); an embedding size is compared only where both have a head."""
    if not comparable(new, old):
        return []
    mine, theirs = protocol(new), protocol(old)
    if new.method != old.method and 0 in (new.embedding_dim, old.embedding_dim):
        mine.pop("embedding_dim"), theirs.pop("embedding_dim")
    return [f"{k}={_text(mine.get(k))} (not {_text(theirs.get(k))})" for k in sorted(set(mine) | set(theirs))
            if mine.get(k) != theirs.get(k)]


def _text(value: Any) -> str:
    """A canonical value as typed: ``'2.0'`` → ``2``, ``'0.001'`` → ``0.001``."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return f"{number:g}"
    return str(value)
