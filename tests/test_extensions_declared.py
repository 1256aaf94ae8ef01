"""Every registered method's baseline declaration is consistent (issue 31 item 1): an extension names a
registered baseline, its own hyperparameters exist and are not the baseline's, and every other one is the
baseline's, declared alike; ``list`` shows it."""
from __future__ import annotations

import pytest

from harness.cli import main
from harness.core.hparams import Param
from harness.plugins.method import METHODS, Method, extension_problems


@pytest.mark.parametrize("name", METHODS.names())
def test_every_registered_methods_baseline_declaration_is_consistent(name):
    assert extension_problems(METHODS.get(name)) == []


def test_the_issues_extensions_declare_their_baselines_and_own_terms():
    baselines = {m: METHODS.get(m).baseline for m in METHODS.names() if METHODS.get(m).baseline}
    assert baselines == {**dict.fromkeys(("jrd", "mrd", "jmmd", "jrd_c", "jrd_pool", "jrd_intra"), "amsoftmax"),
                         "metrix_contrastive": "contrastive", "metrix_ms": "ms",
                         "metrix_proxyanchor": "proxyanchor", "nir": "proxyanchor"}
    jrd = METHODS.get("jrd")
    assert set(jrd.own_hparams) == {"alpha", "sigma", "kernel", "mul", "bandwidths", "degree"}
    assert jrd.base_hparams() == ("scale", "margin") and jrd.main_hparam() == "alpha" and jrd.baseline_at_zero
    assert METHODS.get("jrd_intra").base_hparams() == ("scale", "margin")
    assert METHODS.get("metrix_ms").main_hparam() == "weight"


def test_an_inconsistent_declaration_is_named():
    base = METHODS.get("amsoftmax")

    class Bad(Method):
        name = "bad"
        hparams = {"alpha": Param(1.0), "scale": Param(30.0)}  # scale declared unlike amsoftmax's; margin missing
        baseline = "amsoftmax"
        own_hparams = ("alpha", "gamma")

    problems = "\n".join(extension_problems(Bad))
    assert "'gamma' is not declared" in problems and "'scale' is amsoftmax's but declared differently" in problems
    assert "amsoftmax's 'margin' is missing" in problems
    Bad.baseline, Bad.own_hparams = "nothing", ("alpha",)
    assert extension_problems(Bad) == ["bad: baseline 'nothing' is not another registered method"]
    assert base.own_hparams == () and extension_problems(base) == []


def test_list_shows_what_an_extension_adds(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "extends amsoftmax: its own alpha, sigma, kernel, mul, bandwidths, degree; amsoftmax's scale, margin" in out
    assert "extends proxyanchor: its own w_align" in out
