"""The search driver that ``search`` and ``benchmark`` share: Optuna's TPE proposes, any executor trains
and the pruner stops, the study persists in SQLite, then the best configuration is re-trained.

The space is the method's own declaration (every :class:`~harness.core.hparams.Param` with a ``space``),
or only the parameters named with ``--space NAME[=DISTRIBUTION]``. Each proposal is an ordinary
trial on the validation classes (``eval_split="val"``, ``role="search"``: trained on the training
classes minus the validation ones) whose objective is a validation metric. The harness owns Optuna's
ask/tell: :func:`run_searches` hands one executor (local or Ray) the lazy streams of proposals of one
or more studies (a :class:`SearchPlan` each; a benchmark's methods interleave), asks for the next one
whenever the executor has room, reports each epoch's validation metric to the study and prunes
through Optuna's pruner (``asha``: its successive-halving pruner), and tells the study each record as
it arrives. The study's ``study.db`` is the single truth: a search killed part-way and resumed counts
what the study holds, runs the trials that were running again under their own numbers (marked
``resumed``, never failed: one trial number in the console, ``trials.csv``, the figures and
optuna-dashboard), and asks only for the rest; each
proposal is drawn by a sampler seeded from the search's seed and the proposal's index, so a resumed
search proposes exactly what the uninterrupted one would have (with one trial at a time; with several
at once, the history a proposal sees depends on which trials finished first). Afterwards each study's
best configuration is re-trained as its plan says (``final_seeds`` seeds on all training classes, as
ordinary test-split trials: leaderboard records), in the same executor.
"""
from __future__ import annotations

import functools
import json
import math
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from harness.core.hparams import Choice, Distribution, IntUniform, LogUniform, Uniform, parse_distribution
from harness.core.metrics import base_metric, format_metric
from harness.core.record import TrialRecord
from harness.core.store import TrialStore, atomic_write_text
from harness.core.trial import Trial
from harness.experiment import ExperimentConfig
from harness.plugins.method import get_method_class

if TYPE_CHECKING:  # a search's plan is checked before torch or matplotlib is imported
    from harness.scheduling.executors import Executor

STUDY_FILE = "study.db"
#: a trial's user attribute: how many times a killed search left it running and a resumed one ran it again
RESUMED = "resumed"


def search_space(method: str, items: list[str]) -> dict[str, Distribution]:
    """The distributions to search: each ``NAME=DIST`` or ``NAME`` (the declared one) of ``items``;
    without items, every hyperparameter of ``method`` that declares a space."""
    cls = get_method_class(method)
    declared = cls.hparams
    if not items:
        space = {name: p.space for name, p in declared.items() if p.space is not None}
        if not space:
            raise ValueError(f"method {method!r} declares no search space; give one with --space NAME=DIST")
        check_space(method, space)
        return space
    space: dict[str, Distribution] = {}
    for item in items:
        name, _, text = (part.strip() for part in item.partition("="))
        cls.check_hparam_names([name])
        dist = parse_distribution(text) if text else declared[name].space
        if dist is None:
            raise ValueError(f"{method}.{name} declares no search space; give one: --space {name}=loguniform(a,b)")
        space[name] = dist
    check_space(method, space)
    return space


def check_space(method: str, space: dict[str, Distribution]) -> None:
    """Raise ``ValueError`` unless each distribution draws only valid values of its hyperparameter
    (:meth:`~harness.core.hparams.Param.check_space`) and is one Optuna can store; called before a
    study or any folder exists, so that a refused space leaves nothing behind."""
    declared = get_method_class(method).hparams
    for name, dist in space.items():
        declared[name].check_space(f"{method}.{name}", dist)
        if isinstance(dist, Choice) and not all(o is None or isinstance(o, (bool, int, float, str)) for o in dist.options):
            raise ValueError(f"search space {method}.{name}={dist}: Optuna's choices must be numbers, strings, "
                             "booleans or None")
        try:
            optuna_distribution(dist)
        except ValueError as error:
            raise ValueError(f"search space {method}.{name}={dist}: {error}") from None


