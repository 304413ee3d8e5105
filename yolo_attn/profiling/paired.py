"""Paired, shuffled timing rounds: ratios that stay repeatable on a shared, noisy machine.

Medians taken over separate blocks of runs drift with the machine's load. Here every variant runs once per round, in
a new random order each round, and each variant is compared with a baseline round by round; the median of those
per-round ratios moves little when the load changes, because a slow moment slows the variants of one round alike.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def paired_times(
    variants: Mapping[str, Callable[[], Any]], rounds: int = 60, inner: int = 1, seed: int = 0
) -> dict[str, list[float]]:
    """Time callables in paired, shuffled rounds.

    Args:
        variants (Mapping[str, Callable[[], Any]]): Zero-argument callables by name.
        rounds (int): Rounds; in each, every variant runs ``inner`` times back to back, in a shuffled order.
        inner (int): Calls per variant per round (raise it for calls of a few microseconds).
        seed (int): Seed of the shuffling.

    Returns:
        (dict[str, list[float]]): Per name, the seconds of one call in each round (round order).
    """
    if rounds < 1 or inner < 1:
        raise ValueError(f"rounds={rounds}, inner={inner}: expected both >= 1")
    rng = random.Random(seed)
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            call = variants[name]
            start = time.perf_counter()
            for _ in range(inner):
                call()
            times[name].append((time.perf_counter() - start) / inner)
    return times


def ratio_stats(times: Mapping[str, Sequence[float]], name: str, baseline: str) -> dict[str, float]:
    """Summarise the per-round ratios ``times[name] / times[baseline]`` of `paired_times`.

    Args:
        times (Mapping[str, Sequence[float]]): Output of `paired_times`.
        name (str): Variant measured.
        baseline (str): Variant it is divided by, round by round.

    Returns:
        (dict[str, float]): ``ratio`` (median), ``q1`` and ``q3`` (quartiles), ``min`` and ``max`` of the per-round
            ratios, and ``ms`` (median milliseconds of one call of ``name``).
    """
    for key in (name, baseline):
        if key not in times:
            raise ValueError(f"{key!r} is not one of the timed variants {list(times)}")
    ratios = [v / b for v, b in zip(times[name], times[baseline], strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {
        "ratio": statistics.median(ratios),
        "q1": q1,
        "q3": q3,
        "min": min(ratios),
        "max": max(ratios),
        "ms": statistics.median(times[name]) * 1e3,
    }
