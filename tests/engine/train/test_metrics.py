"""Metric definitions (spec §6) and confidence intervals, against hand-computed values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from engine.train.metrics import (
    auc_ci_hanley,
    classification_metrics,
    confusion_matrix,
    mean_ci,
    roc_auc,
    roc_curve,
    t_ppf,
    wilson_ci,
)

BIN = ("NonCOVID", "COVID")


def _probs(p_covid):
    p = np.asarray(p_covid, dtype=float)
    return np.stack([1 - p, p], 1)


def test_binary_metrics_by_hand() -> None:
    # truth:  COVID ×5, NonCOVID ×5;  predicted COVID for 4 of the COVID and 1 of the NonCOVID
    y = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    p = [0.9, 0.8, 0.7, 0.6, 0.2, 0.55, 0.4, 0.3, 0.2, 0.1]
    m = classification_metrics(y, _probs(p), BIN)
    assert m["confusion_matrix"] == [[4, 1], [1, 4]]       # rows = truth (NonCOVID, COVID)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["sensitivity"] == pytest.approx(0.8) and m["specificity"] == pytest.approx(0.8)
    assert m["precision"] == pytest.approx(0.8) and m["f1"] == pytest.approx(0.8)
    # AUC: pairs (pos, neg) ordered correctly: 25 pairs, 0.2 vs 0.2 is a tie (½), 0.2 < 0.55/0.4/0.3 -> 3 wrong,
    # 0.6 > 0.55 ok ... = (25 - 3 - 0.5) / 25
    assert m["auc"] == pytest.approx(21.5 / 25)
    assert m["balanced_accuracy"] == pytest.approx(0.8)
    assert m["positive_class"] == "COVID" and m["n"] == 10


def test_positive_class_is_covid_wherever_it_is() -> None:
    classes = ("COVID", "NonCOVID")
    y = [0, 0, 1, 1]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    m = classification_metrics(y, probs, classes)
    assert m["sensitivity"] == pytest.approx(0.5) and m["specificity"] == pytest.approx(1.0)
    assert m["auc"] == pytest.approx(0.75)   # p(COVID) = column 0: 0.9, 0.2 vs 0.3, 0.1


def test_threshold_moves_the_operating_point() -> None:
    y = [1, 1, 0, 0]
    probs = _probs([0.45, 0.9, 0.2, 0.1])
    assert classification_metrics(y, probs, BIN)["sensitivity"] == pytest.approx(0.5)
    assert classification_metrics(y, probs, BIN, threshold=0.4)["sensitivity"] == pytest.approx(1.0)


def test_three_classes_per_class_and_p2_equation() -> None:
    classes = ("COVID", "Normal", "Pneumonia")
    y = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    pred = [0, 0, 1, 1, 1, 2, 2, 2, 2, 0]
    probs = np.eye(3)[pred] * 0.8 + 0.2 / 3
    m = classification_metrics(y, probs, classes)
    cm = np.array(m["confusion_matrix"])
    assert cm.tolist() == [[2, 1, 0], [0, 2, 1], [1, 0, 3]]
    assert m["accuracy"] == pytest.approx(0.7)
    pc = m["per_class"]
    assert pc["COVID"]["sensitivity"] == pytest.approx(2 / 3) and pc["COVID"]["ppv"] == pytest.approx(2 / 3)
    assert pc["Pneumonia"]["sensitivity"] == pytest.approx(0.75) and pc["Pneumonia"]["ppv"] == pytest.approx(0.75)
    assert pc["Normal"]["specificity"] == pytest.approx(6 / 7)
    # P2 Eq. 1 = mean one-vs-rest accuracy = 1 − 2e/K for error rate e (spec §6), not plain accuracy
    assert m["p2_mean_accuracy_eq1"] == pytest.approx(1 - 2 * 0.3 / 3)
    assert m["p2_mean_accuracy_eq1"] > m["accuracy"]
    assert m["balanced_accuracy"] == pytest.approx(np.mean([2 / 3, 2 / 3, 0.75]))


def test_auc_matches_brute_force_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 6, 60) / 5.0          # many ties
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg)])
    assert roc_auc(y, s) == pytest.approx(brute)
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_roc_curve_endpoints_and_area() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    s = rng.random(40) + 0.5 * y
    fpr, tpr, thr = roc_curve(y, s)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and fpr[-1] == pytest.approx(1) and tpr[-1] == pytest.approx(1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thr) < 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, s))


def test_confusion_matrix_validates_lengths() -> None:
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 2)


@pytest.mark.parametrize("df,expected", [(1, 12.7062), (4, 2.7764), (9, 2.2622), (24, 2.0639), (124, 1.9793)])
def test_t_quantiles_match_tables(df: int, expected: float) -> None:
    assert t_ppf(0.975, df) == pytest.approx(expected, abs=2e-4)


def test_mean_ci_formula() -> None:
    v = [0.80, 0.85, 0.90, 0.82, 0.88]
    ci = mean_ci(v)
    sd = np.std(v, ddof=1)
    half = 2.7764 * sd / math.sqrt(5)
    assert ci["mean"] == pytest.approx(0.85) and ci["sd"] == pytest.approx(sd)
    assert ci["ci_low"] == pytest.approx(0.85 - half, abs=1e-4) and ci["ci_high"] == pytest.approx(0.85 + half, abs=1e-4)
    assert "Student-t" in ci["formula"]
    assert math.isnan(mean_ci([0.5])["ci_low"]) and mean_ci([])["n"] == 0


def test_wilson_and_hanley_intervals() -> None:
    lo, hi = wilson_ci(81, 100)
    assert lo == pytest.approx(0.7222, abs=1e-3) and hi == pytest.approx(0.8749, abs=1e-3)
    lo, hi = auc_ci_hanley(0.9, 50, 50)
    assert lo < 0.9 < hi and hi - lo == pytest.approx(2 * 1.96 * 0.0306, abs=0.01)
