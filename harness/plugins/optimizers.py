"""Optimizers by name: a recipe's ``optimizer`` field names one of :data:`OPTIMIZERS`.

A factory takes the parameter groups the trainer builds (backbone, head, the method's own; each with
its learning rate and weight decay) and the recipe, and returns a ``torch.optim.Optimizer``. A new
optimizer is one function decorated with ``@register_optimizer("name")``, loaded with ``--plugins``
or through the ``harness.optimizers`` entry-point group; the name is checked against this registry
where recipes are resolved (:mod:`harness.experiment`), before any trial starts.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from harness.core.recipe import Recipe
from harness.core.registry import Registry

if TYPE_CHECKING:
    import torch

#: the registry's names are checked before any trial, without torch: each factory imports it when it builds
OptimizerFactory = Callable[[list[dict[str, Any]], Recipe], "torch.optim.Optimizer"]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer", entry_point_group="harness.optimizers")


def register_optimizer(name: str) -> Callable[[OptimizerFactory], OptimizerFactory]:
    """Decorator: ``@register_optimizer("sgd")`` registers a factory ``(param_groups, recipe) -> Optimizer``."""
    return OPTIMIZERS.register(name)


def create_optimizer(groups: list[dict[str, Any]], recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``groups``."""
    return OPTIMIZERS.get(recipe.optimizer)(groups, recipe)


@register_optimizer("adam")
def adam(groups: list[dict[str, Any]], recipe: Recipe) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(groups, eps=recipe.adam_eps)


@register_optimizer("adamw")
def adamw(groups: list[dict[str, Any]], recipe: Recipe) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(groups, eps=recipe.adam_eps)


@register_optimizer("radam")
def radam(groups: list[dict[str, Any]], recipe: Recipe) -> torch.optim.Optimizer:
    import torch

    return torch.optim.RAdam(groups, eps=recipe.adam_eps)
