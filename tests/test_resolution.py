"""One resolution step (issue 22, item 2): an experiment's trials and :func:`create_method` fill every
hyperparameter default through :meth:`Method.resolve_hparams`, so a trial's recorded hyperparameters are
the ones its method trains with, including defaults that depend on other values (JRD's α by kernel)."""
from __future__ import annotations

import pytest

from harness.core.hparams import Choice
from harness.experiment import ExperimentConfig
from harness.plugins.method import METHODS, create_method

DATASET = "digits"  # no method sets per-dataset defaults for it, so the user's overrides are the only input


def trial_hparams(name: str, overrides: dict) -> dict:
    experiment = ExperimentConfig(methods=[name], dataset=DATASET, seeds=[0], hparams={name: overrides})
    assert experiment.recipe_for(name).method_hparams.get(name, {}) == {}
    return experiment.trials()[0].spec.hparams


def built_config(name: str, overrides: dict) -> dict:
    return create_method(name, num_classes=4, embedding_dim=64, feature_dim=64, **overrides).config


def override_cases(name: str) -> list[dict]:
    """No override, then every option of every categorical hyperparameter (those other defaults may depend on)."""
    cls = METHODS.get(name)
    return [{}, *({hp: option} for hp, p in cls.hparams.items() if isinstance(p.space, Choice)
                  for option in p.space.options if option != p.default)]


def test_a_polynomial_jrd_trial_records_the_papers_alpha_for_that_kernel():
    assert trial_hparams("jrd", {"kernel": "polynomial"})["alpha"] == 1e-3
    assert trial_hparams("jrd", {"kernel": "mgf", "alpha": 0.2})["alpha"] == 0.2
    assert trial_hparams("jrd", {})["alpha"] == 1.0


@pytest.mark.parametrize("name", METHODS.names())
def test_trials_and_create_method_resolve_every_hyperparameter_alike(name):
    assert METHODS.get(name).dataset_defaults(DATASET) == {}
    for overrides in override_cases(name):
        resolved = trial_hparams(name, overrides)
        assert set(resolved) == set(METHODS.get(name).hparams)
        assert resolved == built_config(name, overrides), overrides
