"""Hyperparameter declarations: a default, a search distribution, a type and a valid range, as plain data.

A method declares ``hparams = {"alpha": Param(2.0, LogUniform(0.1, 20), "weight", valid=POSITIVE)}``.
Executors translate the distributions into Ray Tune / Optuna objects; the CLI parses overrides
such as ``--space "alpha=loguniform(1e-3,10)"`` with :func:`parse_distribution`. Every override and
every searched distribution is checked against its :class:`Param` (:meth:`Param.check`,
:meth:`Param.check_space`) before any trial starts.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any, Union


def _check_bounds(kind: str, low: Any, high: Any) -> None:
    if not low <= high:
        raise ValueError(f"{kind} needs low <= high, got ({low}, {high})")


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def __post_init__(self) -> None:
        _check_bounds("uniform", self.low, self.high)

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

    def __post_init__(self) -> None:
        _check_bounds("randint", self.low, self.high)

    def contains(self, value: Any) -> bool:
        return float(value).is_integer() and self.low <= int(value) <= self.high


@dataclass(frozen=True)
class Choice:
    options: tuple

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError("choice needs at least one option")

    def contains(self, value: Any) -> bool:
        return value in self.options


Distribution = Union[Uniform, LogUniform, IntUniform, Choice]


_INTERVAL = re.compile(r"^\s*(?:(>=|>|<=|<)\s*(\S+)|([\[(])\s*([^,]+),\s*([^\])]+)([\])]))\s*$")


@dataclass(frozen=True)
class Interval:
    """The valid values of a numeric hyperparameter: ``low`` ≤ x ≤ ``high`` (``<`` where open; None: unbounded)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def parse(cls, text: str) -> "Interval":
        """``"> 0"``, ``">= 0"``, ``"< 1"``, ``"<= 1"`` or ``"[0, 1)"`` (brackets closed, parentheses open)."""
        match = _INTERVAL.match(text)
        if not match:
            raise ValueError(f"cannot parse interval {text!r}; expected e.g. '> 0', '>= 0' or '[0, 1)'")
        op, bound, left, low, high, right = match.groups()
        if op:
            value = float(bound)
            return cls(low=value, low_open=op == ">") if op[0] == ">" else cls(high=value, high_open=op == "<")
        return cls(float(low), float(high), low_open=left == "(", high_open=right == ")")

    def contains(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its default (from the paper), its search distribution, a one-line help, the
    type(s) it takes and the values its formula accepts.

    ``kind`` defaults to the type of ``default`` (a float also accepts an int, never a bool); with
    ``tuple`` among the kinds, a tuple or list of the other kinds is accepted element-wise. ``valid`` is an
    :class:`Interval` for numbers (or its text, e.g. ``"> 0"``, ``"[0, 1)"``) or a :class:`Choice`; a
    string parameter with a ``Choice`` space is restricted to that space unless ``valid`` says otherwise.
    """

    default: Any
    space: Distribution | None = None
    help: str = ""
    valid: Interval | Choice | str | None = None
    kind: type | tuple[type, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.valid, str):
            object.__setattr__(self, "valid", Interval.parse(self.valid))

    @property
    def kinds(self) -> tuple[type, ...]:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind or type(self.default),)
        return kinds + (int,) if float in kinds else kinds

    @property
    def valid_values(self) -> Interval | Choice | None:
        if self.valid is None and isinstance(self.space, Choice) and self.kinds == (str,):
            return self.space
        return self.valid

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a valid setting (wrong type, not finite, out of range), or None when it is."""
        kinds = self.kinds
        if tuple in kinds and isinstance(value, (tuple, list)):
            element = Param(None, valid=self.valid, kind=tuple(k for k in kinds if k is not tuple))
            return next((f"element {v!r}: {p}" for v in value if (p := element.problem(v))), None)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join("None" if k is type(None) else k.__name__ for k in kinds if k is not int or
                                float not in kinds)
            return f"expected {names}, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        valid = self.valid_values
        if isinstance(valid, Choice) and not valid.contains(value):
            return f"must be one of {', '.join(map(repr, valid.options))}, got {value!r}"
        if isinstance(valid, Interval) and isinstance(value, (int, float)) and not valid.contains(value):
            return f"must be {valid}, got {value!r}"
        return None

    def check(self, name: str, value: Any) -> None:
        """Raise ``ValueError`` naming ``name`` (e.g. ``"hyperparameter ms.alpha"``) unless ``value`` has a
        declared type and lies in the valid range."""
        problem = self.problem(value)
        if problem:
            raise ValueError(f"{name}: {problem}")

    def check_space(self, name: str, space: Distribution) -> None:
        """Raise ``ValueError`` naming ``name`` unless every value ``space`` can draw is valid."""
        if isinstance(space, (Uniform, LogUniform)) and float not in self.kinds:
            raise ValueError(f"hyperparameter {name} takes {self.kinds[0].__name__} values; "
                             f"{type(space).__name__.lower()} draws floats")
        if isinstance(space, IntUniform) and int not in self.kinds:
            raise ValueError(f"hyperparameter {name} takes {self.kinds[0].__name__} values; randint draws integers")
        values = space.options if isinstance(space, Choice) else (space.low, space.high)
        for value in values:
            problem = self.problem(value)
            if problem:
                raise ValueError(f"search space {name}={space}: {problem}")


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
