"""Issue 31 items 2, 3 and 6: a benchmark's protocol for methods that extend a baseline (nested: the baseline
first, the extension at its chosen values over its own hyperparameters only; joint: both together), the
re-measurement of each search's top candidates on more validation seeds, and each extension's sensitivity
to its added term; through the real CLI on digits and on the manifest alone."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from harness.cli import main
from harness.scheduling.benchmark import BenchmarkManifest, declared_spaces, sensitivity_values, with_baselines

# jrd alone is named: its baseline amsoftmax is added. Two search trials each, the top 2 re-measured on 2 seeds,
# jrd's α at 0 and 2 values of its space on the same seeds, 2 final seeds, one epoch.
ARGS = ["benchmark", "--methods", "jrd", "--dataset", "digits", "--val-fraction", "0.4", "--name", "nest",
        "--trials-per-method", "2", "--final-seeds", "2", "--epochs", "1", "--recipe-set", "batch_size=48",
        "--space", "jrd.alpha", "--space", "jrd.sigma", "--remeasure-top", "2", "--remeasure-seeds", "2",
        "--sensitivity-points", "2", "--executor", "local", "--no-progress", "--cpus-per-trial", "1"]


def records(root: Path, pattern: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob(pattern))]


@pytest.fixture(scope="module")
def nested(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("nested")
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main([*ARGS, "--results-dir", str(root)]) == 0
    return root, err.getvalue()


def manifest(**changes) -> BenchmarkManifest:
    fields = dict(name="m", methods=["jrd", "amsoftmax"], dataset="digits", trials_per_method=2, final_seeds=2,
                  spaces={"jrd": {"alpha": "loguniform(0.001,10.0)"}, "amsoftmax": {"margin": "uniform(0.0,0.6)"}})
    return BenchmarkManifest(**{**fields, **changes})


def test_an_extension_without_its_baseline_is_refused_in_a_manifest_and_added_by_the_command():
    with pytest.raises(ValueError, match=r"extensions without their baselines \(jrd extends amsoftmax\)"):
        manifest(methods=["jrd"])
    assert with_baselines(["jrd", "ms", "nir"]) == (
        ["jrd", "ms", "nir", "amsoftmax", "proxyanchor"],
        ["benchmark: jrd extends amsoftmax; amsoftmax is added to the methods",
         "benchmark: nir extends proxyanchor; proxyanchor is added to the methods"])


def test_nested_searches_only_the_extensions_own_hyperparameters_and_joint_both():
    assert set(declared_spaces(["jrd"], {}, "nested")["jrd"]) == {"alpha", "sigma", "kernel", "mul", "degree"}
    assert set(declared_spaces(["jrd"], {}, "joint")["jrd"]) == {"alpha", "sigma", "kernel", "mul", "degree",
                                                                 "scale", "margin"}
    with pytest.raises(ValueError, match="jrd: margin is amsoftmax's, which the nested protocol inherits"):
        manifest(spaces={"jrd": {"margin": "uniform(0.0,0.6)"}, "amsoftmax": {}})
    with pytest.raises(ValueError, match="jrd: scale is amsoftmax's"):
        manifest(hparams={"jrd": {"scale": 30.0}})
    joint = manifest(protocol="joint", spaces={"jrd": {"margin": "uniform(0.0,0.6)"}, "amsoftmax": {}})
    assert joint.stages() == [["jrd", "amsoftmax"]]
    assert manifest().stages() == [["amsoftmax"], ["jrd"]]
    assert manifest(methods=["ms", "jrd", "amsoftmax"]).stages() == [["ms", "amsoftmax"], ["jrd"]]


def test_the_sensitivity_axis_is_the_main_own_hyperparameter_with_zero_for_the_baseline():
    assert sensitivity_values("jrd", {"alpha": "loguniform(0.001,10.0)"}, 5) == pytest.approx(
        [0.0, 1e-3, 1e-2, 0.1, 1.0, 10.0])
    assert sensitivity_values("metrix_ms", {}, 3) == [0.0, 1.0, 2.0]  # weight: uniform(0, 2); 0 is ms
    assert 0.0 not in sensitivity_values("nir", {}, 3)  # no w_align makes NIR Proxy-Anchor
    assert sensitivity_values("jrd", {}, 0) == []


def test_bad_protocol_input_exits_2_before_any_folder(tmp_path, capsys):
    assert main([*ARGS, "--space", "jrd.margin", "--results-dir", str(tmp_path)]) == 2
    assert "margin is amsoftmax's" in capsys.readouterr().err
    assert main([*ARGS, "--remeasure-seeds", "0", "--results-dir", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())


def test_under_nested_every_jrd_trial_carries_amsoftmaxs_chosen_margin_and_scale(nested):
    root, err = nested
    assert "benchmark: jrd extends amsoftmax; amsoftmax is added to the methods" in err
    chosen = json.loads((root / "benchmarks/nest/methods/amsoftmax/chosen.json").read_text())
    base = {k: chosen["params"][k] for k in ("margin", "scale")}
    assert base != {"margin": 0.1, "scale": 20.0}  # searched, not the defaults
    jrd = [r for r in records(root, "**/record.json") if r["spec"]["method"] == "jrd"]
    assert {r["spec"]["role"] for r in jrd} == {"search", "final"} and len(jrd) > 4
    for r in jrd:
        assert {k: r["spec"]["hparams"][k] for k in base} == base, r["spec"]["hparams"]
    study = optuna.load_study(study_name="jrd", storage=f"sqlite:///{root / 'benchmarks/nest/study.db'}")
    assert all(set(t.params) == {"alpha", "sigma"} for t in study.trials) and len(study.trials) == 2
    assert json.loads((root / "benchmarks/nest/methods/jrd/chosen.json").read_text())["inherited"] == base


def test_top_candidates_are_re_measured_on_more_seeds_and_chosen_by_their_mean(nested):
    root, _ = nested
    for method in ("amsoftmax", "jrd"):
        chosen = json.loads((root / f"benchmarks/nest/methods/{method}/chosen.json").read_text())
        candidates = chosen["candidates"]
        assert len(candidates) == 2 and all(set(c["values"]) == {"0", "1"} for c in candidates)
        assert chosen["params"] == candidates[0]["params"]
        assert candidates[0]["mean"] == max(c["mean"] for c in candidates)
        assert candidates[0]["mean"] == pytest.approx(sum(candidates[0]["values"].values()) / 2)
        final = [r for r in records(root, "runs/nest/*/record.json") if r["spec"]["method"] == method]
        assert len(final) == 2 and all(r["spec"]["hparams"] == chosen["hparams"] for r in final)


def test_the_report_states_the_protocol_candidates_sensitivity_and_the_paired_test(nested):
    root, _ = nested
    report = (root / "benchmarks/nest/report/report.md").read_text()
    chosen = json.loads((root / "benchmarks/nest/methods/amsoftmax/chosen.json").read_text())["params"]
    assert (f"Protocol **nested**: each baseline was searched first; each extension inherited its baseline's chosen "
            f"values and spent the same 2 trials on its own hyperparameters only (jrd trained at amsoftmax's chosen "
            f"margin={chosen['margin']:.4g}, scale={chosen['scale']:.4g})") in report
    assert "## Re-measured top candidates" in report and "| **chosen** |" in report
    assert "| jrd | amsoftmax | " in report and "| p (paired) | p (Holm) |" in report
    assert "### jrd: alpha" in report and "| 0 (= baseline) |" in report
    sweep = [r for r in records(root, "searches/*/trials/*/record.json")
             if r["spec"]["method"] == "jrd" and r["spec"]["hparams"]["alpha"] in (0.0, 1e-3, 10.0)]
    assert sorted((r["spec"]["hparams"]["alpha"], r["spec"]["seed"]) for r in sweep) == [
        (0.0, 0), (0.0, 1), (1e-3, 0), (1e-3, 1), (10.0, 0), (10.0, 1)]
    assert (root / "benchmarks/nest/report/sensitivity_jrd.png").stat().st_size > 0


def test_the_site_states_the_protocol_in_words(nested, tmp_path):
    from harness.core.store import TrialStore
    from harness.reporting.site import write_site

    root, _ = nested
    pages = write_site(TrialStore(root), tmp_path / "site")
    page = next(p for p in pages if p.parent.name == "nest" and p.name == "index.html").read_text()
    assert "Protocol <strong>nested</strong>: each baseline was searched first" in page
    assert "jrd trained at amsoftmax&#x27;s chosen margin=" in page or "jrd trained at amsoftmax's chosen margin=" in page
    assert "sensitivity_jrd.png" in page


@pytest.mark.slow
def test_under_joint_the_extension_searches_its_base_hyperparameters_too(tmp_path):
    args = [a for a in ARGS if a not in ("--space", "jrd.alpha", "jrd.sigma")]
    args[args.index("--remeasure-seeds") + 1], args[args.index("--sensitivity-points") + 1] = "1", "0"
    assert main([*args, "--protocol", "joint", "--space", "jrd.alpha", "--space", "jrd.margin",
                 "--results-dir", str(tmp_path)]) == 0
    study = optuna.load_study(study_name="jrd", storage=f"sqlite:///{tmp_path / 'benchmarks/nest/study.db'}")
    assert all(set(t.params) == {"alpha", "margin"} for t in study.trials) and len(study.trials) == 2
    chosen = json.loads((tmp_path / "benchmarks/nest/methods/jrd/chosen.json").read_text())
    assert chosen["protocol"] == "joint" and chosen["inherited"] == {}
    assert BenchmarkManifest.from_yaml(tmp_path / "benchmarks/nest/manifest.yaml").protocol == "joint"
    report = (tmp_path / "benchmarks/nest/report/report.md").read_text()
    assert ("Protocol **joint**: each extension (jrd on amsoftmax) searched its own and its baseline's "
            "hyperparameters together, with the same 2 trials as every other method.") in report
    assert "| jrd | amsoftmax | " in report and "No sweep was run (sensitivity_points is 0)." in report
