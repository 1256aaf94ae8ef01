"""The three text styles a leaderboard is written in (plain, Markdown, LaTeX) and a "mean ± std" cell in one."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from harness.core.metrics import format_metric

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIAL[m.group()], text)


@dataclass(frozen=True)
class Style:
    """How one output writes emphasis, ±, the significance marks, a missing value, text and math;
    ``spread`` writes the "± std" that follows a mean."""

    bold: Callable[[str], str]
    pm: str
    welch: str
    paired: str
    missing: str
    escape: Callable[[str], str]
    math: Callable[[str], str]
    spread: Callable[[str], str]


PLAIN = Style(lambda s: s, " ± ", "†", "‡", "—", lambda s: s, lambda s: s, lambda s: f" ± {s}")
MARKDOWN = Style(lambda s: f"**{s}**", " ± ", "†", "‡", "—", lambda s: s.replace("|", r"\|"), lambda s: s,
                 lambda s: f" ± {s}")
LATEX = Style(lambda s: rf"\textbf{{{s}}}", r" $\pm$ ", r"$^\dagger$", r"$^\ddagger$", "--", latex_escape,
              lambda s: f"${s}$", lambda s: rf"{{\scriptsize${{\pm}}${s}}}")


def mean_std_text(mean: float, std: float, style: Style = PLAIN, metric: str = "recall@1") -> str:
    """``100·mean ± 100·std`` with two decimals (just the mean for one seed; ``missing`` for none); a
    metric not declared in percent (:class:`~harness.core.metrics.MetricSpec`) as it is, with four."""
    if pd.isna(mean):
        return style.missing
    return format_metric(metric, mean) + ("" if pd.isna(std) else style.spread(format_metric(metric, std)))
