"""Statistics over seeds: mean, std, 95% t-interval, Welch and paired t-tests, ranks.

With values x_1..x_n of one metric over n seeds:
mean x̄ = Σx_i / n, std s = sqrt(Σ(x_i − x̄)² / (n − 1)) (ddof=1), and the 95% interval
x̄ ± t_{0.975, n−1} · s / √n. Tests are two-sided; a difference is marked significant at p < 0.05.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Summary:
    """Mean, std (ddof=1) and the t-interval of ``n`` values; std and interval are NaN below two values."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarize(values: Sequence[float]) -> Summary:
    """Summary of the finite values: x̄, s and x̄ ± t_{(1+CONFIDENCE)/2, n−1} · s/√n."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def _pvalue(test, *samples: np.ndarray) -> float:
    """The test's p-value, NaN where it is undefined (fewer than two values, zero variance)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(test(*samples).pvalue)


def welch_pvalue(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch's t-test (unequal variances): t = (ā − b̄) / sqrt(s_a²/n_a + s_b²/n_b); NaN below two values each."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return _pvalue(lambda x, y: stats.ttest_ind(x, y, equal_var=False), a, b)


def paired_pvalue(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[float, int]:
    """Paired t-test over the seeds both sides have: t = d̄ / (s_d / √m), d = a_seed − b_seed.

    Returns (p, m), m the number of matched seeds; p is NaN below two matched seeds.
    """
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return math.nan, len(seeds)
    x = np.array([a[s] for s in seeds], dtype=float)
    y = np.array([b[s] for s in seeds], dtype=float)
    return _pvalue(stats.ttest_rel, x, y), len(seeds)


def ranks(means: pd.Series) -> pd.Series:
    """Rank 1 = highest mean (ties share the best rank); NaN means stay unranked."""
    return means.rank(ascending=False, method="min")


POWER = 0.8


def paired_power(a: Mapping[int, float], b: Mapping[int, float], difference: float = 0.01) -> tuple[float, float]:
    """How many seeds a paired comparison needs, from the spread of d = a_seed − b_seed over matched seeds.

    Returns (the smallest difference the m matched seeds detect with probability POWER in a two-sided
    paired t-test at SIGNIFICANCE, the seeds needed to detect ``difference``), by statsmodels'
    ``TTestPower`` (a one-sample t-test on d with effect size Δ / s_d); NaN below two matched seeds or
    with s_d = 0 (and the seeds needed where statsmodels finds no root); at least 2 seeds.
    """
    from statsmodels.stats.power import TTestPower
    # imported here, before the filters below: its first import (inside solve_power) puts an "always" filter for
    # ConvergenceWarning in front of them, and the warning reached the console of leaderboard and report
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds], dtype=float)
    if len(d) < 2 or not d.std(ddof=1) > 0:
        return math.nan, math.nan
    sd, power = float(d.std(ddof=1)), TTestPower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # where its root finder fails (the answer is NaN)
        effect = float(power.solve_power(nobs=len(d), alpha=SIGNIFICANCE, power=POWER, alternative="two-sided"))
    if power.power(effect_size=difference / sd, nobs=2, alpha=SIGNIFICANCE, alternative="two-sided") >= POWER:
        return float(effect) * sd, 2.0  # the fewest seeds a t-test takes already suffice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # where its root finder fails (the answer is NaN)
        needed = float(power.solve_power(effect_size=difference / sd, alpha=SIGNIFICANCE, power=POWER,
                                         alternative="two-sided"))
    return float(effect) * sd, float(math.ceil(needed)) if math.isfinite(needed) else math.nan
