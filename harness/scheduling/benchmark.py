"""The fair comparison protocol as one resumable run (Musgrave et al., "A Metric Learning Reality Check",
ECCV 2020): the same search budget for every method on validation classes, the final seeds evaluated
once on the test classes, one report.

* The :class:`BenchmarkManifest` fixes the benchmark and is written before anything runs
  (``results/benchmarks/<name>/manifest.yaml``, and a frozen copy ``.manifest.started.yaml``);
  ``--resume`` with a manifest other than the frozen copy is refused, also one edited in place.
* Phase 1, search: each method has its own Optuna study (TPE; the studies share
  ``results/benchmarks/<name>/study.db``, openable with ``optuna-dashboard``) and exactly
  ``trials_per_method`` proposals; the proposals of the methods searched together go into one executor,
  interleaved. Each trial trains on the training classes minus the validation classes (``folds`` K: a
  class-disjoint K-fold cross-validation, the objective the mean over folds) and never loads a test image.
  The ``protocol`` says how a method that extends a baseline (:attr:`~harness.plugins.method.Method.baseline`,
  which must be in the benchmark too) is searched:

  - ``nested`` (the default): the baseline is searched (and re-measured) first; the extension inherits
    its chosen values and spends the same budget on its own hyperparameters only
    (:attr:`~harness.plugins.method.Method.own_hparams`), as regulariser papers tune the base first;
  - ``joint``: the extension searches its own and its base's hyperparameters together, with the same
    budget, alongside its baseline (Musgrave et al.'s equal budget over everything).
* Re-measurement: the ``remeasure_top`` best distinct candidates of each search are trained on
  ``remeasure_seeds`` validation seeds (the search's seed and the next ones; the search's own trial
  answers for its seed), and the best mean is chosen, not one seed's maximum; these trials count in
  each method's validation budget (the same for every method) and the report lists them.
* Sensitivity: each extension at its chosen values, its main own hyperparameter on
  ``sensitivity_points`` values of its space (and at 0 where that is its baseline), on the same seeds:
  validation only, no choice rests on it.
* Phase 2, final: each method's chosen configuration trained on all training classes with
  ``final_seeds`` seeds and evaluated once on the test classes, as ordinary records (``runs/<name>/``).
* Phase 3, report: :mod:`harness.reporting.benchmark_report`.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from optuna.trial import TrialState

import harness
from harness.core.hparams import Choice, Distribution, IntUniform, LogUniform, Uniform, parse_distribution
from harness.core.names import check_name
from harness.core.placement import Placement
from harness.core.settings_file import check_fields, read_mapping
from harness.core.record import TrialRecord
from harness.core.store import TrialStore, atomic_write_text
from harness.core.trial import Trial
from harness.experiment import (ExperimentConfig, TrainingSetup, check_folds, check_objective,
                                check_validation_split)
from harness.core.metrics import DEFAULT_OBJECTIVE, base_metric
from harness.plugins.method import get_method_class
from harness.reporting.selection import Candidate, SensitivityPoint
from harness.scheduling.search import SearchOutcome, SearchPlan, announce_final, run_searches, search_space

if TYPE_CHECKING:  # config --show reads the manifest's fields without torch
    from harness.scheduling.executors import Executor

MANIFEST_FILE = "manifest.yaml"
#: the manifest as the benchmark started, which ``--resume`` compares with (``manifest.yaml`` is the user's to read,
#: copy and pass back with ``--config``; editing it in place does not change what the benchmark ran)
FROZEN_MANIFEST_FILE = ".manifest.started.yaml"
#: each method's choice after the re-measurement (``methods/<method>/chosen.json``; ``best.json`` is the search's
#: one-seed best)
CHOSEN_FILE = "chosen.json"
#: how a method that extends a baseline is searched (see the module docstring)
PROTOCOLS = ("nested", "joint")


def format_distribution(dist: Distribution) -> str:
    """The text :func:`~harness.core.hparams.parse_distribution` reads back: ``loguniform(0.001,10.0)``."""
    if isinstance(dist, LogUniform):
        return f"loguniform({dist.low!r},{dist.high!r})"
    if isinstance(dist, Uniform):
        return f"uniform({dist.low!r},{dist.high!r})"
    if isinstance(dist, IntUniform):
        return f"randint({dist.low},{dist.high})"
    if isinstance(dist, Choice):
        return f"choice({','.join(str(o) for o in dist.options)})"
    raise TypeError(f"unsupported distribution {dist!r}")


@dataclass
class BenchmarkManifest(TrainingSetup):
    """Everything that fixes a benchmark's numbers (not where or how fast it runs); the training fields
    are :class:`~harness.experiment.TrainingSetup`'s."""

    name: str
    methods: list[str]
    dataset: str
    spaces: dict[str, dict[str, str]]
    trials_per_method: int
    final_seeds: int
    folds: int = 0
    pruner: str = "none"
    metric: str = DEFAULT_OBJECTIVE
    seed: int = 0
    baseline: str | None = None
    max_hours: float | None = None
    protocol: str = "nested"
    remeasure_top: int = 3
    remeasure_seeds: int = 3
    sensitivity_points: int = 5
    harness_version: str = harness.__version__

    def __post_init__(self) -> None:
        check_name("benchmark", self.name)
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"a benchmark needs distinct methods, got {self.methods}")
        if self.trials_per_method < 1 or self.final_seeds < 1:
            raise ValueError("--trials-per-method and --final-seeds must be at least 1")
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"--folds must be 0 (one validation split) or at least 2, got {self.folds}")
        if self.baseline is not None and self.baseline not in self.methods:
            raise ValueError(f"--baseline {self.baseline!r} is not among the methods {', '.join(self.methods)}")
        if base_metric(self.metric)[0] != "val":
            raise ValueError(f"the objective must be a validation metric val_<name>, got {self.metric!r}")
        if self.max_hours is not None and self.max_hours <= 0:
            raise ValueError(f"--max-hours must be > 0, got {self.max_hours}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if self.remeasure_top < 1 or self.remeasure_seeds < 1 or self.sensitivity_points in (1,) \
                or self.sensitivity_points < 0:
            raise ValueError("--remeasure-top and --remeasure-seeds must be at least 1, --sensitivity-points 0 "
                             "(none) or at least 2")
        self.check_extensions()

    def check_extensions(self) -> None:
        """Raise ``ValueError`` unless every extension's baseline is among the methods and, under ``nested``,
        the extension neither searches nor fixes a hyperparameter it inherits from its baseline."""
        absent = [f"{m} extends {self.baseline_of(m)}" for m in self.methods
                  if self.baseline_of(m) and self.baseline_of(m) not in self.methods]
        if absent:
            raise ValueError(f"benchmark {self.name!r} names extensions without their baselines ({'; '.join(absent)}): "
                             "add the baselines to its methods")
        if self.protocol != "nested":
            return
        for method in self.methods:
            inherited = sorted((set(self.spaces.get(method, {})) | set(self.hparams.get(method, {})))
                               & set(get_method_class(method).base_hparams()))
            if inherited:
                raise ValueError(f"{method}: {', '.join(inherited)} {'is' if len(inherited) == 1 else 'are'} "
                                 f"{self.baseline_of(method)}'s, which the nested protocol inherits from its search; "
                                 "search or fix them on the baseline, or use --protocol joint")

    @staticmethod
    def baseline_of(method: str) -> str | None:
        return get_method_class(method).baseline

    def inherits(self, method: str) -> bool:
        """Whether ``method`` takes its baseline's chosen values (an extension under ``nested``)."""
        return self.protocol == "nested" and self.baseline_of(method) is not None

    def stages(self) -> list[list[str]]:
        """The methods in the order their searches run: under ``nested`` an extension after its baseline
        (one stage per level), under ``joint`` all at once."""
        left, stages = list(self.methods), []
        while left:
            stage = [m for m in left if not self.inherits(m) or self.baseline_of(m) not in left]
            stages.append(stage)
            left = [m for m in left if m not in stage]
        return stages

    def validation_seeds(self) -> list[int]:
        """The seeds a candidate is re-measured on (the search's own first)."""
        return list(range(self.seed, self.seed + self.remeasure_seeds))

    @classmethod
    def from_yaml(cls, path: str | Path) -> "BenchmarkManifest":
        """The manifest in ``path``: every key a field, every value of its field's declared type
        (``methods: ms`` or ``trials_per_method: "2"`` raise ``ValueError`` naming the file and key)."""
        data = read_mapping(path, cls.__name__)
        check_fields(path, data, cls, cls.yaml_keys())
        return cls(**data)

    @classmethod
    def yaml_keys(cls) -> list[str]:
        """The keys a manifest may hold: every field."""
        return [f.name for f in fields(cls)]

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)

    def differences(self, other: "BenchmarkManifest") -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [f"  {k}: {theirs[k]!r} (stored) -> {mine[k]!r} (now)" for k in mine if mine[k] != theirs[k]]

    def space(self, method: str) -> dict[str, Distribution]:
        return {name: parse_distribution(text) for name, text in self.spaces[method].items()}

    def experiment(self, method: str, results_dir: str, **overrides: Any) -> ExperimentConfig:
        """The experiment of one method under this manifest (its search's or final trials)."""
        settings = {**self.training_setup(), "hparams": {method: dict(self.hparams.get(method, {}))},
                    "methods": [method], "dataset": self.dataset, "results_dir": results_dir}
        return ExperimentConfig(**{**settings, **overrides})


