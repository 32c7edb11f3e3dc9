"""Paired significance tests across seeds or runs: the Wilcoxon signed-rank test (scipy) and the
Holm-Bonferroni correction for a family of them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["WilcoxonResult", "holm_bonferroni", "paired_wilcoxon"]


@dataclass(frozen=True)
class WilcoxonResult:
    """Result of :func:`paired_wilcoxon`; differences are ``a - b`` (positive: ``a`` scored higher).

    Attributes:
        statistic: scipy's Wilcoxon statistic (nan when the test could not run).
        p_value: nan with fewer than 2 usable pairs; 1.0 when every difference is zero.
        n: number of pairs used (after dropping pairs with a NaN).
        dropped: number of pairs dropped because a or b was NaN.
        mean_difference, median_difference: of ``a - b`` over the used pairs (nan when n = 0).
        note: why the p-value is a fallback, empty when scipy ran normally.
    """

    statistic: float
    p_value: float
    n: int
    dropped: int
    mean_difference: float
    median_difference: float
    note: str = field(default="")


def paired_wilcoxon(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    alternative: str = "two-sided",
) -> WilcoxonResult:
    """Paired Wilcoxon signed-rank test of two configurations' scores across paired runs.

    ``a`` is the method under test and ``b`` the reference (e.g. ``rare_node`` and ``control``), one
    score per seed/dataset in the same order.  Differences are ``a - b``; ``alternative="greater"``
    tests whether ``a`` tends to score higher.  Pairs where either score is NaN are dropped and counted.
    Zero differences are handled by scipy's default (``zero_method="wilcox"``: dropped from ranking).
    """
    first = np.asarray(a, dtype=np.float64).reshape(-1)
    second = np.asarray(b, dtype=np.float64).reshape(-1)
    if first.shape != second.shape:
        raise ValueError(f"paired_wilcoxon needs paired scores: got {first.size} and {second.size} values")
    usable = ~(np.isnan(first) | np.isnan(second))
    difference = first[usable] - second[usable]
    n, dropped = int(difference.size), int((~usable).sum())
    mean = float(difference.mean()) if n else math.nan
    median = float(np.median(difference)) if n else math.nan
    summary = {"n": n, "dropped": dropped, "mean_difference": mean, "median_difference": median}
    if n < 2:
        note = f"only {n} usable pair(s); the test needs at least 2"
        return WilcoxonResult(statistic=math.nan, p_value=math.nan, note=note, **summary)
    if not np.any(difference != 0):
        note = "every difference is zero: no evidence of a difference"
        return WilcoxonResult(statistic=0.0, p_value=1.0, note=note, **summary)
    from scipy import stats  # imported here: scipy.stats costs ~1 s at start-up

    test = stats.wilcoxon(first[usable], second[usable], alternative=alternative)
    return WilcoxonResult(statistic=float(test.statistic), p_value=float(test.pvalue), **summary)


def holm_bonferroni(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the m non-NaN p-values sorted ascending, p_(k) becomes max over j <= k of (m - j + 1) p_(j)
    (1-based), capped at 1; the adjusted values are monotone in the raw ones.  NaN stays NaN and does
    not count in m.  Reject hypothesis k at level alpha when its adjusted p-value is <= alpha.
    """
    raw = np.asarray(p_values, dtype=np.float64).reshape(-1)
    adjusted = np.full_like(raw, np.nan)
    present = np.flatnonzero(~np.isnan(raw))
    order = present[np.argsort(raw[present], kind="stable")]
    m = order.size
    scaled = (m - np.arange(m)) * raw[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted
