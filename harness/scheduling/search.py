"""Hyperparameter search: Optuna's TPE proposes, any executor trains, the study persists in SQLite.

The space is the method's own declaration (every :class:`~harness.core.hparams.Param` with a ``space``),
or only the parameters named with ``--space NAME[=DISTRIBUTION]``. Each proposal is an ordinary
trial on the validation classes (``eval_split="val"``, ``role="search"``: trained on the training
classes minus the validation ones) whose objective is a validation metric. The harness owns Optuna's
ask/tell: :func:`run_search` hands an executor (local or Ray) a lazy stream of proposals, asks for the
next one whenever the executor has room, reports each epoch's validation metric to the study and
prunes through Optuna's pruner (``asha``: its successive-halving pruner), and tells the study each
record as it arrives. The study in ``results/searches/<name>/study.db`` is the single truth: a search
killed part-way and resumed counts what the study holds, re-proposes the trials that were running, and
asks only for the rest. Afterwards the best configuration is re-trained with ``final_seeds`` seeds on
all training classes as ordinary test-split trials (leaderboard records).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from harness.core.config import TrialConfig
from harness.core.hparams import Choice, Distribution, IntUniform, LogUniform, Uniform, parse_distribution
from harness.core.record import TrialRecord
from harness.core.store import TrialStore, atomic_write_text
from harness.plugins.method import get_method_class
from harness.scheduling.executors import Executor

STUDY_FILE = "study.db"
#: the study's user attribute listing the trial numbers a killed search left running
INTERRUPTED = "interrupted"


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
#: the ``--scheduler`` values of ``search`` and ``benchmark`` (Ray Tune's names): fifo runs every trial to its end
SCHEDULERS = ("fifo", "asha")


def pruner_of(scheduler: str) -> str:
    """The Optuna pruner that a ``--scheduler`` value stands for."""
    return {"fifo": "none", "asha": "asha"}[scheduler]


def make_pruner(kind: str) -> optuna.pruners.BasePruner:
    """``asha``: Optuna's successive-halving pruner (asynchronous, as ASHA) on the per-epoch metric."""
    if kind == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {kind!r}; valid: {', '.join(PRUNERS)}")


