"""How far an accuracy measured on a finite test set and a few chip instances can be trusted.

Two sources, both stated with every accuracy:

* the **test set**: an accuracy p on N test samples is one draw of a binomial; its standard
  error is sqrt(p (1 - p) / N) and its 95 % interval the Wilson score interval (it stays
  inside [0, 100] % and is right near 0 and 100 %). One sample is 100 / N pp.
* the **chip instances**: the sample standard deviation over chips (programming variation,
  faults, read noise), and the standard error of their mean, std / sqrt(chips).

Two rows measured on the same test images and chip seeds are compared *paired*
(:func:`paired_difference`, from each run's per-sample right/wrong record): the test-set part
of the difference's uncertainty comes from the samples on which the two disagree (as in
McNemar's test), the chip part from how much the difference varies between chips. A
difference is *within uncertainty* when smaller than 1.96 of its standard error. Without
per-sample records (:func:`difference` on summaries) the rule falls back to the unpaired,
conservative sqrt(se_a^2 + se_b^2), se^2 = se_test^2 + se_chips^2.
"""

from __future__ import annotations

import math

Z95 = 1.959964  # two-sided 95 % normal quantile


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` (0..1) measured on ``n`` samples, in %."""
    if n <= 0:
        return (0.0, 100.0)
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (100 * max(0.0, centre - half), 100 * min(1.0, centre + half))


def uncertainty(mean_pct: float, std_pct: float, chips: int, n_test: int) -> dict:
    """The uncertainty fields of an accuracy row (all in percentage points)."""
    p = min(1.0, max(0.0, mean_pct / 100))
    se_test = 100 * math.sqrt(p * (1 - p) / n_test) if n_test > 0 else 0.0
    se_chips = std_pct / math.sqrt(chips) if chips > 1 else 0.0
    lo, hi = wilson(p, n_test)
    return {"n_test": n_test, "test_ci95": [lo, hi], "se_test_pp": se_test, "se_chips_pp": se_chips,
            "se_pp": math.hypot(se_test, se_chips), "one_sample_pp": 100 / n_test if n_test > 0 else 0.0}


def resolved(a: dict, b: dict) -> bool:
    """Whether rows ``a`` and ``b`` (with ``mean`` and ``se_pp``) differ beyond their uncertainty."""
    return abs(a["mean"] - b["mean"]) >= Z95 * math.hypot(a["se_pp"], b["se_pp"])


def paired_difference(a: list, b: list) -> tuple[float, float]:
    """(a - b, its standard error), pp, of two rows given as per-chip boolean arrays of
    which test samples were right (the same samples, the same chip seeds in order; a row of
    one run -- a chip no seed changes -- pairs with every chip of the other).

    se^2 = var_i(delta_i) / N + var_c(d_c) / C: delta_i the sample's mean difference over
    chips, d_c chip c's accuracy difference (the second term only with C > 1 chips)."""
    import numpy as np

    C = max(len(a), len(b))
    A = np.array([a[c if len(a) > 1 else 0] for c in range(C)], dtype=float)
    B = np.array([b[c if len(b) > 1 else 0] for c in range(C)], dtype=float)
    D = A - B  # (C, N) in {-1, 0, 1}
    n = D.shape[1]
    delta = D.mean(0)
    var = delta.var(ddof=1) / n if n > 1 else 0.0
    if C > 1:
        var += D.mean(1).var(ddof=1) / C
    return 100 * float(D.mean()), 100 * math.sqrt(var)


def marked(d: float, se: float) -> str:
    """``d`` pp, marked '(within uncertainty)' when |d| < 1.96 se."""
    return f"{d:+.2f}" + ("" if abs(d) >= Z95 * se and d != 0 else " (within uncertainty)")


def difference(a: dict, b: dict) -> str:
    """``a - b`` in pp, marked '(within uncertainty)' when not resolved: paired where the rows
    carry it (``diff_pp``, ``diff_se_pp`` against the row above), else unpaired."""
    if "diff_se_pp" in a:
        return marked(a["diff_pp"], a["diff_se_pp"])
    d = a["mean"] - b["mean"]
    return f"{d:+.2f}" + ("" if resolved(a, b) else " (within uncertainty)")
