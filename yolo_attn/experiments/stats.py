"""Statistics of a comparison over seeds: mean ± sample std, paired deltas with a Student t 95% interval, Holm.

Per model over its finished seeds:

- ``mean`` and ``std``: arithmetic mean and SAMPLE standard deviation (n - 1 in the denominator); std is None with a
  single seed.
- paired delta: for every seed that both a model and the baseline finished, ``d_s = model_s - baseline_s`` (same seed,
  so same data order and initial random state where the architectures allow). With ``n`` such seeds, mean ``m`` and
  sample std ``sd`` of the ``d_s``, the 95% interval is ``m ± t(0.975, n - 1) * sd / sqrt(n)`` (Student t on the paired
  differences, which assumes they are roughly normal; with 3 to 5 seeds a bootstrap would have too few distinct
  resamples to be better). ``n = 1`` gives no interval.
- noise flag: the delta cannot be told from seed noise when its interval contains 0, or when there is no interval.
- seeds to resolve: the smallest ``n >= 2`` with ``t(0.975, n - 1) * sd / sqrt(n) < |m|``, i.e. how many seeds would
  make an interval of the observed spread exclude 0 for a delta of the observed size. A rough planning figure: ``sd``
  is itself estimated from few seeds.

- p-values: each variant's two-sided paired-t p-value (``t = m / (sd / sqrt(n))``, ``n - 1`` degrees of freedom), and
  with k variants against one baseline on one metric, its Holm-Bonferroni adjusted p-value over those k comparisons
  (`holm`, `holm_verdicts`): a variant is resolved only when its adjusted p-value is below 0.05.

The t quantile is computed here, exactly, without scipy (not a dependency of this package or of Ultralytics): the
Student t distribution function for an integer number of degrees of freedom has a closed form as a finite sum
(Abramowitz & Stegun 26.7.3 and 26.7.4), which is inverted by bisection.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

MAX_SEEDS = 1000  # the seeds-to-resolve search stops here (None beyond)
ALPHA = 0.05  # family-wise level of the Holm verdicts


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Return the mean and the sample standard deviation of ``values``.

    Args:
        values (Sequence[float]): One number per seed.

    Returns:
        (tuple[float | None, float | None]): ``(mean, std)``; mean is None for no values, std for fewer than two.
    """
    values = [float(v) for v in values]
    mean = statistics.fmean(values) if values else None
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


