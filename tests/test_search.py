"""Hyperparameter search (the harness's Optuna ask/tell driving Ray or the local executor) and sweeps,
on digits with two validation classes."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from test_ray import kill_when, ray_session  # noqa: F401  (the module-scoped Ray fixture)

from harness.cli import main
from harness.core.hparams import LogUniform, Uniform
from harness.core.store import TrialStore
from harness.scheduling.search import finished_trials, search_space

pytestmark = pytest.mark.xdist_group("ray")  # its Ray cluster shares a worker with the other Ray tests

SPACE = ["--space", "scale=loguniform(2,64)", "--space", "margin"]
# two validation classes out of digits' five training classes, so that the validation metric varies
DIGITS = ["--method", "amsoftmax", "--dataset", "digits", "--val-fraction", "0.4", "--no-progress",
          "--cpus-per-trial", "1"]


def test_space_is_the_declaration_narrowed_and_overridden_by_space_options():
    assert search_space("ms", []) == {"alpha": LogUniform(0.1, 20.0), "beta": LogUniform(1.0, 100.0),
                                      "base": Uniform(0.0, 1.0), "epsilon": Uniform(0.0, 0.5)}
    assert search_space("amsoftmax", ["scale=loguniform(2,64)", "margin"]) == {
        "scale": LogUniform(2.0, 64.0), "margin": Uniform(0.0, 0.6)}
    with pytest.raises(ValueError, match="valid: alpha, base, beta, epsilon"):
        search_space("ms", ["gamma=uniform(0,1)"])
    with pytest.raises(ValueError, match="cannot parse search space"):
        search_space("ms", ["alpha=normal(0,1)"])
    with pytest.raises(ValueError, match="declares no search space"):
        search_space("pixels", [])


def study_of(folder: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")


def running_params(folder: Path) -> list[int]:
    """How many parameters each running trial of a study another process is writing has sampled so far."""
    try:
        with sqlite3.connect(f"file:{folder / 'study.db'}?mode=ro", uri=True) as db:
            return [n for (n,) in db.execute(
                "SELECT COUNT(p.param_id) FROM trials t LEFT JOIN trial_params p ON p.trial_id = t.trial_id "
                "WHERE t.state = 'RUNNING' GROUP BY t.trial_id").fetchall()]
    except sqlite3.Error:
        return []


def state_counts(folder: Path) -> dict[str, int]:
    """Trials per state of a study another process is writing (read-only: no schema creation race)."""
    try:
        with sqlite3.connect(f"file:{folder / 'study.db'}?mode=ro", uri=True) as db:
            return dict(db.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
    except sqlite3.Error:
        return {}


@pytest.fixture(scope="module")
def asha_search(ray_session, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search")
    code = main(["search", *DIGITS, *SPACE, "--trials", "6", "--epochs", "2", "--max-concurrent", "2",
                 "--scheduler", "asha", "--final-seeds", "2", "--results-dir", str(out)])
    assert code == 0
    return out


def test_search_proposes_distinct_params_inside_the_space(asha_search):
    study = study_of(asha_search / "searches" / "digits.amsoftmax", "digits.amsoftmax")
    assert len(finished_trials(study)) == 6
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    params = [(t.params["scale"], t.params["margin"]) for t in study.trials]
    assert len(set(params)) == 6
    assert all(2 <= s <= 64 and 0 <= m <= 0.6 for s, m in params)
    table = pd.read_csv(asha_search / "searches" / "digits.amsoftmax" / "trials.csv")
    assert len(table) == 6 and {"scale", "margin", "val_recall@1", "trial_id", "state"} <= set(table.columns)


def test_best_is_the_highest_validation_metric_and_is_retrained_into_the_leaderboard(asha_search):
    folder = asha_search / "searches" / "digits.amsoftmax"
    best = json.loads((folder / "best.json").read_text())
    table = pd.read_csv(folder / "trials.csv")
    complete = table[table["state"] == "COMPLETE"]
    assert best["value"] == complete["val_recall@1"].max()
    # the search trials' own records agree: the best trial's final validation Recall@1
    search_records = [json.loads(p.read_text()) for p in folder.glob("trials/*/record.json")]
    assert len(search_records) == 6
    assert all(r["spec"]["eval_split"] == "val" and r["spec"]["role"] == "search" for r in search_records)
    best_record = next(r for r in search_records if r["trial_id"] == best["trial_id"])
    assert best_record["metrics"]["recall@1"] == best["value"]
    assert max(r["metrics"]["recall@1"] for r in search_records if r["status"] == "ok") == best["value"]
    final = [json.loads(p.read_text()) for p in (asha_search / "runs" / "digits").glob("*/record.json")]
    assert sorted(r["spec"]["seed"] for r in final) == [0, 1]
    assert all(r["spec"]["eval_split"] == "test" and r["spec"]["hparams"] == best["hparams"] for r in final)
    board = pd.read_csv(asha_search / "leaderboards" / "digits.csv")
    assert board["n_seeds"].tolist() == [2] and json.loads(board["hparams"][0]) == best["params"]
    assert (folder / "history.png").exists() and (folder / "scatter.png").exists()


def test_a_new_search_refuses_a_folder_holding_one(asha_search, capsys):
    code = main(["search", *DIGITS, *SPACE, "--trials", "6", "--epochs", "2", "--results-dir", str(asha_search)])
    assert code == 2 and "pass --resume to continue it" in capsys.readouterr().err


def test_the_proposal_stream_tells_optuna_complete_failed_or_pruned(tmp_path):
    """Each outcome of a trial becomes the matching Optuna state (no executor needed)."""
    from harness.core.record import TrialRecord
    from harness.experiment import ExperimentConfig
    from harness.scheduling.search import ProposalStream, SearchPlan

    searching = ExperimentConfig(methods=["amsoftmax"], dataset="digits", results_dir=str(tmp_path), eval_split="val",
                                 role="search", experiment="s")
    base = searching.trials()[0]
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    plan = SearchPlan(name="s", folder=tmp_path, outputs=tmp_path,
                      propose=lambda params: searching.with_hparams("amsoftmax", params).trials()[0],
                      space=search_space("amsoftmax", []), metric="val_recall@1", planned=3, seed=0)
    stream = ProposalStream(study, plan, TrialStore(tmp_path), budget=3)
    configs = list(stream)
    assert len(configs) == 3 and len({c.trial_id for c in configs}) == 3
    assert not stream.on_epoch(configs[2], {"epoch": 1, "val_recall@1": 0.5})  # reported to the study
    stream.on_record(TrialRecord(trial_id=configs[0].trial_id, status="ok", spec=configs[0].spec,
                                 placement=configs[0].placement, metrics={"recall@1": 0.75}))
    stream.on_record(TrialRecord.failed(configs[1], "NaN loss"))
    stream.on_record(TrialRecord(trial_id=configs[2].trial_id, status="pruned", spec=configs[2].spec,
                                 placement=configs[2].placement, error="pruned after epoch 1"))
    assert [(t.state, t.value, t.user_attrs.get("error")) for t in study.trials] == [
        (TrialState.COMPLETE, 0.75, None), (TrialState.FAIL, None, "NaN loss"), (TrialState.PRUNED, 0.5, None)]
    assert study.trials[2].intermediate_values == {1: 0.5}
    assert [t.user_attrs["trial_id"] for t in study.trials] == [c.trial_id for c in configs]
    assert all(c.with_spec(hparams=base.spec.hparams) == base for c in configs)  # only the hyperparameters differ


def test_search_runs_on_the_local_executor_too(tmp_path):
    code = main(["search", *DIGITS, *SPACE, "--trials", "3", "--epochs", "1", "--executor", "local",
                 "--final-seeds", "1", "--results-dir", str(tmp_path)])
    assert code == 0
    folder = tmp_path / "searches" / "digits.amsoftmax"
    assert len(finished_trials(study_of(folder, "digits.amsoftmax"))) == 3
    searched = [json.loads(p.read_text()) for p in folder.glob("trials/*/record.json")]
    assert len(searched) == 3 and all(r["spec"]["eval_split"] == "val" for r in searched)
    final = [json.loads(p.read_text()) for p in tmp_path.glob("runs/*/*/record.json")]
    assert [(r["spec"]["eval_split"], r["spec"]["role"]) for r in final] == [("test", "final")]


def test_a_search_on_a_one_class_validation_split_is_refused(tmp_path, capsys):
    """digits keeps one of its five training classes at the default --val-fraction 0.2: every
    proposal would score val R@1 = 1, so the search is refused before anything is written."""
    args = [a for a in DIGITS if a not in ("--val-fraction", "0.4")]
    code = main(["search", *args, *SPACE, "--trials", "2", "--epochs", "1", "--executor", "local",
                 "--results-dir", str(tmp_path)])
    assert code == 2 and "has 1 class(es)" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*.db")) and not any(tmp_path.rglob("record.json"))


@pytest.mark.slow
def test_a_killed_search_resumes_to_the_planned_count_without_repeating(ray_session, tmp_path):
    """Kill a search once two trials are complete and a third runs; ``--resume`` runs only the rest,
    the killed one first with its proposed parameters."""
    name, planned = "killed", 5
    args = ["search", *DIGITS, *SPACE, "--trials", str(planned), "--epochs", "1", "--max-concurrent", "1",
            "--executor", "ray", "--final-seeds", "0", "--name", name, "--results-dir", str(tmp_path)]
    folder = tmp_path / "searches" / name
    # kill once the running trial has sampled its whole space (Optuna samples one parameter at a time: a kill
    # between two would leave a half-sampled trial, which the resume completes rather than repeats)
    sampled = len(SPACE) // 2
    kill_when(args, lambda: state_counts(folder).get("COMPLETE", 0) >= 2 and sampled in running_params(folder),
              ray_session)
    before = study_of(folder, name).trials
    done_before = {t.number: t.params for t in before if t.state == TrialState.COMPLETE}
    # the killed trial's parameters, all sampled before the kill
    running = [t.params for t in before if t.state == TrialState.RUNNING and t.params]
    assert 2 <= len(done_before) < planned and len(running) <= 1
    assert main([*args, "--resume"]) == 0
    after = study_of(folder, name)
    finished = finished_trials(after)
    assert len(finished) == planned and all(t.state == TrialState.COMPLETE for t in finished)
    assert {t.number: t.params for t in finished if t.number in done_before} == done_before
    ran = [t for t in after.trials if t.number not in done_before]
    assert len(ran) == planned - len(done_before)  # nothing finished ran again
    assert [t.params for t in ran][:len(running)] == running  # the killed trial ran again with its parameters
    # ... under its own number, recorded as resumed: no FAIL trial, no renumbering
    assert [t.number for t in after.trials] == list(range(planned))
    assert {t.number for t in after.trials if t.user_attrs.get("resumed") == 1} == {
        t.number for t in before if t.state == TrialState.RUNNING}
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == planned
    assert main([*args, "--resume"]) == 0  # complete: nothing more runs
    assert len(study_of(folder, name).trials) == len(after.trials)


def test_sweep_runs_the_grid_on_validation_classes_and_never_makes_a_leaderboard_row(tmp_path):
    code = main(["sweep", "--method", "amsoftmax", "--param", "margin=0,0.2", "--seeds", "0", "--epochs", "1",
                 "--dataset", "digits", "--val-fraction", "0.4", "--executor", "local", "--no-progress",
                 "--results-dir", str(tmp_path)])
    assert code == 0
    recs = [json.loads(p.read_text()) for p in tmp_path.glob("runs/digits/*/record.json")]
    assert sorted((r["spec"]["hparams"]["margin"], r["spec"]["seed"]) for r in recs) == [(0, 0), (0.2, 0)]
    assert all((r["spec"]["eval_split"], r["spec"]["role"]) == ("val", "sweep") for r in recs)
    assert (tmp_path / "sweeps" / "digits" / "amsoftmax.margin.png").stat().st_size > 0
    # a test-split sweep is explicit, marked as a sweep, and still kept out of the leaderboard
    assert main(["sweep", "--method", "amsoftmax", "--param", "margin=0.2", "--seeds", "0", "--epochs", "1",
                 "--dataset", "digits", "--on-test", "--executor", "local", "--no-progress",
                 "--results-dir", str(tmp_path)]) == 0
    recs = [json.loads(p.read_text()) for p in tmp_path.glob("runs/digits/*/record.json")]
    assert sum(r["spec"]["eval_split"] == "test" and r["spec"]["role"] == "sweep" for r in recs) == 1
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 1  # no leaderboard rows


class ScoringExecutor:
    """An executor that trains nothing: each trial's validation Recall@1 is a fixed function of its
    hyperparameters, written as a real record into ``store``; ``kill_after`` trials it raises as a killed
    driver would, with the next proposal already asked (running)."""

    def __init__(self, store: TrialStore, kill_after: int | None = None):
        self.store = store
        self.kill_after = kill_after
        self.ran: list[dict] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, trials, *, resume=False, on_epoch=None, on_record=None):
        from harness.core.record import TrialRecord
        from harness.scheduling.executors import deliver, pending

        records = []
        for trial in pending(trials, self.store, resume, on_record, records):
            if self.kill_after is not None and len(self.ran) == self.kill_after:
                raise KeyboardInterrupt
            hparams = trial.spec.hparams
            self.ran.append(dict(hparams))
            score = 1 / (1 + (hparams["scale"] - 20) ** 2 / 100 + (hparams["margin"] - 0.3) ** 2)
            records.append(deliver(TrialRecord(trial_id=trial.trial_id, status="ok", spec=trial.spec,
                                               placement=trial.placement, metrics={"recall@1": score}),
                                   self.store, on_record))
        return records


def proposals(executor: ScoringExecutor, resume: bool = False) -> list[dict]:
    """Run an 8-trial search of amsoftmax's scale and margin on ``executor`` (into its store); the study's
    parameters in order."""
    from harness.experiment import ExperimentConfig
    from harness.scheduling.search import SearchPlan, run_searches

    store = executor.store
    searching = ExperimentConfig(methods=["amsoftmax"], dataset="digits", results_dir=str(store.root),
                                 eval_split="val", role="search", experiment="s", val_fraction=0.4)
    folder = store.search_dir("s")
    plan = SearchPlan(name="s", folder=folder, outputs=folder, metric="val_recall@1", planned=8, seed=3,
                      propose=lambda params: searching.with_hparams("amsoftmax", params).trials()[0],
                      space=search_space("amsoftmax", ["scale=loguniform(2,64)", "margin"]))
    run_searches(executor, store, [plan], resume=resume)
    return [t.params for t in finished_trials(study_of(folder, "s"))]


@pytest.mark.parametrize("killed_after, while_asking", [(1, False), (4, False), (1, True)])
def test_a_resumed_search_proposes_what_the_uninterrupted_one_did(tmp_path, monkeypatch, killed_after, while_asking):
    """Killed after its first trial (in TPE's random start-up) or its fourth (TPE proper), with the next
    proposal running (or being drawn: no parameters yet), and resumed: the same eight proposals as a
    search that was never interrupted."""
    uninterrupted = proposals(ScoringExecutor(TrialStore(tmp_path / "a")))
    if while_asking:
        ask, asked = optuna.Study.ask, []

        def killed_in_ask(study, fixed_distributions=None):
            asked.append(1)
            if len(asked) > killed_after:
                ask(study)  # the trial exists, its parameters are never drawn
                raise KeyboardInterrupt
            return ask(study, fixed_distributions)

        monkeypatch.setattr(optuna.Study, "ask", killed_in_ask)
    with pytest.raises(KeyboardInterrupt):
        proposals(ScoringExecutor(TrialStore(tmp_path / "b"), kill_after=None if while_asking else killed_after))
    monkeypatch.undo()
    stale = [t for t in study_of(tmp_path / "b" / "searches" / "s", "s").trials if t.state == TrialState.RUNNING]
    assert len(stale) == 1 and bool(stale[0].params) != while_asking  # left running by the killed driver
    resumed = ScoringExecutor(TrialStore(tmp_path / "b"))
    assert proposals(resumed, resume=True) == uninterrupted
    assert len(resumed.ran) == 8 - killed_after  # the interrupted proposal again, then the rest
    assert len({tuple(sorted(p.items())) for p in uninterrupted}) == 8
    # the interrupted trial ran again under its own number, recorded as resumed: no FAIL, no renumbering
    trials = study_of(tmp_path / "b" / "searches" / "s", "s").trials
    assert [t.number for t in trials] == list(range(8)) and {t.state for t in trials} == {TrialState.COMPLETE}
    assert {t.number: t.user_attrs.get("resumed") for t in trials if "resumed" in t.user_attrs} == {killed_after: 1}
    table = pd.read_csv(tmp_path / "b" / "searches" / "s" / "trials.csv")
    assert list(table["number"]) == list(range(8)) and set(table["state"]) == {"COMPLETE"}
    assert list(table["resumed"].fillna(0)) == [1 if n == killed_after else 0 for n in range(8)]


def test_a_truncated_study_is_refused_with_one_line_naming_it(tmp_path, capsys):
    """``search --resume`` and ``benchmark --resume`` on a truncated study.db: one line, exit 2."""
    for folder in (tmp_path / "searches" / "digits.amsoftmax", tmp_path / "benchmarks" / "digits"):
        folder.mkdir(parents=True)
        optuna.create_study(study_name="x", storage=f"sqlite:///{folder / 'study.db'}")
        data = (folder / "study.db").read_bytes()
        (folder / "study.db").write_bytes(data[:len(data) // 3])
    common = ["--dataset", "digits", "--val-fraction", "0.4", "--epochs", "1", "--executor", "local",
              "--no-progress", "--results-dir", str(tmp_path), "--resume"]
    assert main(["search", "--method", "amsoftmax", *SPACE, "--trials", "2", *common]) == 2
    assert main(["benchmark", "--methods", "amsoftmax", "--trials-per-method", "2", "--final-seeds", "1",
                 "--recipe-set", "batch_size=48", *common]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    for line, folder in zip(lines, ("searches/digits.amsoftmax", "benchmarks/digits")):
        assert line.startswith(f"error: {tmp_path / folder / 'study.db'} is not a readable Optuna study (")
        assert line.endswith("restore it from a copy, or move it away to start this search afresh")
    assert not list(tmp_path.rglob("record.json"))
