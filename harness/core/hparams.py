"""Hyperparameter declarations: a default plus a search distribution, as plain data.

A method declares ``hparams = {"alpha": Param(1.0, LogUniform(1e-3, 10), "regulariser weight")}``.
Executors translate the distributions into Ray Tune / Optuna objects; the CLI parses overrides
such as ``--space "alpha=loguniform(1e-3,10)"`` with :func:`parse_distribution`.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def contains(self, value: Any) -> bool:
        return self.low <= float(value) <= self.high


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"loguniform needs 0 < low < high, got ({self.low}, {self.high})")

    def contains(self, value: Any) -> bool:
        return self.low <= float(value) <= self.high


@dataclass(frozen=True)
class IntUniform:
    low: int
    high: int

    def contains(self, value: Any) -> bool:
        return float(value).is_integer() and self.low <= int(value) <= self.high


@dataclass(frozen=True)
class Choice:
    options: tuple

    def contains(self, value: Any) -> bool:
        return value in self.options


Distribution = Union[Uniform, LogUniform, IntUniform, Choice]


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its default (from the paper), its search distribution, and a one-line help."""

    default: Any
    space: Distribution | None = None
    help: str = ""


_DISTRIBUTIONS = {"uniform": Uniform, "loguniform": LogUniform, "randint": IntUniform, "choice": Choice}
_SPEC = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$")


def parse_distribution(text: str) -> Distribution:
    """Parse ``loguniform(1e-3,10)``, ``uniform(0,1)``, ``randint(1,8)`` or ``choice(a,b,c)``."""
    match = _SPEC.match(text)
    if not match or match.group(1).lower() not in _DISTRIBUTIONS:
        raise ValueError(f"cannot parse search space {text!r}; expected one of "
                         f"{', '.join(f'{n}(...)' for n in _DISTRIBUTIONS)}")
    kind, args = match.group(1).lower(), [a.strip() for a in match.group(2).split(",") if a.strip()]
    if kind == "choice":
        return Choice(tuple(parse_value(a) for a in args))
    if len(args) != 2:
        raise ValueError(f"{kind} needs two bounds, got {text!r}")
    low, high = (parse_value(a) for a in args)
    if kind == "randint":
        return IntUniform(int(low), int(high))
    return _DISTRIBUTIONS[kind](float(low), float(high))


def parse_value(text: str) -> Any:
    """A CLI value: a Python literal (number, bool, tuple) where it parses as one, else the string."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.lower()
        return {"true": True, "false": False, "none": None}.get(lowered, text)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and "." not in text and "e" not in text.lower():
        return int(value)
    return value


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``name=value`` into its two parts, with a clear error otherwise."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()