def t_two_sided_probability(t: float, df: int) -> float:
    """Return ``P(|T| < t)`` for a Student t variable ``T`` with ``df`` degrees of freedom (``t >= 0``).

    Closed form for integer ``df`` (Abramowitz & Stegun 26.7.3 / 26.7.4), with ``theta = atan(t / sqrt(df))``:
    odd ``df``: ``(2 / pi) * (theta + sin(theta) * (c + 2/3 c^3 + 2*4/(3*5) c^5 + ... up to c^(df-2)))``;
    even ``df``: ``sin(theta) * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... up to c^(df-2))``; ``c = cos(theta)``.

    Args:
        t (float): Non-negative bound.
        df (int): Degrees of freedom, >= 1.

    Returns:
        (float): The probability, in [0, 1).
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:  # odd
        total, term = 0.0, c
        for k in range(1, df - 1, 2):  # powers c^1, c^3, ..., c^(df-2); ratio (k+1)/(k+2) between terms
            total += term
            term *= c * c * (k + 1) / (k + 2)
        return 2 / math.pi * (theta + s * total) if df > 1 else 2 / math.pi * theta
    total, term = 0.0, 1.0
    for k in range(0, df - 1, 2):  # powers c^0, c^2, ..., c^(df-2); ratio (k+1)/(k+2) between terms
        total += term
        term *= c * c * (k + 1) / (k + 2)
    return s * total


def t_quantile(p: float, df: int) -> float:
    """Return the ``p`` quantile (``p > 0.5``) of the Student t distribution with ``df`` degrees of freedom.

    Examples: ``t_quantile(0.975, 1) = 12.706``, ``t_quantile(0.975, 2) = 4.303``, ``t_quantile(0.975, 4) = 2.776``.

    Args:
        p (float): Probability in (0.5, 1).
        df (int): Degrees of freedom, >= 1.

    Returns:
        (float): The quantile, to about 1e-12 relative.
    """
    if not 0.5 < p < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1, got {p}")
    target = 2 * p - 1  # P(|T| < t)
    lo, hi = 0.0, 1.0
    while t_two_sided_probability(hi, df) < target:
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_two_sided_probability(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return (lo + hi) / 2


def interval95(mean: float | None, std: float | None, n: int) -> tuple[float, float] | None:
    """Return the Student t 95% interval ``mean ± t(0.975, n - 1) * std / sqrt(n)``, or None for ``n < 2``.

    Args:
        mean (float | None): Mean of the paired differences.
        std (float | None): Their sample standard deviation.
        n (int): Number of pairs.

    Returns:
        (tuple[float, float] | None): ``(low, high)``.
    """
    if mean is None or std is None or n < 2:
        return None
    half = t_quantile(0.975, n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


def is_noise(interval: tuple[float, float] | None) -> bool:
    """Return True when a delta cannot be told from seed noise: its 95% interval contains 0, or there is none.

    Args:
        interval (tuple[float, float] | None): The 95% interval of the mean paired delta.

    Returns:
        (bool): The "not distinguishable from noise" flag.
    """
    return interval is None or interval[0] <= 0 <= interval[1]


def seeds_to_resolve(mean: float | None, std: float | None) -> int | None:
    """Return roughly how many seeds would resolve a delta of this size, given the observed spread.

    The smallest ``n >= 2`` with ``t(0.975, n - 1) * std / sqrt(n) < |mean|``.

    Args:
        mean (float | None): Mean paired delta.
        std (float | None): Sample std of the paired deltas.

    Returns:
        (int | None): That ``n``; None when it cannot be estimated (no spread known, a zero delta, or more than
            ``MAX_SEEDS``).
    """
    if mean is None or std is None or mean == 0:
        return None
    for n in range(2, MAX_SEEDS + 1):
        if t_quantile(0.975, n - 1) * std / math.sqrt(n) < abs(mean):
            return n
    return None


def paired_delta(values: dict[int, float], baseline: dict[int, float]) -> dict[str, Any]:
    """Compare a model with the baseline seed by seed.

    Args:
        values (dict[int, float]): Metric of the model per seed.
        baseline (dict[int, float]): Metric of the baseline per seed.

    Returns:
        (dict[str, Any]): ``mean``, ``std`` (sample), ``n`` (seeds both finished), ``low`` and ``high`` (95%
            interval, None for n < 2), ``noise`` (see ``is_noise``), ``seeds_needed`` (see ``seeds_to_resolve``) and
            ``per_seed`` ({seed: delta}).
    """
    per_seed = {s: values[s] - baseline[s] for s in sorted(values.keys() & baseline.keys())}
    mean, std = mean_std(list(per_seed.values()))
    interval = interval95(mean, std, len(per_seed))
    low, high = interval if interval else (None, None)
    return {
        "mean": mean,
        "std": std,
        "n": len(per_seed),
        "low": low,
        "high": high,
        "noise": is_noise(interval),
        "seeds_needed": seeds_to_resolve(mean, std),
        "per_seed": per_seed,
    }


def paired_t_pvalue(deltas: Sequence[float]) -> float | None:
    """Return the two-sided paired-t p-value of paired differences against a mean of 0.

    ``t = mean / (sd / sqrt(n))`` with ``n - 1`` degrees of freedom, ``p = P(|T| >= |t|)`` (`t_two_sided_probability`,
    no scipy). Differences that are all equal give ``p = 0`` when nonzero and ``p = 1`` when zero.

    Args:
        deltas (Sequence[float]): One paired difference per seed (model minus baseline).

    Returns:
        (float | None): The p-value; None for fewer than two differences.
    """
    mean, std = mean_std(deltas)
    if mean is None or std is None:
        return None
    if std == 0:
        return 1.0 if mean == 0 else 0.0
    t = abs(mean) / (std / math.sqrt(len(deltas)))
    return max(0.0, 1.0 - t_two_sided_probability(t, len(deltas) - 1))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Return Holm-Bonferroni adjusted p-values, in the order given.

    With the ``m`` p-values that are not None sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value of
    the ``i``-th is ``max over j <= i of min(1, (m - j + 1) * p_(j))``: a step-down procedure that controls the
    family-wise error rate at the level of the test (reject where adjusted < alpha). None (no p-value: fewer than two
    seeds) stays None and does not count in ``m``.

    Args:
        pvalues (Sequence[float | None]): Unadjusted p-values of the comparisons of one family (k variants against
            one baseline on one metric).

    Returns:
        (list[float | None]): Adjusted p-values, each >= its unadjusted value and <= 1.
    """
    known = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(known)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def holm_verdicts(deltas: dict[str, dict[str, Any]], alpha: float = ALPHA) -> dict[str, dict[str, Any]]:
    """Add the paired-t p-value, its Holm adjustment over the family and the resolved verdict to each variant.

    Args:
        deltas (dict[str, dict[str, Any]]): Variant -> its `paired_delta` against the one baseline, for one metric
            (only ``per_seed`` is read).
        alpha (float): Family-wise level.

    Returns:
        (dict[str, dict[str, Any]]): Variant -> ``p`` (paired t, None under two seeds), ``p_holm`` (adjusted),
            ``m`` (how many comparisons were corrected for) and ``resolved`` (``p_holm < alpha``).
    """
    names = list(deltas)
    p = [paired_t_pvalue(list(deltas[n]["per_seed"].values())) for n in names]
    adjusted = holm(p)
    m = sum(v is not None for v in p)
    return {
        n: {"p": pv, "p_holm": pa, "m": m, "resolved": pa is not None and pa < alpha}
        for n, pv, pa in zip(names, p, adjusted, strict=True)
    }
