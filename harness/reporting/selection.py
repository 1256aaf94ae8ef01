"""What a benchmark's choice of hyperparameters rests on, as plain data the report reads: each search's
re-measured top candidates and each extension's sensitivity points, their validation scores by seed.
Light on purpose (the statistics are imported when asked for), so that the benchmark's input is checked
before pandas or SciPy load."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _summary(values: dict[int, float]):
    from harness.reporting.stats import summarize  # pandas and SciPy: when a number is asked for

    return summarize(list(values.values()))


@dataclass
class Candidate:
    """One re-measured candidate of a search: its searched values and its validation score by seed."""

    params: dict[str, Any]
    values: dict[int, float]
    seeds: list[int]

    @property
    def complete(self) -> bool:
        return all(seed in self.values for seed in self.seeds)

    @property
    def mean(self) -> float:
        return _summary(self.values).mean

    @property
    def std(self) -> float:
        return _summary(self.values).std


@dataclass
class SensitivityPoint:
    """An extension's validation score by seed at one value of its main own hyperparameter."""

    value: Any
    values: dict[int, float]
