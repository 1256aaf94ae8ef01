"""Every registered method: declarations are consistent, and its loss trains (decreases) on fixed data."""
from __future__ import annotations

import math

import pytest

from harness.plugins.method import METHODS, Method, create_method, register_method
from harness.core.registry import UnknownNameError

BASELINES = ["triplet", "contrastive", "ms", "softtriple", "amsoftmax"]


def test_baselines_are_registered_with_paper_defaults():
    for name in BASELINES + ["pixels"]:
        assert name in METHODS.names()
    ms = create_method("ms", num_classes=5, embedding_dim=16, feature_dim=32)
    assert ms.config == {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1}
    am = create_method("amsoftmax", num_classes=5, embedding_dim=16, feature_dim=32, margin=0.35)
    assert am.config == {"scale": 20.0, "margin": 0.35}
    assert METHODS.get("triplet").sampler == "m_per_class"
    assert METHODS.get("amsoftmax").sampler == "random"


def test_every_declared_default_lies_in_its_search_space():
    for name in METHODS.names():
        for pname, param in METHODS.get(name).hparams.items():
            if param.space is not None:
                assert param.space.contains(param.default), f"{name}.{pname}"


def test_unknown_method_and_hparam_list_the_valid_names():
    with pytest.raises(UnknownNameError, match="valid methods: .*amsoftmax.*triplet"):
        create_method("nope", num_classes=3, embedding_dim=4, feature_dim=4)
    with pytest.raises(ValueError, match="valid: alpha, base, beta, epsilon"):
        create_method("ms", num_classes=3, embedding_dim=4, feature_dim=4, gamma=1.0)


def test_register_method_rejects_non_methods_and_duplicates():
    with pytest.raises(TypeError):
        register_method("not_a_method")(object)

    @register_method("_test_dummy")
    class Dummy(Method):
        pass

    assert METHODS.get("_test_dummy") is Dummy
    with pytest.raises(ValueError, match="registered twice"):
        register_method("_test_dummy")(type("Other", (Method,), {}))


def test_proxy_methods_have_trainable_parameters_in_their_own_group():
    am = create_method("amsoftmax", num_classes=7, embedding_dim=16, feature_dim=32)
    st = create_method("softtriple", num_classes=7, embedding_dim=16, feature_dim=32)
    assert am.has_trainable_parameters and st.has_trainable_parameters
    assert not create_method("ms", num_classes=7, embedding_dim=16, feature_dim=32).has_trainable_parameters
    (group,) = am.param_groups(lr=0.01, weight_decay=0.0)
    assert group["lr"] == pytest.approx(0.01) and sum(p.numel() for p in group["params"]) == 7 * 16


@pytest.mark.parametrize("name", BASELINES)
def test_loss_decreases_when_training_on_fixed_data(name, loss_before_and_after_training):
    first, last = loss_before_and_after_training(name)
    assert math.isfinite(first) and first > 0
    assert last < 0.7 * first, f"{name}: loss {first:.4f} -> {last:.4f}"