def declared_spaces(methods: list[str], overrides: dict[str, list[str]], protocol: str = "joint"
                    ) -> dict[str, dict[str, str]]:
    """Each method's search space as text: its declaration, or the ``--space METHOD.NAME=DIST`` given; under
    ``nested`` an extension's declaration is its own hyperparameters' only."""
    spaces = {}
    for m in methods:
        items = overrides.get(m, [])
        cls = get_method_class(m)
        if protocol == "nested" and cls.baseline and not items:
            items = [name for name in cls.own_hparams if cls.hparams[name].space is not None]
        spaces[m] = {name: format_distribution(d) for name, d in search_space(m, items).items()}
    return spaces


def with_baselines(methods: list[str]) -> tuple[list[str], list[str]]:
    """``methods`` with every extension's baseline added where it is missing, and one line per addition."""
    methods, added = list(methods), []
    for method in list(methods):
        base = get_method_class(method).baseline
        if base and base not in methods:
            methods.append(base)
            added.append(f"benchmark: {method} extends {base}; {base} is added to the methods")
    return methods, added


def sensitivity_values(method: str, space: dict[str, Any], points: int) -> list[Any]:
    """The values of ``method``'s main own hyperparameter its sensitivity view trains: ``points`` values
    spread over its space (the manifest's, else its declaration's; log-spaced on a log-uniform one), and 0
    first where 0 makes the method its baseline."""
    cls = get_method_class(method)
    name = cls.main_hparam()
    dist = parse_distribution(space[name]) if name in space else cls.hparams[name].space
    if dist is None or not points:
        return []
    if isinstance(dist, Choice):
        values: list[Any] = list(dist.options)
    elif isinstance(dist, LogUniform):
        values = [float(v) for v in np.geomspace(dist.low, dist.high, points)]
    elif isinstance(dist, IntUniform):
        values = sorted({int(round(v)) for v in np.linspace(dist.low, dist.high, points)})
    else:
        values = [float(v) for v in np.linspace(dist.low, dist.high, points)]
    return ([0.0] if cls.baseline_at_zero and 0.0 not in values else []) + values


