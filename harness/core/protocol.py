"""An experiment is one protocol: what its trials must share to be compared in one leaderboard.

A trial's protocol is how it trained, besides its method: its resolved recipe (every field but the
method's own, :data:`METHOD_OWN_FIELDS`), backbone, embedding size, pretrained weights and validation
fraction. On one dataset of one experiment, every trial that trains shares it, whatever its recipe is
called: trials of one method (their rows may differ only in hyperparameters) and trials of different
methods alike (``--recipe paper``'s recipes included: a comparison is one recipe). A method that does not
train (``pixels``) is compared with no other method. The rule holds within one command
(:func:`recipe_differences`) and across every run into one experiment (:func:`protocol_differences`,
against the experiment's records and the claims of the runs under way, :mod:`harness.core.store`).

Trials whose methods train differently may share an experiment only where the user says the rows are not
comparable (``--incomparable-rows``); every board of such an experiment says so in words
(:func:`board_differences`).
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from harness.core.recipe import FIELD_RULES
from harness.core.spec import TrialSpec, canonical

#: recipe fields that are the method's own, not how it trained: the recipe's name and the hyperparameters it
#: sets per method (those are the method's, in the trial's ``hparams``, and may differ between rows)
METHOD_OWN_FIELDS = ("name", "method_hparams")
#: every protocol field's value where a record's recipe predates the field (the field's default)
_RECIPE_DEFAULTS = {name: rule.default for name, rule in FIELD_RULES.items() if name not in METHOD_OWN_FIELDS}


def protocol(spec: TrialSpec) -> dict[str, Any]:
    """The protocol fields of a trial, numbers normalised (``2`` and ``2.0`` are one value)."""
    recipe = {k: v for k, v in spec.recipe.items() if k not in METHOD_OWN_FIELDS}
    return canonical({**_RECIPE_DEFAULTS, **recipe, "backbone": spec.backbone, "embedding_dim": spec.embedding_dim,
                      "pretrained_sha256": spec.pretrained_sha256, "val_fraction": spec.val_fraction})


def trains(spec: TrialSpec) -> bool:
    """Whether a trial trains (a method that does not has its recipe's epochs set to 0)."""
    return float(spec.recipe.get("epochs", 1)) > 0


def comparable(new: TrialSpec, old: TrialSpec) -> bool:
    """Whether two trials must share a protocol: the same dataset and either the same method, or two methods
    that both train."""
    if new.dataset != old.dataset:
        return False
    return new.method == old.method or (trains(new) and trains(old))


def protocol_differences(new: TrialSpec, old: TrialSpec) -> list[str]:
    """``["epochs=2 (not 12)", ...]``: the protocol fields in which ``new`` differs from ``old`` (none where the
    two need not share one, :func:`comparable`); an embedding size is compared only where both have a head."""
    if not comparable(new, old):
        return []
    mine, theirs = _compared(new, old)
    return [f"{k}={_text(mine.get(k))} (not {_text(theirs.get(k))})" for k in sorted(set(mine) | set(theirs))
            if mine.get(k) != theirs.get(k)]


def distinct(specs: Iterable[TrialSpec]) -> list[TrialSpec]:
    """One of ``specs`` per (method, dataset, whether it trains, protocol), in order: what a protocol check needs
    to compare (an experiment of thousands of trials holds a handful)."""
    seen: dict[str, TrialSpec] = {}
    for spec in specs:
        key = json.dumps([spec.method, spec.dataset, trains(spec), protocol(spec)], sort_keys=True)
        seen.setdefault(key, spec)
    return list(seen.values())


def differing_fields(specs: Iterable[TrialSpec]) -> list[str]:
    """The protocol fields in which some two of ``specs`` that must share a protocol differ, sorted."""
    specs = distinct(specs)
    fields: set[str] = set()
    for i, new in enumerate(specs):
        for old in specs[:i]:
            if comparable(new, old):
                mine, theirs = _compared(new, old)
                fields.update(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    return sorted(fields)


def board_differences(specs: Iterable[TrialSpec]) -> str:
    """The words every board, table and plot of trials ``specs`` carries when its methods trained differently
    (an experiment run with ``--incomparable-rows``): ``""`` when they did not."""
    fields = differing_fields(specs)
    if not fields:
        return ""
    return f"rows NOT comparable: their methods trained differently ({', '.join(fields)})"


def recipe_differences(recipes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The recipe fields, other than the methods' own, in which the recipes of ``recipes`` (method → recipe
    fields, methods that train only) differ, sorted: none when they train alike."""
    values = [{k: canonical(v) for k, v in {**_RECIPE_DEFAULTS, **r}.items() if k not in METHOD_OWN_FIELDS}
              for r in recipes.values()]
    names = {k for v in values for k in v}
    return sorted(k for k in names if len({repr(v.get(k)) for v in values}) > 1)


def check_one_recipe(recipes: Mapping[str, Mapping[str, Any]], allow_incomparable: bool) -> None:
    """Under ``--recipe paper``: refuse (``ValueError``, one line naming the fields) methods that would train
    under recipes differing in anything but their own fields, unless ``allow_incomparable``
    (``--incomparable-rows``: the run goes ahead and its boards say the rows are not comparable)."""
    differ = recipe_differences(recipes)
    if differ and not allow_incomparable:
        names = ", ".join(f"{m} ({r.get('name')})" for m, r in recipes.items())
        raise ValueError(f"--recipe paper would train {names} under recipes that differ in {', '.join(differ)}: "
                         f"their rows would not be comparable; give them one --recipe, or --incomparable-rows to run "
                         f"them anyway with every board saying so")


def _compared(new: TrialSpec, old: TrialSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two trials' protocols, without the embedding size where the methods differ and one has no head."""
    mine, theirs = protocol(new), protocol(old)
    if new.method != old.method and 0 in (new.embedding_dim, old.embedding_dim):
        mine.pop("embedding_dim"), theirs.pop("embedding_dim")
    return mine, theirs


def _text(value: Any) -> str:
    """A canonical value as typed: ``'2.0'`` → ``2``, ``'0.001'`` → ``0.001``."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return f"{number:g}"
    return str(value)
