"""The fair comparison protocol as one resumable run (Musgrave et al., "A Metric Learning Reality Check",
ECCV 2020): the same search budget for every method on validation classes, the final seeds evaluated
once on the test classes, one report.

* The :class:`BenchmarkManifest` fixes the benchmark and is written before anything runs
  (``results/benchmarks/<name>/manifest.yaml``, and a frozen copy ``.manifest.started.yaml``);
  ``--resume`` with a manifest other than the frozen copy is refused, also one edited in place.
* Phase 1, search: each method has its own Optuna study (TPE; the studies share
  ``results/benchmarks/<name>/study.db``, openable with ``optuna-dashboard``) and exactly
  ``trials_per_method`` proposals; every method's proposals go into one executor, interleaved. Each
  trial trains on the training classes minus the validation classes (``folds`` K: a class-disjoint
  K-fold cross-validation, the objective the mean over folds) and never loads a test image.
* Phase 2, final: each method's best configuration trained on all training classes with
  ``final_seeds`` seeds and evaluated once on the test classes, as ordinary records (``runs/<name>/``).
* Phase 3, report: :mod:`harness.reporting.benchmark_report`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from harness.scheduling.search import SearchOutcome, SearchPlan, run_searches, search_space

if TYPE_CHECKING:  # config --show reads the manifest's fields without torch
    from harness.scheduling.executors import Executor

MANIFEST_FILE = "manifest.yaml"
#: the manifest as the benchmark started, which ``--resume`` compares with (``manifest.yaml`` is the user's to read,
#: copy and pass back with ``--config``; editing it in place does not change what the benchmark ran)
FROZEN_MANIFEST_FILE = ".manifest.started.yaml"


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


def declared_spaces(methods: list[str], overrides: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """Each method's search space as text: its declaration, or the ``--space METHOD.NAME=DIST`` given."""
    return {m: {name: format_distribution(d) for name, d in search_space(m, overrides.get(m, [])).items()}
            for m in methods}


def search_name(manifest: BenchmarkManifest, method: str) -> str:
    return f"{manifest.name}.{method}"


@dataclass
class PhaseOutcome:
    """What the search phase leaves for the report."""

    best: dict[str, dict[str, Any]]           # method -> the best trial's searched hyperparameters
    best_value: dict[str, float]              # method -> its validation score
    histories: dict[str, list[float | None]]  # method -> the objective of each proposal, in order
    failures: dict[str, int]                  # method -> failed search proposals

    @classmethod
    def of(cls, outcomes: dict[str, SearchOutcome]) -> "PhaseOutcome":
        phase = cls(best={}, best_value={}, histories={}, failures={})
        for method, outcome in outcomes.items():
            phase.histories[method] = [t.value if t.state == TrialState.COMPLETE else None for t in outcome.finished]
            phase.failures[method] = sum(t.state == TrialState.FAIL for t in outcome.finished)
            if outcome.best is not None:
                phase.best[method] = dict(outcome.best.params)
                phase.best_value[method] = outcome.best.value
        return phase


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

    def plan(self, method: str) -> SearchPlan:
        """The search of one method: its study in the benchmark's ``study.db``, its outputs in
        ``methods/<method>/``, and its final trials."""
        m = self.manifest
        return SearchPlan(name=method, folder=self.folder, outputs=self.folder / "methods" / method,
                          propose=lambda params: self.search_trial(method, params), space=m.space(method),
                          metric=m.metric,
                          planned=m.trials_per_method, seed=m.seed, pruner=m.pruner,
                          final=lambda params: self.final_trials(method, params))

    def final_trials(self, method: str, params: dict[str, Any]) -> list[Trial]:
        """The final seeds of ``method`` at its searched ``params``, evaluated on the test classes."""
        m = self.manifest
        experiment = m.experiment(method, str(self.store.root), seeds=list(range(m.final_seeds)), experiment=m.name,
                                  device=self.device, num_workers=self.num_workers)
        return experiment.with_hparams(method, params).trials()

    def run(self, executor: Executor, resume: bool) -> tuple[PhaseOutcome, list[TrialRecord]]:
        """Phases 1 and 2 in one executor (the shared search driver): every method's search, interleaved,
        then every best configuration's final seeds; the search's outcome and the final records."""
        m = self.manifest
        print(f"benchmark {m.name}, phase 1 (search): {len(m.methods)} methods × {m.trials_per_method} trials, "
              f"interleaved; phase 2 (final): the best of each with {m.final_seeds} seeds", flush=True)
        deadline = time.time() + 3600 * m.max_hours if m.max_hours else None
        outcomes = run_searches(executor, self.store, [self.plan(method) for method in m.methods], resume=resume,
                                deadline=deadline)
        phase = PhaseOutcome.of(dict(zip(m.methods, outcomes)))
        missing = [method for method in m.methods if method not in phase.best]
        if missing:
            print(f"benchmark {m.name}: no completed search trial for {', '.join(missing)}", flush=True)
        return phase, [r for outcome in outcomes for r in outcome.final]
