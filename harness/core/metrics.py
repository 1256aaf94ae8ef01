"""Metrics by name: what each one is called in tables, where it sorts, whether it is shown in percent,
and (for the optional ones) how it is computed.

The evaluation (:mod:`harness.engine.evaluate`) computes the retrieval metrics every trial records,
``recall@K``, ``map@r``, ``r_precision`` and ``nmi``, in one pass over the nearest neighbours; they
are declared here so that the reporting layer, which reads records only, orders, labels and scales
them. An optional metric (``utilization``, or a plugin's) is one function registered with
``@register_metric("name", label=..., percent=...)``: it receives the trial's
:class:`EvaluationInputs` and returns a number; a trial computes it when asked
(``--extra-metrics name``). A metric nobody declared in this process sorts last, under its own
name, in percent.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from harness.core.registry import Registry

#: the prefixes of the validation and test copies of a metric (``val_recall@1``, ``test_map@r``)
SPLIT_PREFIXES = {"val": "val_", "test": "test_"}


@dataclass(frozen=True)
class EvaluationInputs:
    """What an optional metric is computed from: the query embeddings and labels (``(n, d)`` tensors
    and ``(n,)`` integer labels), the gallery's (None in leave-one-out evaluation), and
    ``train_embeddings()``, which embeds the trial's training split (once, on first call)."""

    query: Any
    query_labels: Any
    gallery: Any
    gallery_labels: Any
    train_embeddings: Callable[[], Any]


MetricFunction = Callable[[EvaluationInputs], float]


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name in records, its table label, its rank among the columns, whether its values
    are fractions shown in percent, and its function (None: computed by the evaluation itself)."""

    name: str
    label: str
    rank: int
    percent: bool = True
    compute: MetricFunction | None = None

    @property
    def optional(self) -> bool:
        return self.compute is not None


METRICS: Registry[MetricSpec] = Registry("metric", entry_point_group="harness.metrics", names_are_paths=False)
#: rank of the first optional metric: after every metric the evaluation computes
OPTIONAL_RANK = 10


def register_metric(name: str, label: str | None = None, percent: bool = True,
                    rank: int = OPTIONAL_RANK) -> Callable[[MetricFunction], MetricFunction]:
    """Decorator: ``@register_metric("spread", label="Spread", percent=False)`` registers an optional
    metric computed by the decorated function from a trial's :class:`EvaluationInputs`."""

    def decorator(function: MetricFunction) -> MetricFunction:
        METRICS.register(name)(MetricSpec(name, label or name, rank, percent, function))
        return function

    return decorator


for _spec in (MetricSpec("recall@K", "R@K", 0), MetricSpec("map@r", "MAP@R", 1),
              MetricSpec("r_precision", "R-Precision", 2), MetricSpec("nmi", "NMI", 3)):
    METRICS.register(_spec.name)(_spec)

#: the metrics every evaluation reports besides ``recall@K`` (NMI on the test split only)
EVALUATION_METRICS = ("map@r", "r_precision", "nmi")


def evaluation_version(name: str) -> tuple[str, str | None]:
    """``nmi[1a2b]`` → ``("nmi", "1a2b")``: a metric and the evaluation version a board's column of it
    holds, where the board's records were scored by several (:mod:`harness.reporting.tables`);
    ``("nmi", None)`` for a plain name."""
    found = re.fullmatch(r"(.+)\[([^\[\]]+)\]", name)
    return (found.group(1), found.group(2)) if found else (name, None)


def declared_metric(name: str) -> MetricSpec | None:
    """The declaration of ``name`` (``recall@4`` is ``recall@K``'s, ``nmi[1a2b]`` is ``nmi``'s), None for a
    name no metric declares (a training statistic such as ``loss``, or a metric of a plugin not loaded in
    this process)."""
    name = evaluation_version(name)[0]
    if re.fullmatch(r"recall@\d+", name):
        return METRICS.get("recall@K")
    return METRICS.get(name) if name in METRICS else None


def metric_spec(name: str) -> MetricSpec:
    """The declaration of ``name`` (:func:`declared_metric`); an undeclared metric gets a default one: last,
    under its own name, in percent."""
    return declared_metric(name) or MetricSpec(name, name, OPTIONAL_RANK + 1)


def metric_sort_key(name: str) -> tuple:
    """Columns in the literature's order: Recall@K by K, MAP@R, R-Precision, NMI, then the optional ones."""
    spec = metric_spec(name)
    tail = evaluation_version(name)[0].removeprefix("recall@")
    return (spec.rank, int(tail) if tail.isdigit() else 0, name)


def metric_label(name: str) -> str:
    """The papers' column header: ``recall@4`` → ``R@4``, ``map@r`` → ``MAP@R``, ``nmi[1a2b]`` → ``NMI [1a2b]``."""
    plain, version = evaluation_version(name)
    label = ("R@" + plain.removeprefix("recall@")) if re.fullmatch(r"recall@\d+", plain) else metric_spec(plain).label
    return label + (f" [{version}]" if version else "")


def format_metric(name: str, value: float, unit: bool = False) -> str:
    """A metric's value as every table and printout shows it: in percent with two decimals where its
    declaration says so (``recall@1``, ``val_recall@1``: 0.8112 → ``81.12``), else as is with four
    (``utilization``); ``unit`` appends `` %`` to a percent value. Not a number: ``nan``."""
    if value is None or math.isnan(value):
        return "nan"
    if metric_scale(name) == 100:
        return f"{100 * value:.2f}" + (" %" if unit else "")
    return f"{value:.4f}"


def metric_scale(name: str) -> float:
    """What a recorded value of ``name`` (or ``val_name``) is multiplied by to be shown: 100 for a metric
    declared in percent, else 1 (figures' axes as :func:`format_metric`'s text)."""
    return 100.0 if metric_spec(base_metric(name)[1]).percent else 1.0


def optional_metric_names() -> list[str]:
    """The registered metrics a trial computes only when asked."""
    return [name for name in METRICS.names() if METRICS.get(name).optional]


def split_metric(split: str, name: str) -> str:
    """``split_metric("val", "recall@1")`` → ``val_recall@1``: a metric as measured on a split."""
    return SPLIT_PREFIXES[split] + name


def base_metric(name: str) -> tuple[str | None, str]:
    """``val_recall@1`` → ``("val", "recall@1")``; a name with no split prefix → ``(None, name)``."""
    for split, prefix in SPLIT_PREFIXES.items():
        if name.startswith(prefix):
            return split, name.removeprefix(prefix)
    return None, name


#: the objective of a search unless one is given: Recall@1 on the validation classes
DEFAULT_OBJECTIVE = split_metric("val", "recall@1")
