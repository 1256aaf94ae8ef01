"""How many seeds a paired comparison needs (statsmodels' power functions), checked against a simulation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.reporting.stats import paired_power


def test_paired_power_matches_a_simulation() -> None:
    """With the detectable difference as the true mean of the paired differences, simulated paired
    t-tests over the same number of seeds reject at p < 0.05 about 80% of the time."""
    rng = np.random.default_rng(0)
    base = {s: 0.80 + 0.01 * rng.standard_normal() for s in range(10)}
    other = {s: base[s] - 0.0094 + 0.0123 * rng.standard_normal() for s in range(10)}
    mde, needed = paired_power(other, base)
    sd = np.std([other[s] - base[s] for s in range(10)], ddof=1)
    draws = rng.normal(mde, sd, size=(20000, 10))
    rejected = stats.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.80, abs=0.015)
    one_point = rng.normal(0.01, sd, size=(20000, int(needed)))
    assert (stats.ttest_1samp(one_point, 0.0, axis=1).pvalue < 0.05).mean() >= 0.80
    fewer = rng.normal(0.01, sd, size=(20000, int(needed) - 1))
    assert (stats.ttest_1samp(fewer, 0.0, axis=1).pvalue < 0.05).mean() < 0.81
    assert np.isnan(paired_power({0: 0.5}, {0: 0.4})[0])


#: a fresh interpreter: the seeds needed for a 1-point difference where statsmodels' root finder fails (a
#: paired difference of 0.07 points over three seeds: the committed omniglot28 board's ms vs proxyanchor)
NO_ROOT = """
from harness.reporting.stats import paired_power
print(paired_power({0: 0.93529, 1: 0.93235, 2: 0.93294}, {0: 0.93647, 1: 0.93235, 2: 0.93412}))
"""


def test_seeds_needed_without_a_root_are_nan_and_print_no_warning() -> None:
    """statsmodels' ConvergenceWarning never reaches the console (``leaderboard`` and ``report`` printed it): the
    first import of its warning module puts an "always" filter in front of the caller's, so a fresh interpreter
    is the case to test."""
    import subprocess
    import sys

    from conftest import REPO

    out = subprocess.run([sys.executable, "-c", NO_ROOT], cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip().endswith("nan)") and out.stderr == ""