def search_name(manifest: BenchmarkManifest, method: str) -> str:
    return f"{manifest.name}.{method}"


@dataclass
class PhaseOutcome:
    """What the search phase leaves for the report."""

    best: dict[str, dict[str, Any]]           # method -> the chosen candidate's searched hyperparameters
    histories: dict[str, list[float | None]]  # method -> the objective of each proposal, in order
    failures: dict[str, int]                  # method -> failed search proposals
    candidates: dict[str, list[Candidate]]    # method -> its re-measured top candidates, the chosen one first
    inherited: dict[str, dict[str, Any]]      # extension (nested) -> the baseline's values it trained with
    sensitivity: dict[str, list[SensitivityPoint]]  # extension -> its main own hyperparameter's sweep

    @classmethod
    def empty(cls) -> "PhaseOutcome":
        return cls(best={}, histories={}, failures={}, candidates={}, inherited={}, sensitivity={})

    def add_search(self, method: str, outcome: SearchOutcome) -> None:
        self.histories[method] = [t.value if t.state == TrialState.COMPLETE else None for t in outcome.finished]
        self.failures[method] = sum(t.state == TrialState.FAIL for t in outcome.finished)


def top_candidates(outcome: SearchOutcome, k: int) -> list[dict[str, Any]]:
    """The searched values of the ``k`` best completed proposals with distinct values, best first."""
    complete = sorted((t for t in outcome.study.trials if t.state == TrialState.COMPLETE and t.value is not None
                       and math.isfinite(t.value)), key=lambda t: -t.value)
    chosen: list[dict[str, Any]] = []
    for trial in complete:
        if trial.params not in chosen:
            chosen.append(dict(trial.params))
    return chosen[:k]


