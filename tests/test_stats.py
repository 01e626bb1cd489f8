"""Uncertainty of accuracies: the Wilson interval against SciPy's, its coverage by
simulation, standard errors by hand, and the 'within uncertainty' rule."""

import math

import pytest
import torch
from scipy.stats import binomtest

from imcsim.stats import Z95, difference, resolved, uncertainty, wilson


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (348, 359), (359, 359), (1, 2000), (1940, 2000)])
def test_wilson_interval_equals_scipys(k, n):
    lo, hi = wilson(k / n, n)
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert lo == pytest.approx(100 * ref.low, abs=1e-4) and hi == pytest.approx(100 * ref.high, abs=1e-4)


def test_wilson_interval_covers_95_percent_of_draws():
    g = torch.Generator().manual_seed(0)
    p, n = 0.97, 359
    k = torch.binomial(torch.full((20000,), float(n)), torch.full((20000,), p), generator=g)
    covered = sum(lo <= 100 * p <= hi for lo, hi in (wilson(float(x) / n, n) for x in k))
    assert 0.93 <= covered / 20000 <= 0.975


def test_standard_errors_by_hand_and_the_within_uncertainty_rule():
    u = uncertainty(96.0, 0.5, 4, 400)
    assert u["se_test_pp"] == pytest.approx(100 * math.sqrt(0.96 * 0.04 / 400))  # 0.98 pp
    assert u["se_chips_pp"] == pytest.approx(0.25) and u["one_sample_pp"] == 0.25 and u["n_test"] == 400
    assert u["se_pp"] == pytest.approx(math.hypot(u["se_test_pp"], 0.25))
    one = uncertainty(96.0, 0.0, 1, 400)
    assert one["se_chips_pp"] == 0.0
    a, b = {"mean": 96.0, **u}, {"mean": 96.0 - Z95 * math.hypot(u["se_pp"], u["se_pp"]) * 0.99, **u}
    assert not resolved(a, b) and difference(a, b).endswith("(within uncertainty)")
    b["mean"] = 96.0 - Z95 * math.hypot(u["se_pp"], u["se_pp"]) * 1.01
    assert resolved(a, b) and "within" not in difference(a, b) and difference(a, b).startswith("+")


def test_paired_difference_by_hand_and_by_simulation():
    import numpy as np

    from imcsim.stats import marked, paired_difference

    a, b = np.array([1, 1, 0, 1], bool), np.array([1, 0, 0, 0], bool)
    d, se = paired_difference([a], [b])
    assert d == pytest.approx(50.0) and se == pytest.approx(100 * math.sqrt((1 / 3) / 4))
    assert paired_difference([a], [a]) == (0.0, 0.0) and marked(0.0, 0.0).endswith("(within uncertainty)")
    # two chips against one run: chip part var_c(d_c) / C added
    a2 = [np.array([1, 1, 0, 1], bool), np.array([0, 1, 0, 1], bool)]
    d, se = paired_difference(a2, [b])
    D = np.array([[0, 1, 0, 1], [-1, 1, 0, 1]], float)
    assert d == pytest.approx(100 * D.mean())
    assert se == pytest.approx(100 * math.sqrt(D.mean(0).var(ddof=1) / 4 + D.mean(1).var(ddof=1) / 2))
    # calibration: two classifiers that disagree on 5 % of 2000 samples, no true difference --
    # |d| < 1.96 se in about 95 % of draws
    g = np.random.default_rng(0)
    inside = 0
    for _ in range(2000):
        base = g.random(2000) < 0.95
        flip = g.random(2000) < 0.05
        other = np.where(flip, g.random(2000) < 0.95, base)
        d, se = paired_difference([base], [other])
        inside += abs(d) < Z95 * se
    assert 0.93 <= inside / 2000 <= 0.97