def open_study(folder: Path, name: str, spec: dict[str, Any], resume: bool, seed: int, planned: int,
               pruner: str = "none") -> optuna.Study:
    """The search's study in ``folder/study.db``: new, or (``resume``) the one there, whose trials a killed
    search left running are marked failed, listed as interrupted and enqueued again.

    TPE is seeded with ``seed`` plus the number of trials already in the study, so a resumed search
    does not draw its first search's random start-up points again.
    """
    folder.mkdir(parents=True, exist_ok=True)
    storage = study_storage(folder)
    exists = name in optuna.study.get_all_study_names(storage)
    if exists and not resume:
        raise ValueError(f"{folder} already holds search {name!r}: pass --resume to continue it, "
                         "or --name for a new one")
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=make_pruner(pruner))
    if not exists:
        study.set_user_attr("spec", spec)
    elif study.user_attrs.get("spec") != spec:
        raise ValueError(f"search {name!r} was started with a different setup; --resume needs the same one\n"
                         f"  stored: {study.user_attrs.get('spec')}\n  now:    {spec}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # constant_liar in Optuna 4
        study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), constant_liar=True,
                                                   n_startup_trials=max(2, min(10, planned // 3)))
    stale = [t for t in study.trials if t.state == TrialState.RUNNING]
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params)
    if stale:
        study.set_user_attr(INTERRUPTED, sorted(study.user_attrs.get(INTERRUPTED, []) + [t.number for t in stale]))
    return study


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards the planned number: completed, pruned, or failed by themselves."""
    interrupted = set(study.user_attrs.get(INTERRUPTED, []))
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and t.number not in interrupted)]


@dataclass
class SearchOutcome:
    """The best completed trial (None when none completed), its full hyperparameters, the files written."""

    best: optuna.trial.FrozenTrial | None
    hparams: dict[str, Any]
    files: list[Path]


def trials_table(study: optuna.Study, metric: str):
    """One row per trial: number, state, its parameters, the validation metric, trial id and error."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "duration"))
    return frame.rename(columns=lambda c: metric if c == "value" else
                        c.removeprefix("params_").removeprefix("user_attrs_"))


def search_plots(study: optuna.Study, folder: Path, space: dict[str, Distribution], metric: str) -> list[Path]:
    """Optuna's matplotlib figures: optimisation history, importances, contour of the two most important
    parameters and a scatter per parameter; a figure Optuna cannot draw yet is skipped with a note."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as vis

    params = sorted(space)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ranked = list(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError):
        ranked = params
    figures: dict[str, Callable[[], Any]] = {
        "history": lambda: vis.plot_optimization_history(study, target_name=metric),
        "importances": lambda: vis.plot_param_importances(study, target_name=metric),
        "contour": lambda: vis.plot_contour(study, params=ranked[:2], target_name=metric),
        "scatter": lambda: vis.plot_slice(study, params=params, target_name=metric),
    }
    if len(params) < 2:
        figures = {k: v for k, v in figures.items() if k not in ("importances", "contour")}
    with matplotlib.rc_context():  # Optuna's figures set the ggplot style globally: undo it afterwards
        return _draw(figures, folder)


def _draw(figures: dict[str, Callable[[], Any]], folder: Path) -> list[Path]:
    from matplotlib import pyplot as plt

    written = []
    for name, draw in figures.items():
        path = folder / f"{name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw()
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            figure.savefig(path, dpi=120, bbox_inches="tight")
            written.append(path)
        except (RuntimeError, ValueError, ZeroDivisionError) as error:
            print(f"skipped the {name} plot: {error}")
        finally:
            plt.close("all")
    return written


def write_outputs(study: optuna.Study, folder: Path, space: dict[str, Distribution], base: TrialConfig,
                  metric: str) -> SearchOutcome:
    """``trials.csv``, the plots and ``best.json``: the completed trial with the highest metric (if any)."""
    atomic_write_text(folder / "trials.csv", trials_table(study, metric).to_csv(index=False))
    files = [folder / "trials.csv", *search_plots(study, folder, space, metric)]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE and t.value is not None
                and math.isfinite(t.value)]
    if not complete:
        return SearchOutcome(best=None, hparams={}, files=files)
    best = max(complete, key=lambda t: t.value)
    hparams = {**base.hparams, **best.params}
    atomic_write_text(folder / "best.json", json.dumps({
        "metric": metric, "value": best.value, "trial_number": best.number,
        "trial_id": best.user_attrs.get("trial_id"), "params": best.params, "hparams": hparams,
        "method": base.method, "dataset": base.dataset, "n_trials": len(finished_trials(study)),
        "n_complete": len(complete), "space": describe_space(space), "study": study.study_name,
        "storage": study_storage(folder),
    }, indent=2, sort_keys=True, default=str) + "\n")
    return SearchOutcome(best=best, hparams=hparams, files=[*files, folder / "best.json"])


class ProposalStream:
    """The executor's side of a search: a lazy stream of trials asked from the study, and the callbacks
    that report epochs to it (for pruning) and tell it each outcome.

    With ``base.folds`` = K each proposal is K trials, one per fold of a class-disjoint cross-validation
    over the training classes; the study is told the mean of the K validation scores once all K
    records are in (failed if any fold failed; trials are not pruned then).
    """

    def __init__(self, study: optuna.Study, space: dict[str, Distribution], base: TrialConfig, metric: str,
                 budget: int, on_tell: Callable[[optuna.trial.FrozenTrial], None] = lambda t: None):
        self.study = study
        self.distributions = {name: optuna_distribution(d) for name, d in space.items()}
        self.base = base
        self.metric = metric
        self.budget = budget
        self.on_tell = on_tell
        self.live: dict[str, list[optuna.Trial]] = {}  # trial id -> the proposals waiting for its record
        self.scores: dict[int, dict[int, TrialRecord]] = {}  # proposal number -> its folds' records

    def trials_of(self, params: dict[str, Any]) -> list[TrialConfig]:
        trial = replace(self.base, hparams={**self.base.hparams, **params})
        return [replace(trial, fold=k) for k in range(trial.folds)] if trial.folds else [trial]

    def __iter__(self) -> Iterator[TrialConfig]:
        store = TrialStore(self.base.results_dir)
        while self.budget > 0:
            self.budget -= 1
            proposal = self.study.ask(self.distributions)
            trials = self.trials_of(proposal.params)
            proposal.set_user_attr("trial_id", trials[0].trial_id)
            self.scores[proposal.number] = {}
            for trial in trials:
                waiting = self.live.setdefault(trial.trial_id, [])
                waiting.append(proposal)
                if len(waiting) > 1:  # the same configuration is already running: share its outcome
                    continue
                finished = store.read_record(trial)
                if finished is not None and finished.ok:  # proposed before and trained: its record answers
                    self.on_record(finished)
                    continue
                yield trial

    def on_epoch(self, trial: TrialConfig, metrics: dict[str, Any]) -> bool:
        proposals = self.live.get(trial.trial_id)
        if not proposals or self.metric not in metrics or trial.folds:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a trial restarted from scratch reports an epoch again
            proposals[0].report(float(metrics[self.metric]), step=int(metrics["epoch"]))
        return proposals[0].should_prune()

    def on_record(self, record: TrialRecord) -> None:
        for proposal in self.live.pop(record.trial_id, []):
            folds = self.scores[proposal.number]
            folds[record.config.fold or 0] = record
            if len(folds) == max(1, self.base.folds):
                self._tell(proposal, list(folds.values()))

    def _tell(self, proposal: optuna.Trial, records: list[TrialRecord]) -> None:
        values = [r.metrics.get(self.metric.removeprefix("val_")) if r.ok else None for r in records]
        if any(r.status == "pruned" for r in records):
            state, value, reason = TrialState.PRUNED, None, ""
        elif any(v is None or not math.isfinite(v) for v in values):
            failed = next(r for r, v in zip(records, values) if v is None or not math.isfinite(v))
            state, value, reason = TrialState.FAIL, None, failed.error or f"the trial reported no {self.metric!r}"
        else:
            state, value, reason = TrialState.COMPLETE, sum(values) / len(values), ""
            if len(values) > 1:
                proposal.set_user_attr("fold_values", values)
        if reason:
            proposal.set_user_attr("error", reason)
        del self.scores[proposal.number]
        self.on_tell(self.study.tell(proposal, value, state=state))


def run_search(executor: Executor, base: TrialConfig, space: dict[str, Distribution], *, name: str,
               metric: str, planned: int, seed: int, pruner: str = "none", resume: bool = False) -> SearchOutcome:
    """Run (or, with ``resume``, finish) a search of ``planned`` trials of ``base`` over ``space`` on any
    executor; write its outputs to the search folder and return the best. ``base`` must be a search
    trial (``role="search"``, ``eval_split="val"``, ``experiment`` = the search's name)."""
    if base.role != "search" or base.eval_split != "val" or base.experiment != name:
        raise ValueError("a search trial has role 'search', eval_split 'val' and the search's name as experiment")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = TrialStore(base.results_dir).search_dir(name)
    spec = {"method": base.method, "dataset": base.dataset, "metric": metric, "space": describe_space(space),
            "base_trial": base.trial_id, "seed": seed, "pruner": pruner}
    study = open_study(folder, name, spec, resume, seed, planned, pruner)
    done = len(finished_trials(study))
    budget = planned - done
    print(f"search {name}: {done} of {planned} trials done, {max(budget, 0)} to run "
          f"(study {study_storage(folder)})", flush=True)

    def tell(trial: optuna.trial.FrozenTrial) -> None:
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        outcome = (f"{metric} {trial.value:.4f}" if trial.state == TrialState.COMPLETE
                   else f"{trial.state.name.lower()} {trial.user_attrs.get('error', '')}".rstrip())
        print(f"search trial {len(finished_trials(study))}/{planned}: {params} -> {outcome}", flush=True)

    if budget > 0:
        stream = ProposalStream(study, space, base, metric, budget, on_tell=tell)
        executor.run(stream, resume=resume, on_epoch=stream.on_epoch, on_record=stream.on_record)
    return write_outputs(study, folder, space, base, metric)
