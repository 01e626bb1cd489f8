"""How far an accuracy measured on a finite test set and a few chip instances can be trusted.

Two sources, both stated with every accuracy:

* the **test set**: an accuracy p on N test samples is one draw of a binomial; its standard
  error is sqrt(p (1 - p) / N) and its 95 % interval the Wilson score interval (it stays
  inside [0, 100] % and is right near 0 and 100 %). One sample is 100 / N pp.
* the **chip instances**: the sample standard deviation over chips (programming variation,
  faults, read noise), and the standard error of their mean, std / sqrt(chips).

Two rows differ *beyond their uncertainty* when |a - b| >= 1.96 sqrt(se_a^2 + se_b^2), with
se^2 = se_test^2 + se_chips^2 for each. Rows measured on the same test images share much of
their test-set error, so this rule is conservative: a difference it calls unresolved may
still be real, one it calls resolved is.
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


def difference(a: dict, b: dict) -> str:
    """``a - b`` in pp, marked '(within uncertainty)' when not resolved."""
    d = a["mean"] - b["mean"]
    return f"{d:+.2f}" + ("" if resolved(a, b) else " (within uncertainty)")