def optuna_distribution(dist: Distribution) -> BaseDistribution:
    if isinstance(dist, LogUniform):
        return FloatDistribution(dist.low, dist.high, log=True)
    if isinstance(dist, Uniform):
        return FloatDistribution(dist.low, dist.high)
    if isinstance(dist, IntUniform):
        return IntDistribution(dist.low, dist.high)
    if isinstance(dist, Choice):
        return CategoricalDistribution(dist.options)
    raise TypeError(f"unsupported distribution {dist!r}")


def describe_space(space: dict[str, Distribution]) -> dict[str, str]:
    return {name: repr(dist) for name, dist in sorted(space.items())}


def study_storage(folder: Path) -> str:
    """The SQLite URL of a search folder's study (``optuna.load_study(study_name=..., storage=...)``)."""
    return f"sqlite:///{(folder / STUDY_FILE).resolve()}"


PRUNERS = ("none", "asha")


def make_pruner(kind: str) -> optuna.pruners.BasePruner:
    """``asha``: Optuna's successive-halving pruner (asynchronous, as ASHA) on the per-epoch metric."""
    if kind == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {kind!r}; valid: {', '.join(PRUNERS)}")


def load_study(folder: Path, name: str, resume: bool, pruner: str) -> tuple[optuna.Study, bool]:
    """The study ``name`` in ``folder/study.db`` (created if absent) and whether it existed; a file that
    is not a readable Optuna study (truncated, corrupt) raises ``ValueError`` naming it."""
    import sqlalchemy.exc  # here: a search's plan is checked before its storage is opened

    storage = study_storage(folder)
    try:
        exists = name in optuna.study.get_all_study_names(storage)
        if exists and not resume:
            raise ValueError(f"{folder} already holds search {name!r}: pass --resume to continue it, "
                             "or --name for a new one")
        return optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                   pruner=make_pruner(pruner)), exists
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise ValueError(f"{folder / STUDY_FILE} is not a readable Optuna study ({reason}): restore it from a "
                         "copy, or move it away to start this search afresh") from None


def proposal_sampler(seed: int, index: int, planned: int) -> optuna.samplers.TPESampler:
    """The TPE sampler that draws proposal ``index`` of a search: seeded from ``(seed, index)`` (NumPy's
    ``SeedSequence``, so that no two pairs share a stream), so that each proposal is a function of the
    search's seed, its index and the study's history alone."""
    stream_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # constant_liar in Optuna 4
        return optuna.samplers.TPESampler(seed=stream_seed, constant_liar=True,
                                          n_startup_trials=max(2, min(10, planned // 3)))


def open_study(folder: Path, name: str, spec: dict[str, Any], resume: bool, pruner: str = "none") -> optuna.Study:
    """The search's study in ``folder/study.db``: new, or (``resume``) the one there, whose trials a killed
    search left running wait to run again (:func:`requeue_interrupted`)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, exists = load_study(folder, name, resume, pruner)
    if not exists:
        study.set_user_attr("spec", spec)
    elif study.user_attrs.get("spec") != spec:
        raise ValueError(f"search {name!r} was started with a different setup; --resume needs the same one\n"
                         f"  stored: {study.user_attrs.get('spec')}\n  now:    {spec}")
    requeue_interrupted(study, folder)
    return study


def requeue_interrupted(study: optuna.Study, folder: Path) -> None:
    """Put each trial a killed search left running back to waiting, under its own number and with the
    parameters it had drawn (Optuna's ``ask`` hands a waiting trial out before a new one, and a parameter
    already suggested keeps its value), and count the resumption in its ``resumed`` attribute: the
    interrupted trial is neither failed nor renumbered."""
    storage = optuna.storages.get_storage(study_storage(folder))
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_state_values(trial_id, TrialState.WAITING)
        storage.set_trial_user_attr(trial_id, RESUMED, int(t.user_attrs.get(RESUMED, 0)) + 1)


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards the planned number: completed, pruned or failed."""
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))


def trials_table(study: optuna.Study, metric: str):
    """One row per trial: number, state, its parameters, the validation metric, trial id and error."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "duration"))
    return frame.rename(columns=lambda c: metric if c == "value" else
                        c.removeprefix("params_").removeprefix("user_attrs_"))


#: the fewest completed trials that hyperparameter importances (and the contour over the two most
#: important hyperparameters) are estimated from: fANOVA's forest over fewer points ranks noise
MIN_TRIALS_FOR_IMPORTANCES = 10


def param_importances(study: optuna.Study, space: dict[str, Distribution]) -> dict[str, float] | None:
    """Optuna's fANOVA importance of each searched hyperparameter for the objective (None with fewer than two
    hyperparameters, fewer than :data:`MIN_TRIALS_FOR_IMPORTANCES` completed trials, or before Optuna can
    estimate them)."""
    if len(space) < 2 or len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < MIN_TRIALS_FOR_IMPORTANCES:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError):
        return None


@dataclass(frozen=True)
class SearchPlan:
    """One study of a search: its name and folder (``study.db``), where its outputs go, ``propose``: the
    search trial at some searched values (``role="search"``, ``eval_split="val"``; built through the
    experiment's one resolution step, :meth:`~harness.experiment.ExperimentConfig.hparams_for`, so that a
    default that depends on a searched value is filled anew), the space, the validation objective
    (``val_<metric>``), the number of proposals, the sampler's seed, the pruner, and ``final``: the test
    trials that re-train a best configuration (from its searched parameters)."""

    name: str
    folder: Path
    outputs: Path
    propose: Callable[[dict[str, Any]], Trial]
    space: dict[str, Distribution]
    metric: str
    planned: int
    seed: int
    pruner: str = "none"
    final: Callable[[dict[str, Any]], list[Trial]] = field(default=lambda params: [])

    @functools.cached_property
    def base(self) -> Trial:
        """The search trial with nothing searched given (its id identifies the search's setup)."""
        return self.propose({})

    def __post_init__(self) -> None:
        if self.base.spec.role != "search" or self.base.spec.eval_split != "val":
            raise ValueError("a search trial has role 'search' and eval_split 'val'")
        if base_metric(self.metric)[0] != "val":
            raise ValueError(f"the objective must be a validation metric val_<name>, got {self.metric!r}")

    def spec(self) -> dict[str, Any]:
        """What a resumed study must have been started with."""
        return {"method": self.base.spec.method, "dataset": self.base.spec.dataset, "metric": self.metric,
                "space": describe_space(self.space), "base_trial": self.base.trial_id, "seed": self.seed,
                "pruner": self.pruner}


def experiment_search(experiment: ExperimentConfig, *, name: str, folder: Path, space: dict[str, Distribution],
                      metric: str, planned: int, seed: int, pruner: str = "none", final_seeds: int = 0,
                      fail_at_epoch: int | None = None) -> SearchPlan:
    """The search of the one method of ``experiment``, studied in ``folder``: each proposal is the experiment's
    trial on the validation classes (``role="search"``, in experiment ``name``, seed ``seed``) with the
    proposed values given, each final one of seeds ``0..final_seeds-1`` on the test classes with the best values
    given, both resolved by the experiment (:meth:`~harness.experiment.ExperimentConfig.hparams_for`) as a
    ``run`` with those values would be. ``fail_at_epoch`` injects the test-only fault into the proposals."""
    (method,) = experiment.methods
    searching = replace(experiment, eval_split="val", role="search", experiment=name, save_model=False, seeds=[seed])

    def propose(params: dict[str, Any]) -> Trial:
        trial = searching.with_hparams(method, params).trials()[0]
        return trial if fail_at_epoch is None else trial.with_placement(fail_at_epoch=fail_at_epoch)

    def final(params: dict[str, Any]) -> list[Trial]:
        return replace(experiment.with_hparams(method, params), seeds=list(range(final_seeds))).trials() if final_seeds else []

    return SearchPlan(name=name, folder=folder, outputs=folder, propose=propose, space=space, metric=metric,
                      planned=planned, seed=seed, pruner=pruner, final=final)


@dataclass
class SearchOutcome:
    """A study after its search: the best completed trial (None when none completed), its full
    hyperparameters, the files written, and the records of its re-trained best configuration."""

    study: optuna.Study
    best: optuna.trial.FrozenTrial | None
    hparams: dict[str, Any]
    files: list[Path]
    final: list[TrialRecord] = field(default_factory=list)

    @property
    def finished(self) -> list[optuna.trial.FrozenTrial]:
        return finished_trials(self.study)


def write_outputs(study: optuna.Study, plan: SearchPlan) -> SearchOutcome:
    """``trials.csv``, the plots and ``best.json``: the completed trial with the highest metric (if any)."""
    from harness.reporting.search_plots import search_plots  # matplotlib: only once there is something to draw

    folder, base, metric = plan.outputs, plan.base.spec, plan.metric
    folder.mkdir(parents=True, exist_ok=True)
    table = trials_table(study, metric)
    atomic_write_text(folder / "trials.csv", table.to_csv(index=False))
    importances = param_importances(study, plan.space)
    files = [folder / "trials.csv", *search_plots(table, metric, plan.space, folder, plan.name, importances)]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE and t.value is not None
                and math.isfinite(t.value)]
    if importances is None and len(plan.space) >= 2:
        print(f"search {plan.name}: no importances or contour plot: {len(complete)} completed trial(s), fewer than "
              f"the {MIN_TRIALS_FOR_IMPORTANCES} they need", flush=True)
    if not complete:
        return SearchOutcome(study=study, best=None, hparams={}, files=files)
    best = max(complete, key=lambda t: t.value)
    hparams = plan.propose(best.params).spec.hparams
    atomic_write_text(folder / "best.json", json.dumps({
        "metric": metric, "value": best.value, "trial_number": best.number,
        "trial_id": best.user_attrs.get("trial_id"), "params": best.params, "hparams": hparams,
        "method": base.method, "dataset": base.dataset, "n_trials": len(finished_trials(study)),
        "n_complete": len(complete), "space": describe_space(plan.space), "study": study.study_name,
        "storage": study_storage(plan.folder),
    }, indent=2, sort_keys=True, default=str) + "\n")
    return SearchOutcome(study=study, best=best, hparams=hparams, files=[*files, folder / "best.json"])


