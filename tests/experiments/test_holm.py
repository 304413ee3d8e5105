"""Paired-t p-values and Holm-Bonferroni against hand-computed numbers (scipy only as a reference, when installed)."""

from __future__ import annotations

import math

import pytest

from yolo_attn.experiments.stats import holm, holm_verdicts, paired_t_pvalue


def _p_df2(mean: float) -> float:
    """Two-sided p of three deltas ``mean - 1, mean, mean + 1`` (sd 1): df 2 has P(|T| < t) = t / sqrt(t^2 + 2)."""
    t = mean * math.sqrt(3)
    return 1 - t / math.sqrt(t * t + 2)


def test_paired_t_pvalue_matches_the_closed_forms() -> None:
    assert paired_t_pvalue([1.0, 2.0, 3.0]) == pytest.approx(1 - math.sqrt(6 / 7), rel=1e-12)  # t = 2 sqrt(3), df 2
    assert paired_t_pvalue([1.0, 3.0]) == pytest.approx(1 - 2 / math.pi * math.atan(2), rel=1e-12)  # df 1: Cauchy
    assert paired_t_pvalue([-2.0, -3.0, -4.0]) == pytest.approx(_p_df2(3), rel=1e-12)  # two-sided: the sign is lost
    assert paired_t_pvalue([0.5]) is None
    assert paired_t_pvalue([0.5, 0.5]) == 0.0 and paired_t_pvalue([0.0, 0.0, 0.0]) == 1.0


def test_paired_t_pvalue_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for deltas in ([0.3, -0.1, 0.4, 0.2], [1.2, 0.7, 1.9, 0.1, 0.8], [0.01, -0.02, 0.005]):
        assert paired_t_pvalue(deltas) == pytest.approx(stats.ttest_1samp(deltas, 0.0).pvalue, rel=1e-9)


def test_holm_by_hand_one_survives_two_do_not() -> None:
    # sorted 0.01, 0.03, 0.04, 0.20 -> 4 * 0.01, 3 * 0.03, max(0.09, 2 * 0.04), max(0.09, 1 * 0.20)
    adjusted = holm([0.01, 0.04, 0.03, 0.20])
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.20], rel=1e-12)
    assert [a < 0.05 for a in adjusted] == [True, False, False, False]  # 0.03 and 0.04 < 0.05 do not survive


def test_holm_caps_at_one_keeps_none_and_leaves_a_single_test_alone() -> None:
    assert holm([0.5, None, 0.6]) == [pytest.approx(1.0), None, pytest.approx(1.0)]  # 2 * 0.5 and 1 * 0.6, max, cap
    assert holm([0.03]) == [0.03]
    assert holm([]) == []
    assert holm([0.02, 0.02]) == [pytest.approx(0.04), pytest.approx(0.04)]


def test_holm_verdicts_on_paired_deltas() -> None:
    deltas = {  # per seed deltas against one baseline; sd 1 each, df 2
        "C": {"per_seed": {0: 9.0, 1: 10.0, 2: 11.0}},
        "A": {"per_seed": {0: 2.0, 1: 3.0, 2: 4.0}},
        "B": {"per_seed": {0: 1.0, 1: 2.0, 2: 3.0}},
        "one_seed": {"per_seed": {0: 5.0}},
    }
    p_c, p_a, p_b = _p_df2(10), _p_df2(3), _p_df2(2)  # 0.00332, 0.0351, 0.0742
    assert p_a < 0.05
    v = holm_verdicts(deltas)
    assert [v[k]["p"] for k in "CAB"] == pytest.approx([p_c, p_a, p_b], rel=1e-12)
    assert v["C"]["p_holm"] == pytest.approx(3 * p_c, rel=1e-12)  # 0.00995: survives
    assert v["A"]["p_holm"] == pytest.approx(2 * p_a, rel=1e-12)  # 0.0702: unadjusted 0.0351 does not survive
    assert v["B"]["p_holm"] == pytest.approx(max(2 * p_a, p_b), rel=1e-12)
    assert {k: v[k]["resolved"] for k in v} == {"C": True, "A": False, "B": False, "one_seed": False}
    assert v["one_seed"]["p"] is None and v["one_seed"]["p_holm"] is None
    assert {x["m"] for x in v.values()} == {3}  # three comparisons corrected for (one_seed has no p-value)
