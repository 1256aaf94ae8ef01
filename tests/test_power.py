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