def seed_scores(records: list[TrialRecord], metric: str) -> dict[int, float]:
    """seed -> the validation score (the mean over folds) of one configuration's records; a seed with a
    failed or missing fold is left out."""
    by_seed: dict[int, list[float | None]] = {}
    for r in records:
        value = r.metrics.get(metric) if r.ok else None
        by_seed.setdefault(r.spec.seed, []).append(value if value is not None and math.isfinite(value) else None)
    folds = max((r.spec.folds for r in records), default=0)
    return {seed: sum(v) / len(v) for seed, v in by_seed.items()
            if None not in v and len(v) == max(folds, 1)}


class Benchmark:
    """Runs a manifest's three phases on one executor; every phase resumes from what the store holds."""

    def __init__(self, manifest: BenchmarkManifest, store: TrialStore, device: str = Placement.device,
                 num_workers: int = Placement.num_workers):
        self.manifest = manifest
        self.store = store
        self.folder = store.benchmark_dir(manifest.name)
        self.device = device
        self.num_workers = num_workers

    def write_manifest(self, resume: bool) -> None:
        """Write the manifest and its frozen copy, or (``resume``) check it against the frozen copy (what the
        benchmark ran, whatever was edited in ``manifest.yaml`` since); refuse a mismatch."""
        path, frozen = self.folder / MANIFEST_FILE, self.folder / FROZEN_MANIFEST_FILE
        if path.exists() or frozen.exists():
            if not resume:
                raise ValueError(f"{self.folder} already holds benchmark {self.manifest.name!r}: pass --resume "
                                 "to continue it, or --name for a new one")
            started = frozen if frozen.exists() else path  # (a benchmark from before the frozen copy)
            diff = self.manifest.differences(BenchmarkManifest.from_yaml(started))
            if diff:
                raise ValueError(f"benchmark {self.manifest.name!r} was started with a different manifest ({started}); "
                                 "--resume needs the same one:\n" + "\n".join(diff))
            return
        atomic_write_text(frozen, self.manifest.to_yaml())
        atomic_write_text(path, self.manifest.to_yaml())

    def check(self) -> None:
        """Every input checked before any trial: the objective, the folds, names, spaces, the validation split,
        writability."""
        m = self.manifest
        first = m.experiment(m.methods[0], str(self.store.root))
        check_objective(first, m.metric)
        if m.folds:
            check_folds(first, m.folds)
        for method in m.methods:
            experiment = m.experiment(method, str(self.store.root))
            experiment.trials()  # validates names, hyperparameters, recipe, dataset folder
            self.search_trial(method, {})  # and the search trials' batches on the validation split
            fixed = set(m.hparams.get(method, {})) & set(m.spaces[method])
            if fixed:
                raise ValueError(f"{method}: {', '.join(sorted(fixed))} both fixed and searched")
            m.space(method)
        if not m.folds:
            check_validation_split(first)
        self.store.check_writable()

    def search_trial(self, method: str, params: dict[str, Any]) -> Trial:
        """The search trial of ``method`` at the searched ``params`` (resolved afresh: a default that depends
        on a searched value follows it), with the manifest's seed and, with folds, on fold 0."""
        m = self.manifest
        experiment = m.experiment(method, str(self.store.root), eval_split="val", role="search",
                                  experiment=search_name(m, method), save_model=False, device=self.device,
                                  num_workers=self.num_workers, seeds=[m.seed])
        trial = experiment.with_hparams(method, params).trials()[0]
        return trial.with_spec(folds=m.folds, fold=0 if m.folds else None)

    def plan(self, method: str, inherited: dict[str, Any] | None = None) -> SearchPlan:
        """The search of one method at the ``inherited`` values (its baseline's choice, under ``nested``): its
        study in the benchmark's ``study.db`` and its outputs in ``methods/<method>/`` (its final trials come
        after the re-measurement, :meth:`run`)."""
        m = self.manifest
        return SearchPlan(name=method, folder=self.folder, outputs=self.folder / "methods" / method,
                          propose=lambda params: self.search_trial(method, {**(inherited or {}), **params}),
                          space=m.space(method), metric=m.metric, planned=m.trials_per_method, seed=m.seed,
                          pruner=m.pruner)

    def inherited(self, method: str, phase: PhaseOutcome) -> dict[str, Any]:
        """The values ``method`` takes from its baseline's choice under ``nested`` (none otherwise)."""
        m = self.manifest
        if not m.inherits(method):
            return {}
        base = m.baseline_of(method)
        chosen = {**m.hparams.get(base, {}), **phase.best.get(base, {})}
        return {k: v for k, v in chosen.items() if k in get_method_class(method).base_hparams()}

    def validation_trials(self, plan: SearchPlan, params: dict[str, Any]) -> list[Trial]:
        """``params`` on every re-measurement seed (and fold), proposed as the search proposes them (so that
        the search's own seed is its very trial)."""
        trial = plan.propose(params)
        folds = trial.spec.folds
        return [trial.with_spec(seed=seed, fold=k) if folds else trial.with_spec(seed=seed)
                for seed in self.manifest.validation_seeds() for k in range(max(folds, 1))]

    def measure(self, executor: Executor, configurations: list[tuple[str, SearchPlan, dict[str, Any]]],
                resume: bool) -> list[dict[int, float]]:
        """Each (label, plan, params) on the re-measurement seeds, in one executor call; a trial already
        recorded (the search's own, or one a resumed benchmark finished) answers from its record. The scores
        by seed of each configuration."""
        trials = [self.validation_trials(plan, params) for _, plan, params in configurations]
        unique = {t.trial_id: t for ts in trials for t in ts}
        known = {i: r for i, t in unique.items() if (r := self.store.read_record(t)) is not None and r.ok}
        todo = [t for i, t in unique.items() if i not in known]
        if not unique:
            return []
        print(f"benchmark {self.manifest.name}: {', '.join(dict.fromkeys(c[0] for c in configurations))}: "
              f"{len(unique)} validation trials, {len(known)} of them already recorded", flush=True)
        records = {**known, **{r.trial_id: r for r in (executor.run(todo, resume=resume) if todo else [])}}
        metric = base_metric(self.manifest.metric)[1]
        return [seed_scores([records[t.trial_id] for t in ts if t.trial_id in records], metric) for ts in trials]

    def remeasure(self, executor: Executor, plans: dict[str, SearchPlan], outcomes: dict[str, SearchOutcome],
                  phase: PhaseOutcome, resume: bool) -> None:
        """Every plan's top candidates on the re-measurement seeds; the best complete mean is chosen."""
        m = self.manifest
        configurations = [(f"re-measuring {method}'s top {m.remeasure_top}", plans[method], params)
                          for method in plans for params in top_candidates(outcomes[method], m.remeasure_top)]
        scores = self.measure(executor, configurations, resume)
        for (_, plan, params), by_seed in zip(configurations, scores):
            phase.candidates.setdefault(plan.name, []).append(Candidate(params=params, values=by_seed,
                                                                        seeds=m.validation_seeds()))
        for method in plans:
            ranked = sorted(phase.candidates.get(method, []),
                            key=lambda c: (not c.complete, -c.mean if math.isfinite(c.mean) else math.inf))
            phase.candidates[method] = ranked
            if ranked:
                phase.best[method] = dict(ranked[0].params)
                atomic_write_text(plans[method].outputs / CHOSEN_FILE, json.dumps({
                    "method": method, "protocol": m.protocol, "metric": m.metric, "params": ranked[0].params,
                    "inherited": phase.inherited.get(method, {}), "seeds": m.validation_seeds(),
                    "hparams": plans[method].propose(ranked[0].params).spec.hparams,
                    "candidates": [{"params": c.params, "values": c.values, "mean": c.mean, "std": c.std}
                                   for c in ranked]}, indent=2, sort_keys=True, default=str) + "\n")

    def sensitivity(self, executor: Executor, plans: dict[str, SearchPlan], phase: PhaseOutcome, resume: bool
                    ) -> None:
        """Each extension's main own hyperparameter swept at its chosen values (validation only)."""
        m = self.manifest
        configurations, points = [], []
        for method, plan in plans.items():
            cls = get_method_class(method)
            if not cls.baseline or method not in phase.best:
                continue
            for value in sensitivity_values(method, m.spaces.get(method, {}), m.sensitivity_points):
                configurations.append((f"sensitivity of {method}", plan, {**phase.best[method], cls.main_hparam(): value}))
                points.append((method, value))
        for (method, value), by_seed in zip(points, self.measure(executor, configurations, resume)):
            phase.sensitivity.setdefault(method, []).append(SensitivityPoint(value=value, values=by_seed))

    def final_trials(self, method: str, params: dict[str, Any]) -> list[Trial]:
        """The final seeds of ``method`` at its chosen ``params`` (inherited ones included), on the test classes."""
        m = self.manifest
        experiment = m.experiment(method, str(self.store.root), seeds=list(range(m.final_seeds)), experiment=m.name,
                                  device=self.device, num_workers=self.num_workers)
        return experiment.with_hparams(method, params).trials()

    def run(self, executor: Executor, resume: bool) -> tuple[PhaseOutcome, list[TrialRecord]]:
        """Phases 1 and 2 in one executor (the shared search driver): the searches stage by stage
        (:meth:`BenchmarkManifest.stages`, interleaved within one), each stage's top candidates re-measured
        before the next inherits from them, the extensions' sensitivity sweeps, then every chosen
        configuration's final seeds; the search's outcome and the final records."""
        m = self.manifest
        stages = m.stages()
        print(f"benchmark {m.name}, phase 1 (search, protocol {m.protocol}): {len(m.methods)} methods × "
              f"{m.trials_per_method} trials in {len(stages)} stage(s) ({' then '.join(', '.join(s) for s in stages)}); "
              f"the top {m.remeasure_top} of each re-measured on {m.remeasure_seeds} seeds; phase 2 (final): "
              f"the chosen one of each with {m.final_seeds} seeds", flush=True)
        deadline = time.time() + 3600 * m.max_hours if m.max_hours else None
        phase, plans = PhaseOutcome.empty(), {}
        for stage in stages:
            for method in stage:
                if m.inherits(method):
                    phase.inherited[method] = self.inherited(method, phase)
                plans[method] = self.plan(method, phase.inherited.get(method))
            outcomes = run_searches(executor, self.store, [plans[method] for method in stage], resume=resume,
                                    deadline=deadline)
            for method, outcome in zip(stage, outcomes):
                phase.add_search(method, outcome)
            self.remeasure(executor, {method: plans[method] for method in stage}, dict(zip(stage, outcomes)), phase,
                           resume)
        self.sensitivity(executor, plans, phase, resume)
        missing = [method for method in m.methods if method not in phase.best]
        if missing:
            print(f"benchmark {m.name}: no completed search trial for {', '.join(missing)}", flush=True)
        finals = [t for method in m.methods if method in phase.best
                  for t in self.final_trials(method, {**phase.inherited.get(method, {}), **phase.best[method]})]
        print(f"benchmark {m.name}, phase 2 (final): {len(finals)} test trials", flush=True)
        records = executor.run(finals, resume=resume, on_record=announce_final(len(finals))) if finals else []
        return phase, records