class ProposalStream:
    """The executor's side of one study: a lazy stream of trials asked from it, and the callbacks that
    report epochs to it (for pruning) and tell it each outcome.

    Each proposal is drawn by :func:`proposal_sampler` with its index among the study's proposals (a
    trial a killed search left running waits under its own number and keeps its parameters; one killed
    before they were drawn draws them at its own index).
    With ``base.folds`` = K each proposal is K trials, one per fold of a class-disjoint cross-validation
    over the training classes; the study is told the mean of the K validation scores once all K
    records are in (failed if any fold failed; trials are not pruned then).
    """

    def __init__(self, study: optuna.Study, plan: SearchPlan, store: TrialStore, budget: int,
                 on_tell: Callable[[optuna.trial.FrozenTrial], None] = lambda t: None):
        self.study = study
        self.plan = plan
        self.store = store
        self.distributions = {name: optuna_distribution(d) for name, d in plan.space.items()}
        self.base = plan.base
        self.metric = base_metric(plan.metric)[1]  # the name in a validation trial's record
        self.budget = budget
        self.on_tell = on_tell
        self.live: dict[str, list[optuna.Trial]] = {}  # trial id -> the proposals waiting for its record
        self.numbers: dict[str, int] = {}  # trial id -> the study's number of the proposal it was yielded for
        self.scores: dict[int, dict[int, TrialRecord]] = {}  # proposal number -> its folds' records

    def trials_of(self, params: dict[str, Any]) -> list[Trial]:
        trial = self.plan.propose(params)
        folds = trial.spec.folds
        return [trial.with_spec(fold=k) for k in range(folds)] if folds else [trial]

    def ask(self) -> optuna.Trial:
        index = sum(t.state != TrialState.WAITING for t in self.study.get_trials(deepcopy=False))
        self.study.sampler = proposal_sampler(self.plan.seed, index, self.plan.planned)
        return self.study.ask(self.distributions)

    def __iter__(self) -> Iterator[Trial]:
        while self.budget > 0:
            self.budget -= 1
            proposal = self.ask()
            trials = self.trials_of(proposal.params)
            proposal.set_user_attr("trial_id", trials[0].trial_id)
            self.scores[proposal.number] = {}
            for trial in trials:
                waiting = self.live.setdefault(trial.trial_id, [])
                waiting.append(proposal)
                if len(waiting) > 1:  # the same configuration is already running: share its outcome
                    continue
                finished = self.store.read_record(trial)
                if finished is not None and finished.ok:  # proposed before and trained: its record answers
                    self.on_record(finished)
                    continue
                self.numbers[trial.trial_id] = proposal.number
                yield trial

    def on_epoch(self, trial: Trial, metrics: dict[str, Any]) -> bool:
        proposals = self.live.get(trial.trial_id)
        if not proposals or self.plan.metric not in metrics or trial.spec.folds:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a trial restarted from scratch reports an epoch again
            proposals[0].report(float(metrics[self.plan.metric]), step=int(metrics["epoch"]))
        return proposals[0].should_prune()

    def on_record(self, record: TrialRecord) -> None:
        for proposal in self.live.pop(record.trial_id, []):
            folds = self.scores[proposal.number]
            folds[record.spec.fold or 0] = record
            if len(folds) == max(1, self.base.spec.folds):
                self._tell(proposal, list(folds.values()))

    def _tell(self, proposal: optuna.Trial, records: list[TrialRecord]) -> None:
        values = [r.metrics.get(self.metric) if r.ok else None for r in records]
        if any(r.status == "pruned" for r in records):
            state, value, reason = TrialState.PRUNED, None, ""
        elif any(v is None or not math.isfinite(v) for v in values):
            failed = next(r for r, v in zip(records, values) if v is None or not math.isfinite(v))
            state, value, reason = TrialState.FAIL, None, failed.error or f"the trial reported no {self.plan.metric!r}"
        else:
            state, value, reason = TrialState.COMPLETE, sum(values) / len(values), ""
            if len(values) > 1:
                proposal.set_user_attr("fold_values", values)
        if reason:
            proposal.set_user_attr("error", reason)
        del self.scores[proposal.number]
        self.on_tell(self.study.tell(proposal, value, state=state))


