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


# ---- one resolution step on every path (issue 32, item 1; issue 31, item 4) ----------------------------------
def searched_cases(name: str) -> list[tuple[str, object]]:
    """(hyperparameter, value) pairs a search may propose: every option of every categorical hyperparameter
    (the values other defaults may depend on), else the first searchable one at its declared default."""
    cls = METHODS.get(name)
    cases = [(hp, option) for hp, p in cls.hparams.items() if isinstance(p.space, Choice) for option in p.space.options]
    return cases or [next((hp, p.default) for hp, p in cls.hparams.items() if p.space is not None)]


def searchable(name: str) -> bool:
    return any(p.space is not None for p in METHODS.get(name).hparams.values())


@pytest.mark.parametrize("name", [n for n in METHODS.names() if searchable(n)])
def test_run_search_proposal_benchmark_and_finals_resolve_the_same_values(name, tmp_path):
    """For every value a search over it can propose, the search's proposal (a real Optuna ask through the
    search command's plan and the benchmark's), the best configuration's record in ``best.json``, and both
    finals hold what ``run --hparam METHOD.NAME=VALUE`` resolves: JRD's α follows a proposed kernel."""
    import optuna

    from harness.core.store import TrialStore
    from harness.scheduling.benchmark import Benchmark, BenchmarkManifest, declared_spaces
    from harness.scheduling.search import ProposalStream, experiment_search

    store = TrialStore(tmp_path)
    experiment = ExperimentConfig(methods=[name], dataset=DATASET, seeds=[0], results_dir=str(tmp_path))
    for hp, value in searched_cases(name):
        run = ExperimentConfig(methods=[name], dataset=DATASET, hparams={name: {hp: value}}).trials()[0].spec.hparams
        search = experiment_search(experiment, name="s", folder=tmp_path, space={hp: Choice((value,))},
                                   metric="val_recall@1", planned=1, seed=0, final_seeds=1)
        baseline = [b] if (b := METHODS.get(name).baseline) else []  # an extension joins with its baseline
        manifest = BenchmarkManifest(name="b", methods=[name, *baseline], dataset=DATASET, protocol="joint",
                                     spaces={name: {hp: f"choice({value})"}, **declared_spaces(baseline, {})},
                                     trials_per_method=1, final_seeds=1)
        bench = Benchmark(manifest, store)
        for plan, final in ((search, search.final), (bench.plan(name), lambda params: bench.final_trials(name, params))):
            study = optuna.create_study(direction="maximize")
            (proposed,) = list(ProposalStream(study, plan, store, budget=1))
            assert study.trials[0].params == {hp: value}
            assert proposed.spec.hparams == run, (hp, value)
            assert [t.spec.hparams for t in final(study.trials[0].params)] == [run], (hp, value)


def test_a_jrd_search_over_its_kernel_trains_and_records_the_alpha_each_kernel_implies(tmp_path, monkeypatch, capsys):
    """``search --method jrd --space kernel=choice(...)`` through the real command: the trial the executor is
    handed, its record, ``best.json`` and the final trial hold α = 1e-3 for the mgf kernel, as
    ``run --hparam jrd.kernel=mgf`` does (on 87555a9 the proposal kept the base trial's α = 1.0)."""
    import json

    from harness.cli import main
    from harness.core.record import TrialRecord
    from harness.scheduling.executor_registry import EXECUTORS
    from harness.scheduling.executors import deliver, pending

    handed = []

    class Recording:
        """Trains nothing: records each trial it is handed with a fixed score."""

        def __init__(self, options):
            self.store = options.store

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def run(self, trials, *, resume=False, on_epoch=None, on_record=None):
            done = []
            for trial in pending(trials, self.store, resume, on_record, done):
                handed.append(trial)
                done.append(deliver(TrialRecord(trial_id=trial.trial_id, status="ok", spec=trial.spec,
                                                placement=trial.placement, metrics={"recall@1": 0.5, "map@r": 0.25}),
                                    self.store, on_record))
            return done

    monkeypatch.setitem(EXECUTORS._entries, "recording", Recording)
    code = main(["search", "--method", "jrd", "--space", "kernel=choice(mgf)", "--trials", "1", "--final-seeds", "1",
                 "--dataset", "omniglot28", "--executor", "recording", "--results-dir", str(tmp_path), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    run = trial_hparams("jrd", {"kernel": "mgf"})
    assert run["alpha"] == 1e-3
    assert [(t.spec.role, t.spec.hparams) for t in handed] == [("search", run), ("final", run)]
    best = json.loads(next(tmp_path.glob("searches/*/best.json")).read_text())
    assert best["hparams"] == run
