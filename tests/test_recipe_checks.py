"""Every check of a recipe's values is in one place (:mod:`harness.core.recipe`), applied by the one resolution
step before any trial: a recipe with a field of the wrong type or out of range is never built, and a method
whose sampler is not one, or whose batches the training split cannot fill, is refused before its trial starts
(the engine draws batches as the recipe says and checks nothing again)."""
from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.core.recipe import FIELD_RULES, RECIPES, Recipe
from harness.engine.train import build_train_loader, seed_everything
from harness.experiment import ExperimentConfig
from harness.plugins.method import METHODS, get_method_class


def bad_value(name: str):
    """A value ``name`` refuses: out of range for a number, not an option for a choice, else the wrong type."""
    rule = FIELD_RULES[name]
    if name == "lr_milestones":
        return (0,)
    if rule.valid is not None and hasattr(rule.valid, "options"):
        return "bogus"
    if rule.valid is not None:
        return -1
    return "yes" if rule.kinds[0] is not str else 3


def test_every_field_but_the_name_has_a_rule_and_a_bad_value_never_builds_a_recipe():
    assert set(FIELD_RULES) == {f.name for f in fields(Recipe)} - {"name"}
    for name in FIELD_RULES:
        with pytest.raises(ValueError, match=f"recipe 'r': {name}"):
            Recipe(name="r", **{name: bad_value(name)})
    with pytest.raises(ValueError, match="lr_milestones must be increasing"):
        Recipe(name="r", lr_milestones=(20, 10))
    assert Recipe(name="r", epochs=0).epochs == 0  # a method that does not train
    for recipe in [RECIPES.get(n) for n in RECIPES.names()] + [get_method_class(m).paper_recipe for m in METHODS.names()
                                                                if get_method_class(m).paper_recipe is not None]:
        assert Recipe(**recipe.to_dict()) == recipe  # every shipped recipe satisfies its rules


def test_a_user_sets_at_least_one_epoch_and_only_known_fields():
    Recipe.check_overrides({"epochs": 1, "lr_head": 0.5, "sampler": "random"})
    with pytest.raises(ValueError, match="recipe field epochs: must be >= 1, got 0"):
        Recipe.check_overrides({"epochs": 0})
    with pytest.raises(ValueError, match="unknown recipe field"):
        Recipe.check_overrides({"epoch": 2})


def test_the_sampler_and_the_classes_a_batch_needs_are_checked_once_before_any_trial(monkeypatch, tmp_path, capsys):
    recipe = Recipe(name="r", batch_size=64, samples_per_class=16)
    assert recipe.sampler_for("m_per_class") == "m_per_class" and recipe.sampler_for("random") == "random"
    assert Recipe(name="r", sampler="random").sampler_for("m_per_class") == "random"
    recipe.check_batches("ms", "m_per_class", 4)  # four classes of 16 fill a batch of 64
    with pytest.raises(ValueError, match="ms: m-per-class batches of 64 need 4 classes, the training split has 3"):
        recipe.check_batches("ms", "m_per_class", 3)
    recipe.check_batches("triplet", "random", 1)  # plain shuffling needs no classes per batch

    ms = get_method_class("ms")
    monkeypatch.setattr(ms, "sampler", "balanced")  # a method declaring a sampler that is not one
    with pytest.raises(ValueError, match="unknown sampler 'balanced'; valid: random, m_per_class"):
        ExperimentConfig(methods=["ms"], dataset="digits").trials()
    results = tmp_path / "results"
    assert main(["run", "--methods", "ms", "--dataset", "digits", "--results-dir", str(results)]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown sampler 'balanced'; valid: random, m_per_class"
    assert not results.exists()


def test_the_engine_draws_the_batches_the_recipe_says():
    labels = np.repeat(np.arange(4), 8)
    dataset = torch.utils.data.TensorDataset(torch.arange(len(labels)))
    recipe = Recipe(name="r", batch_size=16, samples_per_class=4)
    loader = build_train_loader(dataset, labels, recipe, "m_per_class", seed_everything(0))
    (batch,) = next(iter(loader))
    assert len(batch) == 16 and sorted(np.bincount(labels[batch.numpy()], minlength=4)) == [4, 4, 4, 4]
    shuffled = build_train_loader(dataset, labels, recipe.override(sampler="random"), "m_per_class", seed_everything(0))
    assert len(next(iter(shuffled))[0]) == 16 and type(shuffled.sampler).__name__ == "RandomSampler"