@dataclass(frozen=True)
class SearchTrials:
    """The trials of one or more studies' streams as an executor runs them, each numbered as its study
    numbers its proposal (:class:`~harness.scheduling.progress.NumberedTrials`: the live table shows the
    numbers the console, ``trials.csv``, the figures and optuna-dashboard show)."""

    trials: Iterable[Trial]
    streams: dict[str, ProposalStream]
    planned: int  # the trials still to run when the search starts (a proposal is one trial per fold)

    def __iter__(self) -> Iterator[Trial]:
        return iter(self.trials)

    def __len__(self) -> int:
        """The live table's "n of N": the trials still to run (fewer run if a deadline or a record cuts in)."""
        return self.planned

    def number_of(self, trial: Trial) -> str | None:
        stream = self.streams.get(trial.placement.experiment)
        number = stream.numbers.get(trial.trial_id) if stream is not None else None
        return None if number is None else str(number)


def round_robin(streams: Iterable[Iterable[Trial]]) -> Iterator[Trial]:
    """One trial of each stream in turn while any has trials left: a benchmark's methods interleave."""
    iterators = [iter(s) for s in streams]
    while iterators:
        for it in list(iterators):
            trial = next(it, None)
            if trial is None:
                iterators.remove(it)
            else:
                yield trial


def until(deadline: float | None, trials: Iterable[Trial]) -> Iterator[Trial]:
    """``trials`` until the wall-clock ``deadline`` (no new trial starts after it)."""
    for trial in trials:
        if deadline is not None and time.time() > deadline:
            print("search: the wall-clock budget is spent; no further search trials start", flush=True)
            return
        yield trial


def describe_outcome(trial: optuna.trial.FrozenTrial, metric: str) -> str:
    """``scale=12.5 margin=0.2 -> val_recall@1 81.25 %`` (or the state and reason of a trial that did not complete)."""
    outcome = (f"{metric} {format_metric(metric, trial.value, unit=True)}" if trial.state == TrialState.COMPLETE
               else f"{trial.state.name.lower()} {trial.user_attrs.get('error', '')}".rstrip())
    return f"{describe_params(trial.params)} -> {outcome}"


def describe_params(params: dict[str, Any]) -> str:
    """``scale=12.5 margin=0.2``: floats to four significant digits, as the live table prints them."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def open_streams(plans: list[SearchPlan], store: TrialStore, resume: bool) -> dict[str, ProposalStream]:
    """Each plan's study opened (or resumed) and its stream of the proposals still to run (a proposal
    already trained in ``store`` answered by its record), by the experiment name its trials carry."""
    streams: dict[str, ProposalStream] = {}
    for plan in plans:
        study = open_study(plan.folder, plan.name, plan.spec(), resume, plan.pruner)
        done = len(finished_trials(study))
        print(f"search {plan.name}: {done} of {plan.planned} trials done, {max(plan.planned - done, 0)} to run "
              f"(study {study_storage(plan.folder)})", flush=True)

        def tell(trial: optuna.trial.FrozenTrial, plan: SearchPlan = plan, study: optuna.Study = study) -> None:
            print(f"search {plan.name} trial {trial.number} ({len(finished_trials(study))} of {plan.planned} done): "
                  f"{describe_outcome(trial, plan.metric)}", flush=True)

        streams[plan.base.placement.experiment] = ProposalStream(study, plan, store, plan.planned - done, on_tell=tell)
    if len(streams) != len(plans):
        raise ValueError("the studies of one search need distinct experiment names")
    return streams


def run_searches(executor: Executor, store: TrialStore, plans: list[SearchPlan], *, resume: bool = False,
                 deadline: float | None = None) -> list[SearchOutcome]:
    """Run (or, with ``resume``, finish) every plan's search in one executor writing into ``store`` (the
    command's, the executor's too), their proposals interleaved
    (no new one starts after the wall-clock ``deadline``); write each study's outputs; then re-train
    every best configuration (each plan's ``final`` trials) in the same executor. Returns the outcomes
    in the plans' order, each with its final records."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    streams = open_streams(plans, store, resume)
    if any(stream.budget > 0 for stream in streams.values()):
        planned = sum(stream.budget * max(1, stream.base.spec.folds) for stream in streams.values())
        executor.run(SearchTrials(until(deadline, round_robin(streams.values())), streams, planned), resume=resume,
                     on_epoch=lambda trial, metrics: streams[trial.placement.experiment].on_epoch(trial, metrics),
                     on_record=lambda record: streams[record.placement.experiment].on_record(record))
    outcomes = [write_outputs(stream.study, stream.plan) for stream in streams.values()]
    finals = {plan.name: plan.final(outcome.best.params) if outcome.best else [] for plan, outcome in zip(plans, outcomes)}
    trials = [t for plan_trials in finals.values() for t in plan_trials]
    if trials:
        print(f"re-training the best configuration{'s' if len(plans) > 1 else ''}: {len(trials)} test trials",
              flush=True)
        records = {r.trial_id: r for r in executor.run(trials, resume=resume, on_record=announce_final(len(trials)))}
        for plan, outcome in zip(plans, outcomes):
            outcome.final = [records[t.trial_id] for t in finals[plan.name] if t.trial_id in records]
    return outcomes


def announce_final(total: int) -> Callable[[TrialRecord], None]:
    """Prints one line per re-trained trial as it ends."""
    done = iter(range(1, total + 1))
    return lambda r: print(f"[final] {r.spec.method} seed {r.spec.seed} ({next(done)}/{total}): {r.status}",
                           flush=True)
